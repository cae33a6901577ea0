"""One router per resource; the app includes every router in ROUTERS, in this order.

The api-data routers (events, telemetry, devices, coverage, snapshots, evidence, reports, patrols) and the
console's router are added to this list by their owners. Every route under /api/ is audited by the app's
middleware unless it records its own row through AuditDep.
"""

from __future__ import annotations

from fastapi import APIRouter

from api.console import pages as console
from api.routes import (
    alerts,
    audit,
    auth,
    coverage,
    devices,
    events,
    evidence,
    health,
    live,
    patrols,
    reports,
    silences,
    snapshots,
    telemetry,
    users,
)

ROUTERS: list[APIRouter] = [
    health.router,
    auth.router,
    users.router,
    live.router,  # before alerts: /alerts/stream must not be taken for /alerts/{alert_id}
    alerts.router,
    silences.router,
    audit.router,
    events.router,
    telemetry.router,
    devices.router,
    coverage.router,
    snapshots.router,
    evidence.router,
    reports.router,
    patrols.router,
    console.router,  # the web console: / and its pages and assets (api/console)
]
