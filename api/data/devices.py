"""The device registry with live health, and coverage by grid cell (what is covered, by what, what is missing).

Health comes from what the hub stored in InfluxDB: every `state` message (the retained online/offline and
the agent's will), every `birth` (serving agent, session, interval) and the last point of any kind (last
seen). As in Sparkplug, an agent's will marks offline the devices whose current birth names that agent and
session. Open alerts come from the SQL store. Battery is reported by no body of wire v1, so it stays null.
"""

from __future__ import annotations

import logging
from collections import Counter
from datetime import datetime, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo

from pydantic import BaseModel, Field
from sqlalchemy import Engine, func, select

from api.data import influxql
from api.data.influx import InfluxReader
from api.services.scope import Principal
from commhub.community import Community, Device
from commhub.wire import DeviceKind, Layer
from hub.alerts.store import LIVE, A

log = logging.getLogger(__name__)

LAST_SEEN_WINDOW = timedelta(days=30)
OVERDUE_INTERVALS = 3  # as the device_offline rule: no message for 3 reporting intervals
Status = Literal["online", "offline", "unknown"]
LAYERS = (Layer.PEOPLE.value, Layer.TECHNICAL.value, Layer.FACILITY.value)


class DevicePublic(BaseModel):
    """One device of the registry and its health."""

    id: str
    kind: str
    layer: str
    grid: str
    building: str | None
    unit: str | None
    interval_s: float
    status: Status = Field(description="From the last state message, or the serving agent's will.")
    overdue: bool = Field(description="No message for 3 reporting intervals (the device_offline rule).")
    last_seen: float | None = Field(description="Epoch seconds of the last message stored.")
    agent: str | None = Field(description="The edge agent of the current birth.")
    session: int | None = None
    battery_pct: float | None = Field(default=None, description="Not reported by any device kind in wire v1.")
    open_alerts: int


class LayerCoverage(BaseModel):
    """One layer of one cell."""

    layer: str
    covered: bool
    devices: dict[str, int] = Field(description="Device kind -> count.")
    total: int
    online: int
    open_alerts: int


class CellCoverage(BaseModel):
    """The weekly coverage report of one grid cell."""

    grid: str
    name: str
    buildings: list[str]
    layers: list[LayerCoverage]
    patrol_checkpoints: list[str]
    grid_workers_on_duty: list[str]
    online_pct: float | None
    gaps: list[str]


class Health:
    """What InfluxDB knows about each device's liveness."""

    def __init__(self) -> None:
        self.state: dict[str, tuple[str, int]] = {}
        self.birth: dict[str, tuple[str, int]] = {}
        self.last_seen: dict[str, float] = {}


