// The live alert board: the list from the API, then every notice from the SSE stream, without reloading.
"use strict";
C.start((who) => {
  const alerts = new Map();  // alert id -> row data
  const rank = (s) => C.SEVERITIES.indexOf(s);
  const filter = new URLSearchParams(location.search);
  const tbody = document.querySelector("#board tbody");
  const conn = document.getElementById("conn");
  const errorBox = document.getElementById("board-error");
  const mute = document.getElementById("mute");
  const soundState = document.getElementById("sound-state");
  const rowNotes = new Map();  // alert id -> refusal text, kept across re-renders
  let lastId = null;
  let source = null;
  let retry = 1000;
  let audio = null;
  let firstLoad = null;

  // ---- sound cue: a two-tone beep made with WebAudio (no audio file) -----------------------------------------
  mute.checked = localStorage.getItem("commhub.mute") === "1";
  const showSound = () => { soundState.textContent = C.T(mute.checked ? "board.sound_off" : "board.sound_on"); };
  showSound();
  mute.addEventListener("change", () => {
    localStorage.setItem("commhub.mute", mute.checked ? "1" : "0");
    showSound();
    if (!mute.checked) ensureAudio();
  });
  function ensureAudio() {
    const Ctx = window.AudioContext || window.webkitAudioContext;
    if (!Ctx) return null;
    if (!audio) audio = new Ctx();
    if (audio.state === "suspended") audio.resume().catch(() => {});
    return audio;
  }
  document.addEventListener("click", () => { if (!mute.checked) ensureAudio(); }, {once: true});
  function beep(severity) {
    document.body.dataset.lastCue = severity;  // lets a test see that a cue was due
    if (mute.checked) return;
    const ctx = ensureAudio();
    if (!ctx) return;
    const tones = severity === "critical" ? [880, 660, 880] : [660, 520];
    tones.forEach((f, i) => {
      const osc = ctx.createOscillator();
      const gain = ctx.createGain();
      osc.frequency.value = f;
      gain.gain.value = 0.15;
      osc.connect(gain).connect(ctx.destination);
      osc.start(ctx.currentTime + i * 0.22);
      osc.stop(ctx.currentTime + i * 0.22 + 0.18);
    });
  }

  // ---- the table -------------------------------------------------------------------------------------------------
  const wanted = (a) => (!filter.get("grid") || a.grid === filter.get("grid"))
    && (!filter.get("building") || a.building === filter.get("building"));
  function upsert(a) {
    if (!C.ACTIVE.has(a.state) || !wanted(a)) alerts.delete(a.id);
    else alerts.set(a.id, Object.assign(alerts.get(a.id) || {}, a));
  }
  function fromNotice(n) {
    return {id: n.alert_id, code: n.code, severity: n.severity, layer: n.layer, grid: n.grid, building: n.building,
            unit: n.unit, device_id: n.device_id, state: n.state, count: n.count, opened_at: C.toMs(n.opened_at) / 1000};
  }
  async function ack(a, button, note) {
    button.disabled = true;
    const r = await C.api(`/api/v1/alerts/${a.id}/acknowledge`, {method: "POST", body: {note: ""}});
    if (r.ok) {
      rowNotes.delete(a.id);
      upsert(Object.assign({}, a, {state: r.data.state}));
    } else {
      rowNotes.set(a.id, C.T("act.refused", {reason: r.error}));
      C.notice(note, rowNotes.get(a.id), "error");
      button.disabled = false;
      return;
    }
    render();
  }
  function render() {
    const rows = [...alerts.values()].sort((x, y) => rank(x.severity) - rank(y.severity) || x.opened_at - y.opened_at);
    tbody.replaceChildren(...rows.map((a) => {
      const note = C.el("p", {class: "notice error", role: "alert", hidden: !rowNotes.has(a.id)}, rowNotes.get(a.id) || "");
      const acts = C.el("div", {class: "acts"});
      if (who.can_act && (a.state === "open" || a.state === "escalated")) {
        const b = C.el("button", {type: "button", class: "ack", "aria-label": `${C.T("act.acknowledge")} #${a.id}`},
                       C.T("act.acknowledge"));
        b.addEventListener("click", () => ack(a, b, note));
        acts.append(b);
      }
      acts.append(C.el("a", {href: `/alerts/${a.id}`, class: "detail"}, C.T("board.open_detail")), note);
      const actions = C.el("td", {class: "actions"}, acts);
      return C.el("tr", {class: "sev-" + a.severity, "data-alert": a.id, "data-state": a.state, "data-grid": a.grid,
                         "data-code": a.code},
        C.el("td", {}, C.el("span", {class: "badge sev-" + a.severity}, C.label("sev", a.severity))),
        C.el("td", {class: "code"}, C.label("code", a.code), a.device_id ? C.el("small", {class: "muted-text dev"},
          " " + a.device_id) : null),
        C.el("td", {}, C.place(a)),
        C.el("td", {}, C.el("time", {datetime: new Date(a.opened_at * 1000).toISOString()}, C.fmtTime(a.opened_at))),
        C.el("td", {class: "age"}, C.fmtAge(a.opened_at)),
        C.el("td", {}, String(a.count)),
        C.el("td", {class: "state"}, C.label("state", a.state)),
        actions);
    }));
    document.getElementById("board-empty").hidden = rows.length > 0;
    document.getElementById("board").hidden = rows.length === 0;
    const unacked = {};
    for (const a of rows) if (a.state !== "acknowledged") unacked[a.grid] = (unacked[a.grid] || 0) + 1;
    for (const li of document.querySelectorAll("#cell-counts li")) {
      const n = unacked[li.dataset.grid] || 0;
      li.querySelector(".n").textContent = String(n);
      li.classList.toggle("hot", n > 0);
    }
  }
  setInterval(() => { for (const td of tbody.querySelectorAll("td.age")) td.textContent = C.fmtAge(alerts.get(
    Number(td.parentElement.dataset.alert)).opened_at); }, 10000);

  async function load() {
    const q = new URLSearchParams({limit: "500", sort: "-severity"});
    for (const s of C.ACTIVE) q.append("state", s);
    if (filter.get("grid")) q.append("grid", filter.get("grid"));
    if (filter.get("building")) q.append("building", filter.get("building"));
    const r = await C.api("/api/v1/alerts?" + q);
    if (!r.ok) return C.notice(errorBox, C.T("common.error", {reason: r.error}), "error");
    C.notice(errorBox, "");
    for (const a of r.data.items) upsert(a);
    render();
  }

  // ---- the live stream -----------------------------------------------------------------------------------------
  function status(kind) {
    conn.className = "conn " + kind;
    conn.textContent = C.T({live: "board.live", reconnecting: "board.reconnecting", connecting: "board.connecting"}[kind]);
    document.body.dataset.conn = kind;
  }
  function connect() {
    const q = new URLSearchParams({access_token: C.token() || ""});
    if (lastId !== null) q.set("after", String(lastId));
    source = new EventSource("/api/v1/alerts/stream?" + q);
    source.addEventListener("open", async () => {
      retry = 1000;
      status("live");
      await load();  // after the stream is open, so nothing raised in between is missed
      if (firstLoad) firstLoad();
      firstLoad = null;
    });
    source.addEventListener("alert", (ev) => {
      const n = JSON.parse(ev.data);
      lastId = n.notice_id;
      const fresh = !alerts.has(n.alert_id);
      upsert(fromNotice(n));
      render();
      if ((n.severity === "critical" || n.severity === "high") && C.ACTIVE.has(n.state)
          && (fresh || ["opened", "reopened", "severity_raised"].includes(n.transition))) beep(n.severity);
    });
    source.addEventListener("error", () => {
      status("reconnecting");
      if (firstLoad) firstLoad();
      firstLoad = null;
      if (source.readyState === EventSource.CLOSED) {
        // The browser gives up on an HTTP error (API restarting, token expired): retry ourselves, with backoff.
        source = null;
        setTimeout(async () => { await C.refresh(); connect(); }, retry);
        retry = Math.min(retry * 2, 5000);
      }
    });
  }
  status("connecting");
  // Ready once the stream is open and the list is drawn (or the stream could not open at first try).
  return new Promise((resolve) => {
    firstLoad = resolve;
    connect();
  });
});
