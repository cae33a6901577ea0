"""Event history from InfluxDB (InfluxQL on /query), by place, device, type and time; every read is audited."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Query

from api.data.events import EventPage, EventQuery
from api.deps import AuditDep, CurrentUser, ServicesDep
from api.routes._data import DataDep
from api.schemas import errors

router = APIRouter(prefix="/api/v1/events", tags=["events"])
ERR = errors(400, 401, 404, 422, 503)


@router.get("", response_model=EventPage, responses=ERR, summary="Event history")
def list_events(q: Annotated[EventQuery, Query()], who: CurrentUser, data: DataDep, s: ServicesDep,
                audit: AuditDep) -> EventPage:
    """Events newest first in the caller's jurisdiction; another cell, building or device is a 404."""
    target = "events:" + ",".join(f"{k}={v}" for k, v in q.model_dump(exclude_none=True, exclude={"cursor"}).items())
    with audit.around(who, "events.read", target[:300]) as out:
        page = data.events.history(q, who, datetime.fromtimestamp(s.clock(), UTC))
        out.result = f"ok: {len(page.events)} events"
    return page
