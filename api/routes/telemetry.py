"""Telemetry aggregates for charts (door traffic per hour, hydrant pressure, gas LEL); every read is audited."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from api.data.events import CHARTS, Chart, TelemetryQuery
from api.deps import AuditDep, CurrentUser, ServicesDep
from api.routes._data import DataDep
from api.schemas import errors
from api.services.errors import Invalid
from commhub.wire import Ident

router = APIRouter(prefix="/api/v1/telemetry", tags=["telemetry"])
ERR = errors(400, 401, 404, 422, 503)


class ChartQuery(BaseModel):
    """Where and when a named chart reads."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    grid: Ident | None = None
    building: Ident | None = None
    device_id: Ident | None = None
    start: float | None = Field(default=None, ge=0, le=9.2e9, description="Epoch seconds; default end - 24 h.")
    end: float | None = Field(default=None, ge=0, le=9.2e9, description="Epoch seconds; default now.")
    interval: Literal["1m", "5m", "15m", "1h", "6h", "1d"] | None = Field(default=None,
                                                                           description="Bucket width.")


def _run(q: TelemetryQuery, who: CurrentUser, data: DataDep, s: ServicesDep, audit: AuditDep, name: str) -> Chart:
    target = f"telemetry:{name}:" + ",".join(f"{k}={v}" for k, v in q.model_dump(
        exclude_none=True, include={"grid", "building", "device_id"}).items())
    with audit.around(who, "telemetry.read", target[:300]) as out:
        chart = data.events.aggregate(q, who, datetime.fromtimestamp(s.clock(), UTC))
        out.result = f"ok: {len(chart.series)} series"
    return chart


@router.get("", response_model=Chart, responses=ERR, summary="Aggregate any numeric field")
def aggregate(q: Annotated[TelemetryQuery, Query()], who: CurrentUser, data: DataDep, s: ServicesDep,
              audit: AuditDep) -> Chart:
    """agg(field) of one measurement per time bucket (per device with by_device), in the caller's jurisdiction."""
    return _run(q, who, data, s, audit, q.measurement)


@router.get("/charts/{name}", response_model=Chart, responses=ERR, summary="A named chart")
def chart(name: Annotated[Literal["door_traffic", "hydrant_pressure", "gas_lel"], Path()],
          q: Annotated[ChartQuery, Query()], who: CurrentUser, data: DataDep, s: ServicesDep,
          audit: AuditDep) -> Chart:
    """door_traffic (granted accesses per hour), hydrant_pressure (min/mean/max), gas_lel (max/mean)."""
    preset = dict(CHARTS[name])
    if q.interval is not None:
        preset["interval"] = q.interval
    try:
        tq = TelemetryQuery(**preset, **q.model_dump(exclude_none=True, exclude={"interval"}))
    except ValidationError as e:
        err = Invalid("; ".join(str(x["msg"]) for x in e.errors(include_input=False, include_url=False)))
        audit.record(who, "telemetry.read", f"telemetry:{name}", f"{err.status}: {err}")
        raise err from None
    return _run(tq, who, data, s, audit, name)
