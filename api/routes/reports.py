"""Residents' reports: a ticket routed like any other alert, and an event through the hub's normal path."""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import APIRouter

from api.data.people import ReportCreate, ReportPublic
from api.deps import AuditDep, CurrentUser, ServicesDep
from api.routes._data import DataDep
from api.schemas import errors
from api.services.errors import Forbidden

router = APIRouter(prefix="/api/v1/reports", tags=["people"])


@router.post("", response_model=ReportPublic, status_code=201, summary="A resident's report",
             responses=errors(400, 401, 403, 404, 422, 503))
def report(body: ReportCreate, who: CurrentUser, data: DataDep, s: ServicesDep, audit: AuditDep) -> ReportPublic:
    """From a resident terminal (an API key) or staff; a place outside the caller's cells is a 404."""
    with audit.around(who, "reports.create", f"report:{body.category}@{body.grid}") as done:
        if who.role in ("police_liaison", "admin"):
            raise Forbidden("reports are taken in by terminals, security staff, grid workers and property")
        out = data.people.report(who, body, datetime.fromtimestamp(s.clock(), UTC))
        done.target, done.result = f"alert:{out.alert_id}", f"ok: {out.report_id}"
    return out
