"""Live alerts over Server-Sent Events, per the caller's jurisdiction, with Last-Event-ID replay from SQL."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Annotated

import anyio
from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import StreamingResponse

from api.deps import ServicesDep, api_key_header, client_address
from api.live import sse_event
from api.schemas import ErrorPublic
from api.services.errors import Unauthorized, Unavailable
from api.services.scope import Principal

router = APIRouter(prefix="/api/v1/alerts", tags=["live"])
_PAGE = 1000


@router.get("/stream", response_class=StreamingResponse, summary="Live alert notices (SSE)",
            responses={200: {"content": {"text/event-stream": {}}}, 401: {"model": ErrorPublic},
                       422: {"model": ErrorPublic}, 503: {"model": ErrorPublic}})
async def stream(request: Request, s: ServicesDep,
                 authorization: Annotated[str | None, Header(max_length=4000)] = None,
                 last_event_id: Annotated[int | None, Header(ge=0, le=2**62)] = None,
                 access_token: Annotated[str | None, Query(max_length=4000, description=(
                     "For EventSource, which cannot send headers; prefer the Authorization header."))] = None,
                 after: Annotated[int | None, Query(ge=0, le=2**62,
                                                    description="Replay notices after this id.")] = None,
                 ) -> StreamingResponse:
    """Each event is one AlertNotice (id = notice id). Reconnect with Last-Event-ID: nothing missed, nothing twice."""
    key = await api_key_header(request)
    token = key or access_token or (authorization[7:] if authorization and authorization[:7].lower() == "bearer "
                                    else None)
    if not token:
        raise Unauthorized("not authenticated: send 'Authorization: Bearer <token>', X-API-Key or access_token")
    who: Principal
    who, _sid = await anyio.to_thread.run_sync(s.accounts.from_token, token)
    request.state.principal = who
    live = s.live
    if live is None:
        raise Unavailable("live alerts are off in this process")
    start = last_event_id if last_event_id is not None else after
    # The SSE stream is an audited read like any other.
    await anyio.to_thread.run_sync(s.audit.append, who.username, who.role, "alerts.stream", "alerts",
                                   f"ok: from {start}" if start is not None else "ok: live", client_address(request))
    request.state.audited = True
    sub = live.subscribe(who)  # first, so nothing committed during the replay is missed
    s.metrics.sse_clients.set(live.clients)

    async def events() -> AsyncIterator[bytes]:
        sent: set[int] = set()
        try:
            yield b"retry: 2000\n\n"
            if start is not None:
                last = start
                while True:
                    page = await anyio.to_thread.run_sync(s.alerts.notices_after, who, last, _PAGE)
                    for n in page:
                        sent.add(n.notice_id)
                        yield sse_event(n)
                    if len(page) < _PAGE:
                        break
                    last = page[-1].notice_id
            while True:
                if sub.queue.empty():
                    try:
                        async with asyncio.timeout(s.cfg.api.sse_heartbeat_s):
                            got = await sub.queue.get()
                    except TimeoutError:
                        yield b": ping\n\n"
                        continue
                else:
                    got = sub.queue.get_nowait()
                if got is None:
                    return  # cut off (too far behind, or shutting down): the client reconnects and replays
                notice_id, event = got
                # The hub de-duplicates live notices; only the overlap with the replay can repeat here.
                if notice_id in sent:
                    sent.discard(notice_id)
                    continue
                yield event
        finally:
            live.unsubscribe(sub)
            s.metrics.sse_clients.set(live.clients)

    return StreamingResponse(events(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
