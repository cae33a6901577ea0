// Incident review for police: filter alerts by place, layer, code and time; thumbnails; open one to export.
"use strict";
C.start(async (who) => {
  const form = document.getElementById("review-form");
  const tbody = document.querySelector("#incidents tbody");
  const box = document.getElementById("review-error");
  const codes = document.getElementById("f-code");
  const strings = JSON.parse(document.getElementById("catalogue").textContent);
  for (const key of Object.keys(strings).filter((k) => k.startsWith("code.")).sort()) {
    codes.append(C.el("option", {value: key.slice(5)}, strings[key]));
  }
  const now = Date.now();
  document.getElementById("f-since").value = C.localInput(now - 7 * 86400e3);
  document.getElementById("f-until").value = C.localInput(now + 60e3);

  async function thumbs(a, cell) {
    const r = await C.api(`/api/v1/alerts/${a.id}`);
    if (!r.ok) return;
    await Snapshots.show(cell, r.data.events.slice(0, 2), who);
  }
  async function search() {
    C.notice(box, "");
    const q = new URLSearchParams({limit: "100", sort: "-opened_at"});
    const place = document.getElementById("f-place").value;
    if (place) q.append(place.split(":")[0], place.split(":")[1]);
    for (const [id, name] of [["f-layer", "layer"], ["f-code", "code"]]) {
      const v = document.getElementById(id).value;
      if (v) q.append(name, v);
    }
    const since = document.getElementById("f-since").value;
    const until = document.getElementById("f-until").value;
    if (since) q.set("since", String(C.fromLocalInput(since)));
    if (until) q.set("until", String(C.fromLocalInput(until)));
    const r = await C.api("/api/v1/alerts?" + q);
    if (!r.ok) return C.notice(box, C.T("common.error", {reason: r.error}), "error");
    const cells = [];
    tbody.replaceChildren(...r.data.items.map((a) => {
      const cell = C.el("div", {class: "thumbs"});
      cells.push([a, cell]);
      return C.el("tr", {class: "sev-" + a.severity, "data-alert": a.id},
        C.el("td", {}, C.el("span", {class: "badge sev-" + a.severity}, C.label("sev", a.severity))),
        C.el("td", {}, C.el("a", {href: `/alerts/${a.id}`}, C.label("code", a.code))),
        C.el("td", {}, C.place(a)), C.el("td", {}, C.fmtTime(a.opened_at)),
        C.el("td", {}, C.label("state", a.state)), C.el("td", {}, cell));
    }));
    await Promise.all(cells.slice(0, 20).map(([a, cell]) => thumbs(a, cell)));
  }
  form.addEventListener("submit", (ev) => { ev.preventDefault(); search(); });
  await search();
});
