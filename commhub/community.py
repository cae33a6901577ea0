"""The community model: site -> grid cells -> buildings -> units, and the devices placed in them."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from commhub.wire import KIND_LAYER, DeviceKind, Ident, Layer, PersonRef


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Building(_Model):
    """A building in one grid cell."""

    id: Ident
    name: str = Field(default="", description="Display name, e.g. '3号楼'.")
    floors: int = Field(default=6, ge=1, le=200)
    units: tuple[Ident, ...] = Field(default=(), description="Unit (单元) ids inside the building.")


class Grid(_Model):
    """A grid cell (网格), the unit of responsibility of one grid worker."""

    id: Ident
    name: str = ""
    buildings: tuple[Building, ...] = ()


# The grid of a site-level device: it is in no cell, where the rules also place a device they do not know.
SITE_LEVEL_GRID = "unassigned"


class SiteDevice(_Model):
    """A device of the site as a whole, in no grid cell or building (e.g. the API's report desk `api-reports`)."""

    id: Ident
    kind: DeviceKind
    name: str = Field(default="", max_length=64, description="Display name, e.g. '居民报事台'.")
    layer: Layer | None = Field(default=None, description="Defaults to the layer of the device kind.")
    interval_s: float = Field(default=60.0, gt=0, description="Expected reporting interval.")

    @field_validator("kind")
    @classmethod
    def _not_agent(cls, v: DeviceKind) -> DeviceKind:
        if v is DeviceKind.AGENT:
            raise ValueError("an edge agent is not registered: its own topics are admitted by the broker ACL")
        return v


class Site(_Model):
    """The community as a whole."""

    id: Ident
    name: str = ""
    timezone: str = Field(default="Asia/Shanghai", description="IANA zone for schedules and night hours.")
    jurisdiction: Ident = Field(default="default", description="Police jurisdiction the site belongs to.")
    language: Literal["zh", "en"] = Field(default="en", description="The console's default language here.")
    devices: tuple[SiteDevice, ...] = Field(default=(), description=(
        "Devices of the whole site, in no grid cell (the API's report desk `api-reports`). They are registered "
        "like any device, but nothing that walks the grid cells (simulator, coverage, liveness) sees them."))


class Device(_Model):
    """One device and where it is."""

    id: Ident
    kind: DeviceKind
    grid: Ident
    building: Ident | None = None
    unit: Ident | None = None
    room: str | None = Field(default=None, max_length=16)
    layer: Layer | None = Field(default=None, description="Defaults to the layer of the device kind.")
    interval_s: float = Field(default=60.0, gt=0, description="Expected reporting interval (liveness).")
    covers: tuple[Ident, ...] | None = Field(default=None, description=(
        "Cameras: the doors/gates (device ids) this camera sees. Default: the access devices of its own "
        "building and unit (or of its grid, for a camera outside any building)."))

    @property
    def effective_layer(self) -> Layer:
        """The configured layer, else the kind's."""
        return self.layer or KIND_LAYER[self.kind]


StaffRole = Literal["grid_worker", "property", "police_liaison", "control_room", "security_supervisor",
                    "maintenance", "fire_maintenance", "gas_company", "municipal", "street_office"]
Day = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
_DAYS: tuple[Day, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_HHMM = re.compile(r"^([01][0-9]|2[0-3]):[0-5][0-9]$|^24:00$")


class Shift(_Model):
    """A weekly on-duty window in the site's timezone; `end` before `start` runs past midnight."""

    days: tuple[Day, ...] = _DAYS
    start: str = Field(default="00:00", description="HH:MM, local time.")
    end: str = Field(default="24:00", description="HH:MM, local time; 24:00 is the end of the day.")

    @field_validator("start", "end")
    @classmethod
    def _hhmm(cls, v: str) -> str:
        if not _HHMM.match(v):
            raise ValueError(f"expected HH:MM (00:00..24:00), got {v!r}")
        return v

    def covers(self, local: datetime) -> bool:
        """Whether this shift is on at a local (site timezone) time."""
        def minutes(hhmm: str) -> int:
            h, m = hhmm.split(":")
            return int(h) * 60 + int(m)
        start, end = minutes(self.start), minutes(self.end)
        now = local.hour * 60 + local.minute
        day = _DAYS[local.weekday()]
        prev = _DAYS[(local.weekday() - 1) % 7]
        if start < end:
            return day in self.days and start <= now < end
        # An overnight shift: its evening part belongs to the listed day, its morning part to the day after.
        return (day in self.days and now >= start) or (prev in self.days and now < end)


class Staff(_Model):
    """A person or desk that alerts are routed to; contact details stay outside the hub."""

    id: Ident
    role: StaffRole
    name: str = Field(default="", max_length=64, description="Display name of the desk or post, e.g. '物业值班室'.")
    grids: tuple[Ident, ...] = Field(default=(), description="Grid cells covered (empty = the whole site).")
    jurisdiction: Ident | None = Field(default=None, description="Police liaison: the jurisdiction served.")
    shifts: tuple[Shift, ...] = Field(default=(Shift(),), description="On-duty windows (default: always).")

    def on_duty(self, local: datetime) -> bool:
        """Whether any shift covers this local time."""
        return any(s.covers(local) for s in self.shifts)

    def covers_grid(self, grid: str) -> bool:
        """Whether this person serves a grid cell."""
        return not self.grids or grid in self.grids


class Resident(_Model):
    """A resident who opted in to welfare checks, known only by an opaque id."""

    ref: PersonRef
    grid: Ident
    building: Ident
    unit: Ident | None = None
    devices: tuple[Ident, ...] = Field(default=(), description="Door contact / water meter watched for them.")
    emergency_contact: PersonRef | None = Field(default=None, description="Opaque ref of the family contact.")


class Community(_Model):
    """The validated community tree."""

    site: Site
    grids: tuple[Grid, ...] = Field(min_length=1)
    devices: tuple[Device, ...] = ()
    staff: tuple[Staff, ...] = ()
    residents: tuple[Resident, ...] = ()

    @model_validator(mode="after")
    def _check_places(self) -> Community:
        grid_ids = [g.id for g in self.grids]
        if len(set(grid_ids)) != len(grid_ids):
            raise ValueError("grid ids must be unique")
        if SITE_LEVEL_GRID in grid_ids:
            raise ValueError(f"grid id {SITE_LEVEL_GRID!r} is reserved for the site-level devices (site.devices)")
        buildings = {b.id: (g.id, b) for g in self.grids for b in g.buildings}
        if len(buildings) != sum(len(g.buildings) for g in self.grids):
            raise ValueError("building ids must be unique across the site")
        seen = {d.id for d in self.site.devices}
        if len(seen) != len(self.site.devices):
            raise ValueError("site.devices: duplicate device id")
        for i, d in enumerate(self.devices):
            where = f"devices[{i}] ({d.id})"
            if d.id in seen:
                raise ValueError(f"{where}: duplicate device id (also in devices or site.devices)")
            seen.add(d.id)
            if d.grid not in grid_ids:
                raise ValueError(f"{where}: unknown grid {d.grid!r}")
            if d.building is not None:
                if d.building not in buildings:
                    raise ValueError(f"{where}: unknown building {d.building!r}")
                grid_of, building = buildings[d.building]
                if grid_of != d.grid:
                    raise ValueError(f"{where}: building {d.building!r} is in grid {grid_of!r}, not {d.grid!r}")
                if d.unit is not None and d.unit not in building.units:
                    raise ValueError(f"{where}: unknown unit {d.unit!r} in building {d.building!r}")
            elif d.unit is not None:
                raise ValueError(f"{where}: a unit needs a building")
        self._check_people(grid_ids, buildings)
        return self

    def _check_people(self, grid_ids: list[str], buildings: dict[str, tuple[str, Building]]) -> None:
        staff_ids: set[str] = set()
        for i, s in enumerate(self.staff):
            where = f"staff[{i}] ({s.id})"
            if s.id in staff_ids:
                raise ValueError(f"{where}: duplicate staff id")
            staff_ids.add(s.id)
            for g in s.grids:
                if g not in grid_ids:
                    raise ValueError(f"{where}: unknown grid {g!r}")
            if s.role == "grid_worker" and not s.grids:
                raise ValueError(f"{where}: a grid worker needs at least one grid")
            if s.role == "police_liaison" and s.jurisdiction is None:
                raise ValueError(f"{where}: a police liaison needs a jurisdiction")
        devices = self.device_index()
        refs: set[str] = set()
        for i, r in enumerate(self.residents):
            where = f"residents[{i}]"
            if r.ref in refs:
                raise ValueError(f"{where}: duplicate resident ref")
            refs.add(r.ref)
            if r.building not in buildings or buildings[r.building][0] != r.grid:
                raise ValueError(f"{where}: building {r.building!r} is not in grid {r.grid!r}")
            if r.unit is not None and r.unit not in buildings[r.building][1].units:
                raise ValueError(f"{where}: unknown unit {r.unit!r} in building {r.building!r}")
            for dev in r.devices:
                if dev not in devices:
                    raise ValueError(f"{where}: unknown device {dev!r}")
                if devices[dev].kind not in (DeviceKind.DOOR_CONTACT, DeviceKind.WATER_METER):
                    raise ValueError(f"{where}: device {dev!r} is a {devices[dev].kind}, "
                                     "not a door_contact or water_meter")

    def device_index(self) -> dict[str, Device]:
        """Every registered device by id: those in the grid cells, and the site's own in SITE_LEVEL_GRID."""
        index = {d.id: Device(id=d.id, kind=d.kind, grid=SITE_LEVEL_GRID, layer=d.layer, interval_s=d.interval_s)
                 for d in self.site.devices}
        index.update((d.id, d) for d in self.devices)
        return index

