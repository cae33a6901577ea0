"""Event history and telemetry aggregates from InfluxDB, restricted to the caller's jurisdiction in the query."""

from __future__ import annotations

import base64
import binascii
import re
import types
import typing
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from api.data import influxql
from api.data.influx import InfluxReader
from api.data.influxql import QueryError
from api.data.scope import check_place, visible
from api.services.errors import NotFound
from api.services.scope import Principal
from commhub.community import Community
from commhub.wire import BODY_TYPES, Ident, Layer

TAGS = ("site", "grid", "building", "layer", "device_kind", "device_id")
_LIVENESS = ("birth", "state", "heartbeat")
EVENT_TYPES: frozenset[str] = frozenset(t for t, cls in BODY_TYPES.items() if cls.channel == "evt")
MAX_RANGE = timedelta(days=92)
MAX_BUCKETS = 5000
_CURSOR = re.compile(r"^[A-Za-z0-9_-]{1,64}={0,2}$")


def _numeric(annotation: Any) -> bool:
    args = typing.get_args(annotation) if isinstance(annotation, types.UnionType) else (annotation,)
    return any(a in (int, float) for a in args) and bool not in args


# measurement -> fields an aggregate may read: the numeric fields of the body, and seq (to count points).
NUMERIC_FIELDS: dict[str, frozenset[str]] = {
    t: frozenset({"seq", *(n for n, f in cls.model_fields.items() if _numeric(f.annotation))})
    for t, cls in BODY_TYPES.items() if t not in _LIVENESS
}


