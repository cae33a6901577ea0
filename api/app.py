"""The FastAPI app: clients opened in lifespan, routers from api.routes.ROUTERS, JSON errors, audit and metrics."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import anyio
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError, OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.routes import ROUTERS
from api.services.errors import RateLimited, ServiceError, Unauthorized
from api.state import Services
from commhub.config import Config

log = logging.getLogger(__name__)
API_PREFIX = "/api/"
VERSION = "1.0.0"


def create_app(cfg: Config, clock: Callable[[], float] = time.time, live: bool = True) -> FastAPI:
    """The operator API for one configuration; nothing is opened until the app starts (lifespan)."""
    services = Services(cfg, clock, live=live)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        await anyio.to_thread.run_sync(services.start)
        try:
            yield
        finally:
            await anyio.to_thread.run_sync(services.stop)

    app = FastAPI(title="commhub operator API", version=VERSION, lifespan=lifespan,
                  description="Alerts, live alerts, accounts and the audit log of a commhub site. "
                              "Log in at /api/v1/auth/token (OAuth2 password flow) or send an X-API-Key.")
    app.state.services = services
    _errors(app)
    for router in ROUTERS:
        app.include_router(router)
    app.add_middleware(AuditAndMetrics, services=services)
    return app


def _errors(app: FastAPI) -> None:
    @app.exception_handler(ServiceError)
    async def service_error(_r: Request, e: ServiceError) -> JSONResponse:
        headers: dict[str, str] = {}
        if isinstance(e, RateLimited):
            headers["Retry-After"] = str(e.retry_after)
        if isinstance(e, Unauthorized):
            headers["WWW-Authenticate"] = "Bearer"
        return JSONResponse({"detail": str(e)}, status_code=e.status, headers=headers)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_r: Request, e: StarletteHTTPException) -> JSONResponse:
        detail = e.detail if e.status_code != 404 or e.detail != "Not Found" else "no such route"
        return JSONResponse({"detail": detail}, status_code=e.status_code, headers=e.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(_r: Request, e: RequestValidationError) -> JSONResponse:
        errors = [{"loc": list(x.get("loc", ())), "msg": str(x.get("msg", "")), "type": str(x.get("type", ""))}
                  for x in e.errors()]
        return JSONResponse({"detail": errors}, status_code=422)

    @app.exception_handler(OperationalError)
    @app.exception_handler(DBAPIError)
    async def db_down(_r: Request, e: Exception) -> JSONResponse:
        log.warning("database error: %s", type(e).__name__)
        return JSONResponse({"detail": "the database is unavailable; try again"}, status_code=503,
                            headers={"Retry-After": "2"})


class AuditAndMetrics:
    """Counts and times every request by route; audits every /api/ request a route did not audit itself."""

    def __init__(self, app: ASGIApp, services: Services) -> None:
        self.app = app
        self.s = services

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = [500]
        state: dict[str, Any] = scope.setdefault("state", {})

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = int(message["status"])
                await self._audit(scope, state, status[0])
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route = scope.get("route")
            name = getattr(route, "path", None) or "unmatched"
            method = scope.get("method", "-")
            self.s.metrics.requests.labels(name, method, str(status[0])).inc()
            self.s.metrics.latency.labels(name, method).observe(time.perf_counter() - start)

    async def _audit(self, scope: Scope, state: dict[str, Any], status: int) -> None:
        path = str(scope.get("path", ""))
        if not path.startswith(API_PREFIX) or state.get("audited"):
            return
        state["audited"] = True
        who = state.get("principal")
        route = scope.get("route")
        action = f"{scope.get('method')} {getattr(route, 'path', 'unmatched')}"
        client = scope.get("client")
        address = client[0] if client else "-"
        actor, role = (who.username, who.role) if who is not None else ("anonymous", "-")
        result = "ok" if status < 400 else str(status)
        try:
            await anyio.to_thread.run_sync(self.s.audit.append, actor, role, action, path[:300], result, address)
        except Exception:
            # The response is already decided; a failed audit write is loud in the log and in /readyz.
            log.exception("audit write failed for %s", action)
