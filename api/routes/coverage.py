"""Coverage by grid cell: layers covered and by what, how much is online, open alerts, and the gaps."""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import APIRouter

from api.data.devices import CellCoverage
from api.deps import AuditDep, CurrentUser, ServicesDep
from api.routes._data import DataDep
from api.schemas import errors

router = APIRouter(prefix="/api/v1/coverage", tags=["devices"])


@router.get("", response_model=list[CellCoverage], responses=errors(401, 503), summary="Coverage by grid cell")
def coverage(who: CurrentUser, data: DataDep, s: ServicesDep, audit: AuditDep) -> list[CellCoverage]:
    """The weekly report of a grid worker and the police liaison, for the cells in the caller's jurisdiction."""
    with audit.around(who, "coverage.read", "coverage") as out:
        cells = data.devices.coverage(who, datetime.fromtimestamp(s.clock(), UTC))
        out.result = f"ok: {len(cells)} cells"
    return cells
