"""The audit log (admins only): read it, and verify its hash chain."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query

from api.deps import AuditDep, require_roles
from api.schemas import AuditPage, AuditPublic, AuditVerifyPublic, errors
from api.services.scope import Principal

router = APIRouter(prefix="/api/v1/audit", tags=["audit"])
Admin = Annotated[Principal, Depends(require_roles("admin"))]
ERR = errors(400, 401, 403, 422, 503)


@router.get("", response_model=AuditPage, responses=ERR, summary="Read the audit log")
def read(who: Admin, audit: AuditDep, before: Annotated[int | None, Query(ge=1, le=2**62)] = None,
         limit: Annotated[int, Query(ge=1, le=1000)] = 100,
         actor: Annotated[str | None, Query(max_length=80)] = None,
         action: Annotated[str | None, Query(max_length=80)] = None) -> AuditPage:
    """Rows newest first (reading the log is itself audited)."""
    rows = audit.log.page(before, limit, actor, action)
    audit.record(who, "audit.read", "audit", f"ok: {len(rows)} rows")
    nxt = int(rows[-1]["seq"]) if len(rows) == limit else None
    return AuditPage(items=[AuditPublic.model_validate(r) for r in rows], next_before=nxt)


@router.get("/verify", response_model=AuditVerifyPublic, responses=ERR, summary="Verify the hash chain")
def verify(who: Admin, audit: AuditDep) -> AuditVerifyPublic:
    """Recompute every row's hash and link; reports edits and deletions."""
    v = audit.log.verify()
    audit.record(who, "audit.verify", "audit", "ok" if v.ok else f"FAILED: {len(v.problems)} problems")
    return AuditVerifyPublic(ok=v.ok, rows=v.rows, problems=v.problems[:100])
