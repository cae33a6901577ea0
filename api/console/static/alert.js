// One alert: summary, timeline, triggering events, thresholds, route and why, snapshots, comment and actions.
"use strict";
C.start(async (who) => {
  const id = Number(document.getElementById("alert").dataset.alert);
  const errorBox = document.getElementById("detail-error");
  const result = document.getElementById("act-result");
  const note = document.getElementById("note");
  // What each role may do; the API enforces the same and says why when it refuses.
  const ACTIONS = who.can_act ? ["acknowledge", "resolve", "false_alarm", "escalate", "comment"]
    : who.role === "police_liaison" ? ["escalate", "comment"] : ["comment"];

  function kv(target, pairs) {
    if (!pairs.length) return target.replaceChildren(C.el("dt", {}, "—"), C.el("dd", {class: "muted-text"}, C.T("common.none")));
    target.replaceChildren(...pairs.flatMap(([k, v]) => [C.el("dt", {}, k), C.el("dd", {}, v)]));
  }
  async function load() {
    const r = await C.api(`/api/v1/alerts/${id}`);
    if (!r.ok) {
      C.notice(errorBox, r.status === 404 ? C.T("detail.not_found") : C.T("common.error", {reason: r.error}), "error");
      document.querySelectorAll("#alert section, #alert .grid2").forEach((s) => { s.hidden = true; });
      return null;
    }
    const a = r.data;
    const summary = document.getElementById("summary");
    summary.replaceChildren(C.el("dl", {class: "kv"},
      C.el("dt", {}, C.T("field.code")), C.el("dd", {class: "code"}, C.label("code", a.code)),
      C.el("dt", {}, C.T("field.severity")), C.el("dd", {}, C.el("span", {class: "badge sev-" + a.severity},
                                                                 C.label("sev", a.severity))),
      C.el("dt", {}, C.T("field.state")), C.el("dd", {id: "state", "data-state": a.state}, C.label("state", a.state)),
      C.el("dt", {}, C.T("field.layer")), C.el("dd", {}, C.label("layer", a.layer)),
      C.el("dt", {}, C.T("field.place")), C.el("dd", {}, C.place(a)),
      C.el("dt", {}, C.T("field.device")), C.el("dd", {}, a.device_id || "—"),
      C.el("dt", {}, C.T("field.opened")), C.el("dd", {}, C.fmtTime(a.opened_at)),
      C.el("dt", {}, C.T("field.count")), C.el("dd", {}, String(a.count))));
    document.getElementById("timeline").replaceChildren(...a.timeline.map((x) => C.el("li", {},
      `${C.fmtTime(x.at)} · ${C.label("tr", x.transition)} · ${x.by}`, x.note ? C.el("q", {}, x.note) : null)));
    document.getElementById("events").replaceChildren(...a.events.map((e) => C.el("tr", {},
      C.el("td", {}, C.fmtTime(e.ts)), C.el("td", {}, e.device_id), C.el("td", {}, e.type))));
    kv(document.getElementById("thresholds"), Object.entries(a.thresholds).map(([k, v]) => [k, String(v)]));
    const route = a.route || {};
    const pairs = [[C.T("detail.route_reason"), route.reason || "—"],
                   [C.T("detail.recipients"), (route.recipients || []).map((x) => x.id || x.ref || JSON.stringify(x))
                     .join(", ") || "—"]];
    if (route.suppressed) pairs.push([C.T("field.state"), C.T("detail.suppressed", {by: route.suppressed})]);
    kv(document.getElementById("route"), pairs);
    await Snapshots.show(document.getElementById("snapshots"), a.events, who);
    return a;
  }
  async function act(action) {
    const r = await C.api(`/api/v1/alerts/${id}/${action}`, {method: "POST", body: {note: note.value}});
    if (!r.ok) return C.notice(result, C.T("act.refused", {reason: r.error}), "error");
    C.notice(result, C.T("act.done", {state: C.label("state", r.data.state)}), "ok");
    note.value = "";
    const a = await load();
    if (a) buttons(a);
  }
  // Only what makes sense in the alert's state; the store still has the last word.
  const FITS = {acknowledge: ["open", "escalated"], resolve: ["open", "acknowledged", "escalated"],
                false_alarm: ["open", "acknowledged", "escalated", "resolved"], escalate: ["open", "acknowledged"]};
  function buttons(a) {
    const allowed = ACTIONS.filter((x) => !FITS[x] || FITS[x].includes(a.state));
    document.getElementById("actions").replaceChildren(...allowed.map((x) => C.el("button", {
      type: "button", class: x === "acknowledge" ? "primary" : "", "data-action": x, onclick: () => act(x)},
      C.T("act." + x))));
  }
  // Police: the events and the access log around the incident, and the evidence export.
  function eventRows(target, events) {
    target.replaceChildren(...events.map((e) => C.el("tr", {}, C.el("td", {}, C.fmtTime(e.time)),
      C.el("td", {}, e.device_id || "—"), C.el("td", {}, e.type))));
    if (!events.length) target.append(C.el("tr", {}, C.el("td", {colspan: "3", class: "muted-text"}, C.T("common.none"))));
  }
  async function around(a) {
    const from = String(a.opened_at - 1800);  // epoch seconds, half an hour either side
    const to = String(Math.max(a.updated_at, a.opened_at) + 1800);
    const where = a.building ? {building: a.building} : {grid: a.grid};
    const q = (extra) => "/api/v1/events?" + new URLSearchParams({...where, start: from, end: to, limit: "200", ...extra});
    const all = await C.api(q({}));
    if (!all.ok) return C.notice(result, C.T("common.error", {reason: all.error}), "error");
    eventRows(document.getElementById("around"), all.data.events);
    const access = all.data.events.filter((e) => e.type.startsWith("access_") || e.type.startsWith("door_"));
    eventRows(document.getElementById("access"), access);
    return null;
  }
  function exportForm(a) {
    const form = document.getElementById("export-form");
    const out = document.getElementById("export-result");
    const link = document.getElementById("export-download");
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const r = await C.api(`/api/v1/evidence/${a.id}/export`, {method: "POST", raw: true,
        body: {reason: document.getElementById("export-reason").value}});
      if (!r.ok) {
        const data = await r.response.json().catch(() => null);
        return C.notice(out, C.T("act.refused", {reason: data && typeof data.detail === "string" ? data.detail
          : r.error}), "error");
      }
      const disposition = r.response.headers.get("content-disposition") || "";
      const name = (disposition.match(/filename="([^"]+)"/) || [])[1] || `evidence-alert-${a.id}.zip`;
      link.href = URL.createObjectURL(await r.response.blob());
      link.download = name;
      link.hidden = false;
      C.notice(out, C.T("review.exported"), "ok");
      return link.click();
    });
  }
  const a = await load();
  if (a) buttons(a);
  if (a && who.role === "police_liaison") {
    document.getElementById("police").hidden = false;
    exportForm(a);
    await around(a);
  }
});
