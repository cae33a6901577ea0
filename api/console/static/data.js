// Device health and telemetry charts, from the API's devices registry and aggregates (SVG drawn here).
"use strict";
const ENDPOINTS = {
  devices: "/api/v1/devices",
  chart: (name) => `/api/v1/telemetry/charts/${name}`,
};
const CHARTS = [["hydrant", "hydrant_pressure", "line", "max"], ["gas", "gas_lel", "line", "max"],
                ["door", "door_traffic", "bar", "count"]];

function unavailable(box, r) {
  C.notice(box, r.status === 404 || r.status === 405 ? C.T("common.not_available")
    : C.T("common.error", {reason: r.error}), "error");
}

async function devicesPage() {
  const tbody = document.querySelector("#devices tbody");
  const only = document.getElementById("only-offline");
  const box = document.getElementById("devices-error");
  const r = await C.api(ENDPOINTS.devices);
  if (!r.ok) return unavailable(box, r);
  const items = Array.isArray(r.data) ? r.data : r.data.items || [];
  // status comes from the retained state and wills; overdue is the hub's own view (3 intervals silent).
  const state = (d) => (d.status === "offline" || d.overdue ? "offline" : d.status === "online" ? "online" : "unknown");
  const gridSel = document.getElementById("dev-grid");
  const more = document.getElementById("dev-more");
  const PAGE = 100;  // a site has hundreds of devices: draw a page at a time
  let shown = PAGE;
  const draw = () => {
    const all = items.filter((d) => (!only.checked || state(d) === "offline") && (!gridSel.value || d.grid === gridSel.value));
    const rows = all.slice(0, shown);
    document.getElementById("dev-count").textContent = C.T("devices.count", {shown: rows.length, total: all.length});
    more.hidden = rows.length >= all.length;
    tbody.replaceChildren(...rows.map((d) => C.el("tr", {"data-device": d.id, "data-status": state(d)},
      C.el("td", {}, d.id), C.el("td", {}, C.label("kind", d.kind)), C.el("td", {}, C.place(d)),
      C.el("td", {}, C.el("span", {class: {online: "badge sev-low", offline: "badge sev-critical", unknown: "badge dim"}[
        state(d)]}, C.T("devices." + state(d)))),
      C.el("td", {}, C.fmtTime(d.last_seen)),
      C.el("td", {}, d.battery_pct !== undefined && d.battery_pct !== null ? d.battery_pct + "%" : "—"),
      C.el("td", {}, d.agent || "—"), C.el("td", {}, String(d.open_alerts ?? 0)))));
  };
  const reset = () => { shown = PAGE; draw(); };
  only.addEventListener("change", reset);
  gridSel.addEventListener("change", reset);
  more.addEventListener("click", () => { shown += PAGE; draw(); });
  draw();
}

// One chart as SVG: a line per series (the chosen aggregate), or bars for counts.
function drawChart(target, chart, kind, agg, title) {
  const W = 960, H = 220, L = 48, R = 12, T = 12, B = 30;
  const series = (chart.series || []).map((s) => s.points.map((p) => [C.toMs(p.time), p.values[agg]])
    .filter((p) => p[1] !== null && p[1] !== undefined));
  const all = series.flat();
  if (!all.length) return target.replaceChildren(C.el("p", {class: "muted-text"}, C.T("charts.no_data")));
  const x0 = C.toMs(chart.start), x1 = C.toMs(chart.end);
  const ymax = Math.max(...all.map((p) => p[1])) * 1.1 || 1, ymin = kind === "bar" ? 0 : Math.min(0, ...all.map((p) => p[1]));
  const sx = (t) => L + ((t - x0) / (x1 - x0)) * (W - L - R);
  const sy = (v) => H - B - ((v - ymin) / (ymax - ymin)) * (H - T - B);
  const NS = "http://www.w3.org/2000/svg";
  const mk = (tag, attrs, text) => {
    const e = document.createElementNS(NS, tag);
    for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
    if (text !== undefined) e.textContent = text;
    return e;
  };
  const svg = mk("svg", {viewBox: `0 0 ${W} ${H}`, class: "chart", role: "img", "aria-label": title});
  svg.append(mk("line", {class: "axis", x1: L, y1: H - B, x2: W - R, y2: H - B}),
             mk("line", {class: "axis", x1: L, y1: T, x2: L, y2: H - B}));
  for (const v of [ymin, (ymin + ymax) / 2, ymax]) {
    svg.append(mk("text", {x: L - 4, y: sy(v) + 4, "text-anchor": "end"}, (+v.toFixed(2)).toString()));
  }
  [[x0, "start"], [(x0 + x1) / 2, "middle"], [x1, "end"]].forEach(([t, anchor]) => {
    svg.append(mk("text", {x: sx(t), y: H - 8, "text-anchor": anchor}, C.fmtTime(t / 1000).slice(5, 16)));
  });
  if (kind === "bar") {
    const w = Math.max(2, (W - L - R) / Math.max(all.length, 1) * 0.8);
    for (const [t, v] of all) svg.append(mk("rect", {class: "bar", x: sx(t) - w / 2, y: sy(v), width: w, height: H - B - sy(v)}));
  } else {
    for (const s of series) {
      if (s.length) svg.append(mk("polyline", {class: "line", points: s.map(([t, v]) => `${sx(t)},${sy(v)}`).join(" ")}));
    }
  }
  target.replaceChildren(svg);
}

async function chartsPage() {
  const form = document.getElementById("chart-form");
  const box = document.getElementById("charts-error");
  const draw = async () => {
    C.notice(box, "");
    const end = Date.now() / 1000;
    const start = end - Number(document.getElementById("chart-range").value);
    const q = new URLSearchParams({start: String(start), end: String(end)});
    const b = document.getElementById("chart-building").value;
    if (b) q.set("building", b);
    for (const [id, name, kind, agg] of CHARTS) {
      const target = document.getElementById("chart-" + id);
      const r = await C.api(ENDPOINTS.chart(name) + "?" + q);
      if (!r.ok) {
        unavailable(box, r);
        target.replaceChildren();
        continue;
      }
      drawChart(target, r.data, kind, agg, document.getElementById("c-" + id).textContent);
    }
  };
  form.addEventListener("submit", (ev) => { ev.preventDefault(); draw(); });
  await draw();
}

C.start(async () => (document.body.dataset.page === "devices" ? devicesPage() : chartsPage()));
