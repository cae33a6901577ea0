"""HTTP endpoint that door controllers and face gates push their events to (stdlib http.server).

POST /events with a JSON body in the format of edge_agents.access.mapping. Answers:
200 {"accepted": n, "seqs": [...], "durable": true}  the events are in the agent's spool file on disk
202 {... "durable": false}                           queued in memory, not yet on disk within sync_timeout_s
400 {"error": ..., "details": [{"index", "field", "reason"}]}  nothing was accepted; fix and resend
401 (token missing or wrong), 404 (unknown device or path), 413 (body too large).
GET /health answers {"ok": true}.
"""

from __future__ import annotations

import hmac
import json
import logging
import threading
from collections.abc import Callable, Mapping
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from commhub.agent_config import AccessHttpSettings
from commhub.wire import KIND_BODIES, DeviceKind
from edge_agents.access.hashing import CredentialHasher
from edge_agents.access.mapping import PushError, parse_request
from edge_agents.base.adapter import Emit

log = logging.getLogger(__name__)


class HttpPushAdapter:
    """Serves POST /events and emits each valid event; all-or-nothing per request."""

    def __init__(self, settings: AccessHttpSettings, hasher: CredentialHasher, devices: Mapping[str, DeviceKind],
                 sync: Callable[[float], bool] | None = None) -> None:
        self.settings = settings
        self.hasher = hasher
        self.devices = dict(devices)
        self.sync = sync
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._emit: Emit | None = None
        self._lock = threading.Lock()  # one request publishes at a time, so a batch keeps its order
        self.accepted = 0
        self.refused = 0

    @property
    def port(self) -> int:
        """The bound port (useful with port 0)."""
        if self._server is None:
            raise RuntimeError("not started")
        return int(self._server.server_address[1])

    def start(self, emit: Emit) -> None:
        """Bind and serve in a background thread."""
        self._emit = emit
        adapter = self

        class Handler(_Handler):
            owner = adapter

        self._server = ThreadingHTTPServer((self.settings.host, self.settings.port), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="access-http", daemon=True)
        self._thread.start()
        log.info("access push endpoint on http://%s:%d/events", self.settings.host, self.port)

    def stop(self) -> None:
        """Stop accepting requests."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None

    def handle(self, data: Any) -> tuple[int, dict[str, Any]]:
        """Process one decoded request body; returns (status, response)."""
        try:
            events = parse_request(data, self.hasher)
        except PushError as e:
            self.refused += 1
            return HTTPStatus.BAD_REQUEST, {"error": str(e), "details": e.details}
        unknown = sorted({d for d, _, _ in events if d not in self.devices})
        if unknown:
            self.refused += 1
            return HTTPStatus.NOT_FOUND, {"error": f"devices not served by this agent: {unknown}; nothing accepted"}
        wrong = [{"index": i, "field": "event", "reason": f"a {self.devices[d].value} may not send {b.type!r}"}
                 for i, (d, b, _) in enumerate(events) if b.type not in KIND_BODIES[self.devices[d]]]
        if wrong:
            self.refused += 1
            return HTTPStatus.BAD_REQUEST, {"error": "events the device kind may not send; nothing accepted",
                                            "details": wrong}
        assert self._emit is not None
        seqs: list[int] = []
        with self._lock:
            for device_id, body, ts in events:
                try:
                    seqs.append(self._emit(device_id, body, ts=ts))
                except ValueError as e:  # checked above, so only a bug lands here
                    log.error("push request partly accepted (%d of %d): %s", len(seqs), len(events), e)
                    return HTTPStatus.INTERNAL_SERVER_ERROR, {"error": str(e), "accepted": len(seqs), "seqs": seqs}
        self.accepted += len(seqs)
        durable = self.sync(self.settings.sync_timeout_s) if self.sync is not None else False
        status = HTTPStatus.OK if durable else HTTPStatus.ACCEPTED
        return status, {"accepted": len(seqs), "seqs": seqs, "durable": durable}


class _Handler(BaseHTTPRequestHandler):
    owner: HttpPushAdapter
    protocol_version = "HTTP/1.1"
    server_version = "commhub-access/1"

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s %s", self.address_string(), format % args)

    def _reply(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _authorized(self) -> bool:
        token = self.owner.settings.token
        if not token:
            return True
        given = self.headers.get("Authorization", "")
        return hmac.compare_digest(given.encode(), f"Bearer {token}".encode())

    def do_GET(self) -> None:
        if self.path.rstrip("/") == "/health":
            self._reply(HTTPStatus.OK, {"ok": True})
        else:
            self._reply(HTTPStatus.NOT_FOUND, {"error": "POST /events or GET /health"})

    def do_POST(self) -> None:
        if self.path.rstrip("/") != "/events":
            self._reply(HTTPStatus.NOT_FOUND, {"error": "POST /events or GET /health"})
            return
        if not self._authorized():
            self._reply(HTTPStatus.UNAUTHORIZED, {"error": "missing or wrong 'Authorization: Bearer <token>'"})
            return
        try:
            length = int(self.headers.get("Content-Length", ""))
        except ValueError:
            self._reply(HTTPStatus.LENGTH_REQUIRED, {"error": "Content-Length is required"})
            return
        if length > self.owner.settings.max_body_bytes or length < 0:
            self.close_connection = True
            self._reply(HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                        {"error": f"body over {self.owner.settings.max_body_bytes} bytes"})
            return
        raw = self.rfile.read(length)
        try:
            data = json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            where = getattr(e, "pos", "?")
            self._reply(HTTPStatus.BAD_REQUEST, {"error": f"body is not JSON ({e.__class__.__name__} at {where})"})
            return
        try:
            status, body = self.owner.handle(data)
        except RuntimeError as e:  # the agent is stopping: the controller should retry later
            self._reply(HTTPStatus.SERVICE_UNAVAILABLE, {"error": str(e)})
            return
        self._reply(status, body)
