"""Snapshots: the original JPEG to police, faces blurred for every other role; every read is audited."""

from __future__ import annotations

from typing import Annotated

import anyio
from fastapi import APIRouter, Path
from fastapi.responses import Response

from api.data.blur import BlurError
from api.deps import AuditDep, CurrentUser
from api.routes._data import DataDep
from api.schemas import errors
from api.services.errors import Invalid

router = APIRouter(prefix="/api/v1/snapshots", tags=["evidence"])
ERR = errors(400, 401, 404, 422)
_ID = r"^[A-Za-z0-9][A-Za-z0-9_.:-]*$"
DeviceId = Annotated[str, Path(min_length=1, max_length=64, pattern=_ID)]
SnapId = Annotated[str, Path(min_length=1, max_length=64, pattern=_ID)]


@router.get("/{device_id}/{snapshot_id}", response_class=Response, summary="One camera snapshot",
            responses={200: {"content": {"image/jpeg": {}}, "description": "The JPEG; header X-Commhub-Blurred "
                                                                             "says whether faces were blurred"},
                       **ERR})
async def get_snapshot(device_id: DeviceId, snapshot_id: SnapId, who: CurrentUser, data: DataDep,
                       audit: AuditDep) -> Response:
    """Outside the caller's cells (or absent) it is a 404; only police_liaison gets it unblurred."""
    with audit.around(who, "snapshots.read", f"snapshot:{device_id}/{snapshot_id}") as out:
        try:
            # Face and person detection take tens of milliseconds: off the event loop.
            jpeg, blurred = await anyio.to_thread.run_sync(data.snapshots.read, device_id, snapshot_id, who)
        except BlurError as e:
            raise Invalid(f"the stored snapshot cannot be blurred, so it is not sent: {e}") from None
        out.result = "ok: blurred" if blurred else "ok: original"
    return Response(jpeg, media_type="image/jpeg",
                    headers={"X-Commhub-Blurred": "true" if blurred else "false", "Cache-Control": "no-store"})