class _Query(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    grid: Ident | None = Field(default=None, description="Grid cell id.")
    building: Ident | None = Field(default=None, description="Building id.")
    device_id: Ident | None = Field(default=None, description="Device id.")
    start: float | None = Field(default=None, ge=0, le=9.2e9, description="From, epoch seconds (inclusive); "
                                "default: end - 24 h.")
    end: float | None = Field(default=None, ge=0, le=9.2e9, description="Until, epoch seconds (exclusive); "
                              "default: now.")

    @model_validator(mode="after")
    def _range(self) -> _Query:
        if self.start is not None and self.end is not None:
            if self.start >= self.end:
                raise ValueError("start must be before end")
            if self.end - self.start > MAX_RANGE.total_seconds():
                raise ValueError(f"the time range may span at most {MAX_RANGE.days} days")
        return self

    def window(self, now: datetime) -> tuple[datetime, datetime]:
        """The [start, end) the query reads."""
        end = datetime.fromtimestamp(self.end, UTC) if self.end is not None else now
        start = datetime.fromtimestamp(self.start, UTC) if self.start is not None else end - timedelta(days=1)
        if start >= end:
            raise QueryError("start must be before end")
        if end - start > MAX_RANGE:
            raise QueryError(f"the time range may span at most {MAX_RANGE.days} days")
        return start, end


class EventQuery(_Query):
    """Filters of the event history."""

    type: str | None = Field(default=None, max_length=48, description="Event type, e.g. door_opened.")
    layer: Layer | None = Field(default=None, description="people, technical or facility.")
    limit: int = Field(default=100, ge=1, le=1000, description="Events per page.")
    cursor: str | None = Field(default=None, max_length=70, description="next_cursor of the previous page.")

    @field_validator("type")
    @classmethod
    def _type(cls, v: str | None) -> str | None:
        if v is not None and v not in EVENT_TYPES:
            raise ValueError(f"unknown event type; one of {', '.join(sorted(EVENT_TYPES))}")
        return v


class TelemetryQuery(_Query):
    """An aggregate over time buckets, for charts."""

    measurement: str = Field(max_length=48, description="Body type, e.g. gas_reading.")
    field: str = Field(max_length=48, description="A numeric field of that body, or seq to count points.")
    agg: tuple[Literal["count", "mean", "min", "max", "sum", "last"], ...] = Field(
        default=("mean",), min_length=1, max_length=6, description="Aggregates per bucket.")
    interval: Literal["1m", "5m", "15m", "1h", "6h", "1d"] = Field(default="1h", description="Bucket width.")
    by_device: bool = Field(default=False, description="One series per device.")

    @model_validator(mode="after")
    def _known(self) -> TelemetryQuery:
        fields = NUMERIC_FIELDS.get(self.measurement)
        if fields is None:
            raise ValueError(f"unknown measurement; one of {', '.join(sorted(NUMERIC_FIELDS))}")
        if self.field not in fields:
            raise ValueError(f"{self.measurement} has no numeric field {self.field[:48]!r}; "
                             f"one of {', '.join(sorted(fields))}")
        return self


class EventOut(BaseModel):
    """One stored event."""

    time: float = Field(description="Epoch seconds (the device's timestamp, microsecond precision).")
    type: str
    site: str | None = None
    grid: str | None = None
    building: str | None = None
    layer: str | None = None
    device_kind: str | None = None
    device_id: str | None = None
    fields: dict[str, float | int | str | bool]


class EventPage(BaseModel):
    """A page of events, newest first."""

    events: list[EventOut]
    next_cursor: str | None = Field(description="Pass as cursor for the next (older) page; null at the end.")


class Bucket(BaseModel):
    """One time bucket of an aggregate."""

    time: float = Field(description="Start of the bucket, epoch seconds.")
    values: dict[str, float | int | None]


class Series(BaseModel):
    """One aggregated series (per device when by_device)."""

    device_id: str | None = None
    points: list[Bucket]


class Chart(BaseModel):
    """An aggregate for a chart."""

    measurement: str
    field: str
    interval: str
    start: float
    end: float
    series: list[Series]


# Named charts of issue 8: door traffic per hour, hydrant pressure over a day, gas LEL.
CHARTS: dict[str, dict[str, Any]] = {
    "door_traffic": {"measurement": "access_granted", "field": "seq", "agg": ("count",), "interval": "1h"},
    "hydrant_pressure": {"measurement": "hydrant_pressure", "field": "pressure_mpa", "agg": ("min", "mean", "max"),
                         "interval": "15m", "by_device": True},
    "gas_lel": {"measurement": "gas_reading", "field": "lel_pct", "agg": ("max", "mean"), "interval": "15m",
                "by_device": True},
}


def _from_ns(t: int) -> datetime:
    return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=t // 1000)


def encode_cursor(t_ns: int, skip: int) -> str:
    """Opaque cursor: the time of the last event returned and how many events at that time were returned."""
    return base64.urlsafe_b64encode(f"{t_ns}:{skip}".encode()).decode()


def decode_cursor(cursor: str) -> tuple[int, int]:
    """The (t_ns, skip) of a cursor, or QueryError."""
    try:
        if not _CURSOR.match(cursor):
            raise ValueError
        t, _, skip = base64.urlsafe_b64decode(cursor.encode()).decode().partition(":")
        t_ns, n = int(t), int(skip)
        if not (0 <= t_ns < 2**63 and 0 <= n <= 100_000):
            raise ValueError
        return t_ns, n
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise QueryError("cursor is not one this API returned") from None


class EventService:
    """Reads events and aggregates for one site."""

    def __init__(self, reader: InfluxReader, community: Community) -> None:
        self.reader = reader
        self.community = community
        self.devices = community.device_index()

    def conditions(self, q: _Query, who: Principal, start: datetime, end: datetime,
                   layer: Layer | None = None) -> list[str]:
        """WHERE conditions for place, device and time plus the jurisdiction; NotFound outside the caller's reach."""
        check_place(self.community, who, q.grid, q.building)
        if q.device_id is not None:
            d = self.devices.get(q.device_id)
            if d is None or not who.covers(d.grid, d.building, d.effective_layer.value) \
                    or (q.grid is not None and d.grid != q.grid) \
                    or (q.building is not None and d.building != q.building):
                raise NotFound(f"no device {q.device_id!r}")
        if layer is not None and who.layers is not None and layer.value not in who.layers:
            raise NotFound(f"no {layer.value} layer here")
        conds = [f"time >= {influxql.ns(start)}", f"time < {influxql.ns(end)}",
                 influxql.eq("site", self.community.site.id)]
        for tag, value in (("grid", q.grid), ("building", q.building), ("device_id", q.device_id),
                           ("layer", layer.value if layer else None)):
            if value is not None:
                conds.append(influxql.eq(tag, value))
        return conds + influxql.scope_clauses(who)

    def history(self, q: EventQuery, who: Principal, now: datetime) -> EventPage:
        """Events newest first, one page."""
        start, end = q.window(now)
        skip = 0
        if q.cursor is not None:
            t_ns, skip = decode_cursor(q.cursor)
            end = min(end, _from_ns(t_ns) + timedelta(microseconds=1))
            if end <= start:
                return EventPage(events=[], next_cursor=None)
        conds = self.conditions(q, who, start, end, q.layer)
        if not visible(who):
            return EventPage(events=[], next_cursor=None)
        measurements = [q.type] if q.type else sorted(EVENT_TYPES)
        rows = self._rows(self.reader.query(influxql.select_events(measurements, conds, q.limit + skip + 1)))
        # Every measurement returns its own newest: merge them in one deterministic order (the cursor relies on it).
        rows.sort(key=lambda r: (-r[0], r[1], r[2]))
        if q.cursor is not None:
            t_ns = decode_cursor(q.cursor)[0]
            at_cursor = [r for r in rows if r[0] == t_ns]
            rows = at_cursor[skip:] + [r for r in rows if r[0] < t_ns]
        page = rows[: q.limit]
        more = len(rows) > q.limit
        cursor = None
        if more and page:
            last = page[-1][0]
            same = sum(1 for r in page if r[0] == last)
            prior = skip if q.cursor is not None and last == decode_cursor(q.cursor)[0] else 0
            cursor = encode_cursor(last, same + prior)
        return EventPage(events=[self._event(r) for r in page], next_cursor=cursor)

    @staticmethod
    def _rows(series: list[dict[str, Any]]) -> list[tuple[int, str, tuple[str, int], list[str], list[Any]]]:
        # Kept raw until the page is cut: only the events returned become models.
        out = []
        for s in series:
            cols = s["columns"]
            ti = cols.index("time")
            di = cols.index("device_id") if "device_id" in cols else None
            si = cols.index("seq") if "seq" in cols else None
            for values in s.get("values", []):
                key = (values[di] or "" if di is not None else "", values[si] or 0 if si is not None else 0)
                out.append((int(values[ti]), str(s["name"]), key, cols, values))
        return out

    @staticmethod
    def _event(row: tuple[int, str, tuple[str, int], list[str], list[Any]]) -> EventOut:
        t, name, _, cols, values = row
        rec = dict(zip(cols, values, strict=False))
        rec.pop("time")
        tags = {k: rec.pop(k, None) for k in TAGS}
        fields = {k: v for k, v in rec.items() if v is not None}
        return EventOut(time=t / 1e9, type=name, fields=fields, **tags)

    def aggregate(self, q: TelemetryQuery, who: Principal, now: datetime) -> Chart:
        """Aggregates per time bucket (and per device when asked)."""
        start, end = q.window(now)
        if (end - start).total_seconds() / influxql.INTERVALS[q.interval] > MAX_BUCKETS:
            raise QueryError(f"more than {MAX_BUCKETS} buckets: widen the interval or shorten the range")
        conds = self.conditions(q, who, start, end)
        chart = Chart(measurement=q.measurement, field=q.field, interval=q.interval, start=start.timestamp(),
                      end=end.timestamp(),
                      series=[])
        if not visible(who):
            return chart
        fill = "0" if q.agg == ("count",) else "none"
        sql = influxql.select_aggregate(q.measurement, q.field, q.agg, conds, q.interval,
                                        ("device_id",) if q.by_device else (), fill)
        for s in self.reader.query(sql):
            cols = s["columns"]
            points = []
            for values in s.get("values", []):
                rec = dict(zip(cols, values, strict=False))
                t = int(rec.pop("time"))
                points.append(Bucket(time=t / 1e9, values=rec))
            chart.series.append(Series(device_id=(s.get("tags") or {}).get("device_id"), points=points))
        return chart