def _per_device(series: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for s in series:
        dev = (s.get("tags") or {}).get("device_id")
        if dev and s.get("values"):
            rec = dict(zip(s["columns"], s["values"][0], strict=False))
            prev = out.get(dev)
            if prev is None or rec["time"] > prev["time"]:
                out[dev] = rec
    return out


class DeviceService:
    """Registry, health and coverage for one site."""

    def __init__(self, reader: InfluxReader, community: Community, engine: Engine) -> None:
        self.reader = reader
        self.community = community
        self.engine = engine

    def _health(self, now: datetime) -> Health:
        h = Health()
        site = influxql.eq("site", self.community.site.id)
        since = f"time >= {influxql.ns(now - LAST_SEEN_WINDOW)}"
        group = " GROUP BY " + influxql.ident("device_id")
        for dev, rec in _per_device(self.reader.query(
                f"SELECT last({influxql.ident('status')}) AS {influxql.ident('status')}, "
                f"last({influxql.ident('session')}) AS {influxql.ident('session')}, "
                f"last({influxql.ident('device_kind')}) AS {influxql.ident('kind')} "
                f"FROM {influxql.ident('state')} WHERE {site}{group}")).items():
            h.state[dev] = (str(rec["status"]), int(rec["session"] or 0))
        for dev, rec in _per_device(self.reader.query(
                f"SELECT last({influxql.ident('agent')}) AS {influxql.ident('agent')}, "
                f"last({influxql.ident('session')}) AS {influxql.ident('session')} "
                f"FROM {influxql.ident('birth')} WHERE {site}{group}")).items():
            h.birth[dev] = (str(rec["agent"]), int(rec["session"] or 0))
        # Every point carries seq, so the last seq of any measurement is the last time a device was heard.
        for dev, rec in _per_device(self.reader.query(
                f"SELECT last({influxql.ident('seq')}) FROM /.*/ WHERE {site} AND {since}{group}")).items():
            h.last_seen[dev] = rec["time"] / 1e9
        return h

    def _open_alerts(self, who: Principal) -> tuple[Counter[str], Counter[tuple[str, str]]]:
        by_device: Counter[str] = Counter()
        by_cell: Counter[tuple[str, str]] = Counter()
        stmt = (select(A.c.device_id, A.c.grid, A.c.layer, func.count()).where(A.c.state.in_(LIVE), *who.where(A))
                .group_by(A.c.device_id, A.c.grid, A.c.layer))
        with self.engine.connect() as conn:
            for device_id, grid, layer, n in conn.execute(stmt):
                if device_id:
                    by_device[device_id] += int(n)
                by_cell[(grid, layer)] += int(n)
        return by_device, by_cell

    def _visible(self, who: Principal) -> list[Device]:
        return [d for d in self.community.devices if d.kind is not DeviceKind.AGENT
                and who.covers(d.grid, d.building, d.effective_layer.value)]

    def devices(self, who: Principal, now: datetime) -> list[DevicePublic]:
        """Every device in the caller's reach with its health."""
        visible = self._visible(who)
        if not visible:
            return []
        h = self._health(now)
        alerts, _ = self._open_alerts(who)
        return [self._public(d, h, alerts, now) for d in visible]

    def _public(self, d: Device, h: Health, alerts: Counter[str], now: datetime) -> DevicePublic:
        status: Status = "unknown"
        agent, session = h.birth.get(d.id, (None, None))
        if d.id in h.state:
            st, st_session = h.state[d.id]
            status = "online" if st == "online" else "offline"
            session = session if session is not None else st_session
        if status == "online" and agent is not None and self._agent_offline(h, agent, session):
            status = "offline"
        seen = h.last_seen.get(d.id)
        overdue = seen is None or now.timestamp() - seen > OVERDUE_INTERVALS * d.interval_s
        return DevicePublic(id=d.id, kind=d.kind.value, layer=d.effective_layer.value, grid=d.grid,
                            building=d.building, unit=d.unit, interval_s=d.interval_s, status=status,
                            overdue=overdue, last_seen=seen, agent=agent, session=session,
                            open_alerts=alerts.get(d.id, 0))

    @staticmethod
    def _agent_offline(h: Health, agent: str, session: int | None) -> bool:
        # The agent is a pseudo-device of kind `agent`; its will carries the session it belongs to.
        st = h.state.get(agent)
        return st is not None and st[0] == "offline" and (session is None or st[1] >= session)

    def coverage(self, who: Principal, now: datetime) -> list[CellCoverage]:
        """Per grid cell in the caller's reach: layers covered and by what, online share, alerts and gaps."""
        devices = {d.id: d for d in self.devices(who, now)}
        _, alerts = self._open_alerts(who)
        local = now.astimezone(ZoneInfo(self.community.site.timezone))
        out = []
        for g in self.community.grids:
            if who.grids is not None and g.id not in who.grids:
                continue
            buildings = [b.id for b in g.buildings if who.buildings is None or b.id in who.buildings]
            mine = [d for d in devices.values() if d.grid == g.id]
            if who.buildings is not None and not buildings:
                continue
            layers = []
            for layer in LAYERS:
                if who.layers is not None and layer not in who.layers:
                    continue
                ds = [d for d in mine if d.layer == layer]
                layers.append(LayerCoverage(layer=layer, covered=bool(ds), devices=dict(Counter(d.kind for d in ds)),
                                            total=len(ds), online=sum(d.status == "online" for d in ds),
                                            open_alerts=alerts.get((g.id, layer), 0)))
            patrols = sorted(d.id for d in mine if d.kind == DeviceKind.PATROL.value)
            on_duty = sorted(s.id for s in self.community.staff
                             if s.role == "grid_worker" and g.id in s.grids and s.on_duty(local))
            gaps = [f"{lc.layer} layer: no devices" for lc in layers if not lc.covered]
            smoke = {d.building for d in mine if d.kind == DeviceKind.SMOKE.value}
            gaps += [f"building {b}: no smoke detection" for b in buildings if b not in smoke]
            if who.layers is None or "people" in who.layers:
                if not patrols:
                    gaps.append("no patrol route (no checkpoint in this cell)")
                if not on_duty:
                    gaps.append("no grid worker on duty now")
            offline = sorted(d.id for d in mine if d.status == "offline")
            if offline:
                gaps.append(f"{len(offline)} devices offline: {', '.join(offline[:10])}"
                            + (" ..." if len(offline) > 10 else ""))
            total = sum(lc.total for lc in layers)
            out.append(CellCoverage(grid=g.id, name=g.name, buildings=buildings, layers=layers,
                                    patrol_checkpoints=patrols, grid_workers_on_duty=on_duty,
                                    online_pct=round(100.0 * sum(lc.online for lc in layers) / total, 1)
                                    if total else None, gaps=gaps))
        return out
