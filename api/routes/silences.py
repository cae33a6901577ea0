"""Silences and maintenance windows: create, list, expire (security staff and admins)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query

from api.deps import AlertsDep, AuditDep, require_roles
from api.schemas import SilenceCreate, SilencePublic, errors
from api.services.scope import Principal

router = APIRouter(prefix="/api/v1/silences", tags=["silences"])
Manager = Annotated[Principal, Depends(require_roles("admin", "security_staff"))]
ERR = errors(400, 401, 403, 404, 409, 422, 503)


@router.post("", response_model=SilencePublic, status_code=201, responses=ERR,
             summary="Create a silence")
def add(body: SilenceCreate, who: Manager, alerts: AlertsDep, audit: AuditDep) -> SilencePublic:
    """Matchers (label -> value) and a time range; matching alerts are routed to nobody new meanwhile."""
    with audit.around(who, "silences.add", "silence") as out:
        row = alerts.add_silence(who, body.matchers, body.starts_at, body.ends_at, body.comment, body.kind)
        out.target = f"silence:{row['id']}"
    return SilencePublic.model_validate(row)


@router.get("", response_model=list[SilencePublic], responses=ERR, summary="List silences")
def list_silences(who: Manager, alerts: AlertsDep, audit: AuditDep,
                  active: Annotated[bool, Query(description="Only those in force now.")] = False
                  ) -> list[SilencePublic]:
    """Silences, newest first."""
    rows = alerts.silences(active)
    audit.record(who, "silences.list", "silences", f"ok: {len(rows)} rows")
    return [SilencePublic.model_validate(r) for r in rows]


@router.post("/{silence_id}/expire", response_model=SilencePublic, responses=ERR, summary="Expire a silence")
def expire(silence_id: Annotated[int, Path(ge=1, le=2**62)], who: Manager, alerts: AlertsDep,
           audit: AuditDep) -> SilencePublic:
    """End a silence now."""
    with audit.around(who, "silences.expire", f"silence:{silence_id}"):
        row = alerts.expire_silence(silence_id)
    return SilencePublic.model_validate(row)
