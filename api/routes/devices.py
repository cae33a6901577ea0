"""The device registry with live health (online/offline, last seen, agent, open alerts); reads are audited."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query

from api.data.devices import DevicePublic
from api.deps import AuditDep, CurrentUser, ServicesDep
from api.routes._data import DataDep
from api.schemas import errors
from api.services.errors import NotFound
from commhub.wire import Ident

router = APIRouter(prefix="/api/v1/devices", tags=["devices"])
ERR = errors(401, 404, 422, 503)
_ID = r"^[A-Za-z0-9][A-Za-z0-9_.:-]*$"


@router.get("", response_model=list[DevicePublic], responses=ERR, summary="Devices and their health")
def list_devices(who: CurrentUser, data: DataDep, s: ServicesDep, audit: AuditDep,
                 grid: Annotated[Ident | None, Query()] = None, building: Annotated[Ident | None, Query()] = None,
                 kind: Annotated[str | None, Query(max_length=32, pattern=r"^[a-z_]+$")] = None,
                 layer: Annotated[Literal["people", "technical", "facility"] | None, Query()] = None,
                 status: Annotated[Literal["online", "offline", "unknown"] | None, Query()] = None,
                 ) -> list[DevicePublic]:
    """Devices in the caller's jurisdiction, with filters."""
    with audit.around(who, "devices.list", "devices") as out:
        rows = [d for d in data.devices.devices(who, datetime.fromtimestamp(s.clock(), UTC))
                if (grid is None or d.grid == grid) and (building is None or d.building == building)
                and (kind is None or d.kind == kind) and (layer is None or d.layer == layer)
                and (status is None or d.status == status)]
        out.result = f"ok: {len(rows)} devices"
    return rows


@router.get("/{device_id}", response_model=DevicePublic, responses=ERR, summary="One device and its health")
def get_device(device_id: Annotated[str, Path(min_length=1, max_length=64, pattern=_ID)], who: CurrentUser,
               data: DataDep, s: ServicesDep, audit: AuditDep) -> DevicePublic:
    """404 when absent or outside the caller's jurisdiction."""
    with audit.around(who, "devices.show", f"device:{device_id}"):
        d = next((d for d in data.devices.devices(who, datetime.fromtimestamp(s.clock(), UTC))
                  if d.id == device_id), None)
        if d is None:
            raise NotFound(f"no device {device_id!r}")
    return d
