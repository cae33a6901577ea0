"""Patrol check-ins at checkpoints (QR/NFC): published as the checkpoint's scan, so patrol_missed sees them."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Depends

from api.data.people import CheckinCreate, CheckinPublic
from api.deps import AuditDep, ServicesDep, require_roles
from api.routes._data import DataDep
from api.schemas import errors
from api.services.scope import Principal

router = APIRouter(prefix="/api/v1/patrols", tags=["people"])
Guard = Annotated[Principal, Depends(require_roles("security_staff", "grid_worker"))]


@router.post("/checkins", response_model=CheckinPublic, status_code=201, summary="A patrol check-in",
             responses=errors(400, 401, 403, 404, 422, 503))
def checkin(body: CheckinCreate, who: Guard, data: DataDep, s: ServicesDep, audit: AuditDep) -> CheckinPublic:
    """404 for a checkpoint outside the caller's cells; 503 when the broker did not take it (scan again)."""
    with audit.around(who, "patrols.checkin", f"checkpoint:{body.checkpoint}") as done:
        out = data.people.checkin(who, body, datetime.fromtimestamp(s.clock(), UTC))
        done.result = f"ok: seq {out.seq}"
    return out
