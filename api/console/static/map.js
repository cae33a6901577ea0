// The community plan: each building coloured by its worst open alert, device status on hover or tap.
"use strict";
C.start(async () => {
  const rank = (s) => C.SEVERITIES.indexOf(s);
  const worst = {};  // building -> severity
  const count = {};  // building or "grid:<id>" -> open alerts
  const devices = {};  // building or "grid:<id>" -> {online, total}
  const hover = document.getElementById("hover");
  const q = new URLSearchParams({limit: "500"});
  for (const s of C.ACTIVE) q.append("state", s);
  const r = await C.api("/api/v1/alerts?" + q);
  if (!r.ok) C.notice(document.getElementById("map-error"), C.T("common.error", {reason: r.error}), "error");
  for (const a of r.ok ? r.data.items : []) {
    const key = a.building || "grid:" + a.grid;
    count[key] = (count[key] || 0) + 1;
    count["cell:" + a.grid] = (count["cell:" + a.grid] || 0) + 1;
    if (a.building && (worst[a.building] === undefined || rank(a.severity) < rank(worst[a.building]))) {
      worst[a.building] = a.severity;
    }
  }
  const d = await C.api("/api/v1/devices");
  const items = d.ok ? (Array.isArray(d.data) ? d.data : d.data.items || []) : [];
  for (const x of items) {
    const key = x.building || "grid:" + x.grid;
    devices[key] = devices[key] || {online: 0, total: 0};
    devices[key].total += 1;
    if (x.status === "online" && !x.overdue) devices[key].online += 1;
  }
  for (const b of document.querySelectorAll("svg.plan .bldg")) {
    if (worst[b.dataset.building]) b.classList.add("sev-" + worst[b.dataset.building]);
    b.dataset.severity = worst[b.dataset.building] || "";
  }
  for (const t of document.querySelectorAll("svg.plan .cell-count")) {
    t.textContent = count["cell:" + t.dataset.grid] ? "⚠ " + count["cell:" + t.dataset.grid] : "";
  }
  function describe(a) {
    const key = a.dataset.building || "grid:" + a.dataset.grid;
    const name = a.dataset.name || a.getAttribute("aria-label");
    const dev = devices[key] || {online: d.ok ? 0 : "?", total: Number(a.dataset.devices)};
    const text = `${C.T("map.building_alerts", {name, count: count[key] || 0})} · ${C.T("map.devices", dev)}`;
    a.setAttribute("aria-label", text);
    return text;
  }
  for (const a of document.querySelectorAll("svg.plan .bldg, svg.plan .common")) {
    describe(a);
    const show = () => { hover.textContent = describe(a); };
    a.addEventListener("mouseenter", show);
    a.addEventListener("focus", show);
    // A tap shows the status first; a second tap on the same building follows the link to its alerts.
    a.addEventListener("touchend", (ev) => {
      if (hover.dataset.shown !== (a.dataset.building || a.dataset.grid)) {
        ev.preventDefault();
        show();
        hover.dataset.shown = a.dataset.building || a.dataset.grid;
      }
    });
  }
});
