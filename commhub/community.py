"""The community model: site -> grid cells -> buildings -> units, and the devices placed in them."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator

from commhub.wire import KIND_LAYER, DeviceKind, Ident, Layer


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


class Site(_Model):
    """The community as a whole."""

    id: Ident
    name: str = ""
    timezone: str = Field(default="Asia/Shanghai", description="IANA zone for schedules and night hours.")
    jurisdiction: Ident = Field(default="default", description="Police jurisdiction the site belongs to.")


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

    @property
    def effective_layer(self) -> Layer:
        """The configured layer, else the kind's."""
        return self.layer or KIND_LAYER[self.kind]


class Community(_Model):
    """The validated community tree."""

    site: Site
    grids: tuple[Grid, ...] = Field(min_length=1)
    devices: tuple[Device, ...] = ()

    @model_validator(mode="after")
    def _check_places(self) -> Community:
        grid_ids = [g.id for g in self.grids]
        if len(set(grid_ids)) != len(grid_ids):
            raise ValueError("grid ids must be unique")
        buildings = {b.id: (g.id, b) for g in self.grids for b in g.buildings}
        if len(buildings) != sum(len(g.buildings) for g in self.grids):
            raise ValueError("building ids must be unique across the site")
        seen: set[str] = set()
        for i, d in enumerate(self.devices):
            where = f"devices[{i}] ({d.id})"
            if d.id in seen:
                raise ValueError(f"{where}: duplicate device id")
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
        return self

    def device_index(self) -> dict[str, Device]:
        """Devices by id."""
        return {d.id: d for d in self.devices}

