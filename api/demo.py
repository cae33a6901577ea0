"""Demo accounts for `commhub up`: one per role, with fresh passwords printed once and stored hashed."""

from __future__ import annotations

import secrets

from api.services.audit import AuditLog
from api.state import Services
from commhub.config import Config


def _staff(cfg: Config, role: str) -> str | None:
    return next((s.id for s in cfg.community.staff if s.role == role), None)


def demo_accounts(cfg: Config) -> list[tuple[str, str, str, str]]:
    """Create (or reset) demo-<role> accounts; returns (username, role, password, scope note) for each."""
    s = Services(cfg, live=False)
    try:
        s.store.start()
        grid_staff = _staff(cfg, "grid_worker")
        grids = next((st.grids for st in cfg.community.staff if st.id == grid_staff), ())
        plan = [("demo-security", "security_staff", None, "every cell, acts on alerts"),
                ("demo-grid", "grid_worker", grid_staff, f"cells {', '.join(grids)} (roster {grid_staff})"),
                ("demo-property", "property", _staff(cfg, "property"), "facility layer"),
                ("demo-police", "police_liaison", _staff(cfg, "police_liaison"), "every cell, read-only + comment"),
                ("demo-admin", "admin", None, "accounts, silences, audit log")]
        out = []
        audit = AuditLog(s.store.engine)
        for username, role, staff, note in plan:
            if role == "grid_worker" and staff is None:
                continue  # a community without grid workers in its roster
            password = secrets.token_urlsafe(9)
            if s.accounts.get(username) is None:
                s.accounts.add(username, role, password, staff)
                audit.append("commhub-up", "-", "users.add", f"user:{username}", f"ok: demo {role}", "local")
            else:
                s.accounts.reset_password(username, password)
                s.accounts.set_disabled(username, False)
                audit.append("commhub-up", "-", "users.reset_password", f"user:{username}", "ok: demo", "local")
            out.append((username, role, password, note))
        return out
    finally:
        s.stop()
