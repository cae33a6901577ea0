// The console's shared helpers: strings, the API client with its token, times in the site's zone, menus by role.
"use strict";
const C = (() => {
  const body = document.body;
  const strings = JSON.parse(document.getElementById("catalogue").textContent);
  const layout = JSON.parse(document.getElementById("layout").textContent);
  const TZ = body.dataset.tz;
  const LANG = body.dataset.lang === "zh" ? "zh-CN" : "en";
  const SEVERITIES = ["critical", "high", "medium", "low"];
  const ACTIVE = new Set(["open", "acknowledged", "escalated"]);
  const store = window.sessionStorage;

  // A key missing from the catalogue shows as the key itself; the browser test looks for exactly that.
  function T(key, vars) {
    let s = Object.prototype.hasOwnProperty.call(strings, key) ? strings[key] : key;
    if (vars) for (const [k, v] of Object.entries(vars)) s = s.split("{" + k + "}").join(String(v));
    return s;
  }
  const has = (key) => Object.prototype.hasOwnProperty.call(strings, key);
  const label = (prefix, value) => (has(prefix + "." + value) ? T(prefix + "." + value) : String(value));

  function el(tag, attrs, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === "class") e.className = v;
      else if (k === "text") e.textContent = v;
      else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
      else e.setAttribute(k, v === true ? "" : v);
    }
    for (const c of children.flat()) if (c !== null && c !== undefined) e.append(c instanceof Node ? c : String(c));
    return e;
  }

  const dtf = new Intl.DateTimeFormat(LANG, {timeZone: TZ, year: "numeric", month: "2-digit", day: "2-digit",
                                             hour: "2-digit", minute: "2-digit", second: "2-digit", hour12: false});
  const toMs = (t) => (typeof t === "number" ? t * 1000 : Date.parse(t));
  const fmtTime = (t) => (t === null || t === undefined ? "—" : dtf.format(new Date(toMs(t))));
  function fmtAge(t) {
    const s = Math.max(0, Math.round((Date.now() - toMs(t)) / 1000));
    if (s < 60) return s + "s";
    if (s < 3600) return Math.floor(s / 60) + "m";
    if (s < 86400) return Math.floor(s / 3600) + "h" + String(Math.floor((s % 3600) / 60)).padStart(2, "0");
    return Math.floor(s / 86400) + "d";
  }
  // "YYYY-MM-DDTHH:MM" in the site's zone for <input type=datetime-local>, and back to epoch seconds.
  function localInput(ms) {
    const p = Object.fromEntries(new Intl.DateTimeFormat("en-CA", {timeZone: TZ, year: "numeric", month: "2-digit",
      day: "2-digit", hour: "2-digit", minute: "2-digit", hour12: false}).formatToParts(new Date(ms))
      .map((x) => [x.type, x.value]));
    return `${p.year}-${p.month}-${p.day}T${p.hour === "24" ? "00" : p.hour}:${p.minute}`;
  }
  function fromLocalInput(text) {
    const guess = Date.parse(text + "Z");
    const offset = Date.parse(localInput(guess) + "Z") - guess;  // the zone's offset at that moment
    return (guess - offset) / 1000;
  }

  const names = {};
  for (const g of layout.grids) {
    names["grid:" + g.id] = g.name;
    for (const b of g.buildings) names["building:" + b.id] = b.name;
  }
  const place = (a) => [a.grid && (names["grid:" + a.grid] || a.grid), a.building && (names["building:" + a.building]
    || a.building), a.unit].filter(Boolean).join(" · ");

  // ---- the API client ---------------------------------------------------------------------------------------
  const token = () => store.getItem("commhub.token");
  function saveTokens(t) {
    store.setItem("commhub.token", t.access_token);
    store.setItem("commhub.refresh", t.refresh_token);
  }
  function forget() {
    for (const k of ["commhub.token", "commhub.refresh", "commhub.me"]) store.removeItem(k);
  }
  function toLogin() {
    forget();
    location.href = "/login?next=" + encodeURIComponent(location.pathname + location.search);
  }
  async function refresh() {
    const rt = store.getItem("commhub.refresh");
    if (!rt) return false;
    try {
      const r = await fetch("/api/v1/auth/refresh", {method: "POST", headers: {"Content-Type": "application/json"},
                                                     body: JSON.stringify({refresh_token: rt})});
      if (!r.ok) return false;
      saveTokens(await r.json());
      return true;
    } catch (e) {
      return false;
    }
  }
  function detail(data, status) {
    if (data && typeof data.detail === "string") return data.detail;
    if (data && Array.isArray(data.detail)) return data.detail.map((d) => (d.loc || []).join(".") + ": " + d.msg).join("; ");
    return "HTTP " + status;
  }
  // Resolves to {ok, status, data, error}; a 401 refreshes the token once, then sends to the login page.
  async function api(path, opts = {}, retried = false) {
    const headers = Object.assign({}, opts.headers || {});
    if (token()) headers.Authorization = "Bearer " + token();
    let reqBody = opts.body;
    if (reqBody !== undefined && !(reqBody instanceof FormData) && typeof reqBody !== "string") {
      headers["Content-Type"] = "application/json";
      reqBody = JSON.stringify(reqBody);
    }
    let r;
    try {
      r = await fetch(path, {method: opts.method || "GET", headers, body: reqBody});
    } catch (e) {
      return {ok: false, status: 0, data: null, error: String(e.message || e)};
    }
    if (r.status === 401 && !retried && !opts.noRefresh) {
      if (await refresh()) return api(path, opts, true);
      toLogin();
    }
    if (opts.raw) return {ok: r.ok, status: r.status, response: r, error: r.ok ? null : "HTTP " + r.status};
    let data = null;
    const type = r.headers.get("content-type") || "";
    if (type.includes("json")) data = await r.json().catch(() => null);
    return {ok: r.ok, status: r.status, data, error: r.ok ? null : detail(data, r.status)};
  }
  async function me() {
    const cached = store.getItem("commhub.me");
    if (cached) return JSON.parse(cached);
    const r = await api("/api/v1/auth/me");
    if (!r.ok) return null;
    store.setItem("commhub.me", JSON.stringify(r.data));
    return r.data;
  }
  // An image the API serves behind the bearer token, as an object URL for <img>.
  async function blobUrl(path) {
    const r = await api(path, {raw: true});
    if (!r.ok) return {url: null, status: r.status, headers: null};
    return {url: URL.createObjectURL(await r.response.blob()), status: r.status, headers: r.response.headers};
  }

  function notice(target, text, kind) {
    target.textContent = text;
    target.className = "notice " + (kind || "");
    target.hidden = !text;
  }

  // ---- page start ---------------------------------------------------------------------------------------------
  // body[data-ready] is set once the page has drawn its data: tests and screen readers wait for it, not for time.
  async function start(init, opts = {}) {
    try {
      return await begin(init, opts);
    } finally {
      body.dataset.ready = "1";
    }
  }
  async function begin(init, {auth = true} = {}) {
    document.getElementById("logout").addEventListener("click", async () => {
      await api("/api/v1/auth/logout", {method: "POST", noRefresh: true});
      forget();
      location.href = "/login";
    });
    if (!auth) return init(null);
    if (!token()) return toLogin();
    const who = await me();
    if (!who) return toLogin();
    document.getElementById("who-name").textContent = who.username;
    document.getElementById("who-role").textContent = label("role", who.role);
    for (const e of document.querySelectorAll(".who, #logout, nav.menu")) e.hidden = false;
    for (const li of document.querySelectorAll("nav.menu li")) li.hidden = !li.dataset.roles.split(" ").includes(who.role);
    if (!body.dataset.roles.split(" ").includes(who.role)) {
      document.getElementById("forbidden").hidden = false;
      document.getElementById("page-body").hidden = true;
      return null;
    }
    return init(who);
  }

  return {T, label, el, fmtTime, fmtAge, toMs, localInput, fromLocalInput, place, names, layout, api, me, blobUrl,
          token, saveTokens, forget, refresh, notice, start, SEVERITIES, ACTIVE, TZ, LANG};
})();
