"""/healthz (the process is up), /readyz (database, InfluxDB, broker) and Prometheus /metrics."""

from __future__ import annotations

import httpx
from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text

from api.deps import ServicesDep
from api.schemas import ReadyPublic

router = APIRouter(tags=["health"])


@router.get("/healthz", summary="The process is up")
def healthz() -> dict[str, str]:
    """Always 200 while the process serves requests."""
    return {"status": "ok"}


@router.get("/readyz", response_model=ReadyPublic, responses={503: {"model": ReadyPublic}},
            summary="Database, InfluxDB and broker reachable")
def readyz(s: ServicesDep) -> JSONResponse:
    """200 when every dependency answers, else 503 with what failed."""
    checks: dict[str, str] = {}
    try:
        with s.store.engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        checks["database"] = "ok"
    except Exception as e:
        checks["database"] = f"down: {type(e).__name__}"
    try:
        r = httpx.get(f"{s.cfg.influx.url}/ping", timeout=2.0)
        checks["influxdb"] = "ok" if r.status_code < 300 else f"down: HTTP {r.status_code}"
    except httpx.HTTPError as e:
        checks["influxdb"] = f"down: {type(e).__name__}"
    if s.live is not None:
        checks["broker"] = "ok" if s.live.connected else "down: not connected"
    ready = all(v == "ok" for v in checks.values())
    return JSONResponse(ReadyPublic(ready=ready, checks=checks).model_dump(), status_code=200 if ready else 503)


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
def metrics(s: ServicesDep) -> Response:
    """Requests and latency by route, live SSE clients, audit rows written."""
    if s.live is not None:
        s.metrics.sse_clients.set(s.live.clients)
    return Response(generate_latest(s.metrics.registry), media_type=CONTENT_TYPE_LATEST)
