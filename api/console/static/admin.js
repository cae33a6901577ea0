// Silences (security staff, admins), accounts and the audit log (admins).
"use strict";
C.start(async () => {
  const page = document.body.dataset.page;
  const td = (...xs) => xs.map((x) => C.el("td", {}, x));

  if (page === "silences") {
    const tbody = document.querySelector("#silences tbody");
    const result = document.getElementById("silence-result");
    const load = async () => {
      const r = await C.api("/api/v1/silences");
      if (!r.ok) return C.notice(result, C.T("common.error", {reason: r.error}), "error");
      tbody.replaceChildren(...r.data.map((s) => {
        const expire = s.active ? C.el("button", {type: "button", onclick: async () => {
          const x = await C.api(`/api/v1/silences/${s.id}/expire`, {method: "POST"});
          if (!x.ok) C.notice(result, C.T("act.refused", {reason: x.error}), "error");
          load();
        }}, C.T("silences.expire")) : C.T("common.no");
        return C.el("tr", {"data-silence": s.id}, td(String(s.id), C.label("silences.kind", s.kind),
          Object.entries(s.matchers).map(([k, v]) => `${k}=${v}`).join(", "), C.fmtTime(s.starts_at),
          C.fmtTime(s.ends_at), s.created_by, s.comment, expire));
      }));
    };
    document.getElementById("silence-form").addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const matchers = {};
      for (const line of document.getElementById("matchers").value.split(/\n/)) {
        const [k, ...v] = line.split("=");
        if (k.trim() && v.join("=").trim()) matchers[k.trim()] = v.join("=").trim();
      }
      const hours = Number(document.getElementById("hours").value);
      const r = await C.api("/api/v1/silences", {method: "POST", body: {matchers, ends_at: Date.now() / 1000 + hours * 3600,
        comment: document.getElementById("comment").value, kind: document.getElementById("kind").value}});
      C.notice(result, r.ok ? C.T("act.done", {state: "#" + r.data.id}) : C.T("act.refused", {reason: r.error}),
               r.ok ? "ok" : "error");
      load();
    });
    return load();
  }

  if (page === "accounts") {
    const tbody = document.querySelector("#accounts tbody");
    const result = document.getElementById("account-result");
    const load = async () => {
      const r = await C.api("/api/v1/users");
      if (!r.ok) return C.notice(result, C.T("common.error", {reason: r.error}), "error");
      tbody.replaceChildren(...r.data.map((u) => C.el("tr", {"data-user": u.username}, td(u.username,
        C.label("role", u.role), C.fmtTime(u.created_at), C.T(u.disabled ? "common.yes" : "common.no"),
        C.el("button", {type: "button", onclick: async () => {
          const x = await C.api(`/api/v1/users/${encodeURIComponent(u.username)}`, {method: "PATCH",
                                                                                    body: {disabled: !u.disabled}});
          if (!x.ok) C.notice(result, C.T("act.refused", {reason: x.error}), "error");
          load();
        }}, C.T(u.disabled ? "accounts.enable" : "accounts.disable"))))));
    };
    document.getElementById("account-form").addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const r = await C.api("/api/v1/users", {method: "POST", body: {
        username: document.getElementById("new-username").value, role: document.getElementById("new-role").value,
        password: document.getElementById("new-password").value}});
      C.notice(result, r.ok ? C.T("act.done", {state: r.data.username}) : C.T("act.refused", {reason: r.error}),
               r.ok ? "ok" : "error");
      if (r.ok) ev.target.reset();
      load();
    });
    return load();
  }

  if (page === "audit") {
    const tbody = document.querySelector("#audit tbody");
    const more = document.getElementById("more");
    const result = document.getElementById("verify-result");
    let before = null;
    const load = async () => {
      const r = await C.api("/api/v1/audit?limit=100" + (before ? "&before=" + before : ""));
      if (!r.ok) return C.notice(result, C.T("common.error", {reason: r.error}), "error");
      tbody.append(...r.data.items.map((x) => C.el("tr", {}, td(String(x.seq), C.fmtTime(x.at), x.actor,
        C.label("role", x.role), x.action, x.target, x.result, x.address))));
      before = r.data.next_before;
      more.hidden = !before;
    };
    more.addEventListener("click", load);
    document.getElementById("verify").addEventListener("click", async () => {
      const r = await C.api("/api/v1/audit/verify");
      if (!r.ok) return C.notice(result, C.T("common.error", {reason: r.error}), "error");
      C.notice(result, r.data.ok ? C.T("audit.ok", {rows: r.data.rows}) : C.T("audit.broken",
               {count: r.data.problems.length}), r.data.ok ? "ok" : "error");
    });
    return load();
  }
  return null;
});
