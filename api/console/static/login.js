// Login (OAuth2 password flow) and the landing redirect by role.
"use strict";
(() => {
  const landingFor = (who) => C.layout.landing[who.role] || "/board";
  if (document.body.dataset.page === "landing") {
    C.start((who) => { location.replace(landingFor(who)); });
    return;
  }
  C.start(() => {
    const form = document.getElementById("login-form");
    const error = document.getElementById("login-error");
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      C.notice(error, "");
      const data = new URLSearchParams({username: form.username.value, password: form.password.value,
                                        grant_type: "password"});
      let r;
      try {
        r = await fetch("/api/v1/auth/token", {method: "POST", body: data});
      } catch (e) {
        return C.notice(error, C.T("login.failed", {reason: String(e.message || e)}), "error");
      }
      const out = await r.json().catch(() => ({}));
      if (!r.ok) {
        const reason = typeof out.detail === "string" ? out.detail : "HTTP " + r.status;
        return C.notice(error, C.T("login.failed", {reason}), "error");
      }
      C.forget();
      C.saveTokens(out);
      const who = await C.me();
      const next = new URLSearchParams(location.search).get("next");
      location.href = next && next.startsWith("/") && !next.startsWith("//") ? next : landingFor(who || {});
    });
  }, {auth: false});
})();
