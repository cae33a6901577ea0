"""Evidence export for police: one alert's timeline, events, access log and original snapshots, signed."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

import anyio
from fastapi import APIRouter, Path, Request
from fastapi.responses import Response
from pydantic import BaseModel

from api.data.evidence import key_id, public_pem
from api.data.export import ExportRequest
from api.deps import AuditDep, CurrentUser, ServicesDep, client_address
from api.routes._data import DataDep
from api.schemas import errors
from api.services.errors import Forbidden

router = APIRouter(prefix="/api/v1/evidence", tags=["evidence"])
ERR = errors(401, 403, 404, 422, 503)
AlertId = Annotated[int, Path(ge=1, le=2**62)]


class EvidenceKeyPublic(BaseModel):
    """The public half of the signing key, to verify packages elsewhere."""

    key_id: str
    public_key_pem: str


@router.post("/{alert_id}/export", response_class=Response, summary="Export an incident's evidence (police)",
             responses={200: {"content": {"application/zip": {}}, "description": "The signed evidence ZIP"}, **ERR})
async def export(alert_id: AlertId, body: ExportRequest, request: Request, who: CurrentUser, data: DataDep,
                 s: ServicesDep, audit: AuditDep) -> Response:
    """404 outside the caller's jurisdiction (before any role check), 403 for every role but police_liaison."""
    now = datetime.fromtimestamp(s.clock(), UTC)
    custody = {"exported_by": who.username, "role": who.role, "auth": who.auth, "from_address":
               client_address(request), "user_agent": request.headers.get("user-agent", "")[:200]}
    with audit.around(who, "evidence.export", f"alert:{alert_id}") as out:
        data.evidence.alert(alert_id, who)  # 404 first: a 403 would confirm another cell's alert exists
        if not who.sees_unblurred:
            raise Forbidden("only police_liaison exports evidence")
        blob = await anyio.to_thread.run_sync(lambda: data.evidence.export(alert_id, who, body, custody, now))
        out.result = f"ok: {len(blob)} bytes, key {data.evidence.key_id}"
    name = f"evidence-alert-{alert_id}-{now:%Y%m%dT%H%M%SZ}.zip"
    return Response(blob, media_type="application/zip",
                    headers={"Content-Disposition": f'attachment; filename="{name}"', "Cache-Control": "no-store"})


@router.get("/key", response_model=EvidenceKeyPublic, responses=errors(401), summary="The signing public key")
def public_key(who: CurrentUser, data: DataDep, audit: AuditDep) -> EvidenceKeyPublic:
    """Key id and PEM of the Ed25519 key that signs exports."""
    pub = data.key.public_key()
    audit.record(who, "evidence.key", "evidence-key", "ok")
    return EvidenceKeyPublic(key_id=key_id(pub), public_key_pem=public_pem(pub).decode())
