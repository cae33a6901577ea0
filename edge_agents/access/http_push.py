"""HTTP endpoint that door controllers and face gates push their events to (stdlib http.server).

POST /events with a JSON body in the format of edge_agents.access.mapping. Answers:
200 {"accepted": n, "seqs": [...], "durable": true}  the events are in the agent's spool file on disk
202 {... "durable": false}                           queued in memory, not yet on disk within sync_timeout_s
400 {"error": ..., "details": [{"index", "field", "reason"}]}  nothing was accepted; fix and resend
401 (token missing or wrong), 404 (unknown device or path), 408 (request not sent within timeout_s),
411 (no Content-Length), 413 (body too large), 503 (max_connections busy, or the agent is stopping).
GET /health answers {"ok": true}.

Hostile clients are bounded: a token is required unless `require_token: false`; each connection has one
thread out of at most `max_connections` (more are answered 503 at once); a request must arrive whole within
`timeout_s`, or the connection is cut, so half-sent requests cannot pin threads.
"""

from __future__ import annotations

import contextlib
import hmac
import json
import logging
import socket
import threading
import time
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
        self._server: _Server | None = None
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

        check_settings(self.settings)
        self._server = _Server((self.settings.host, self.settings.port), Handler, self.settings)
        self._thread = threading.Thread(target=self._server.serve_forever, name="access-http", daemon=True)
        self._thread.start()
        self._server.start_reaper()
        log.info("access push endpoint on http://%s:%d/events", self.settings.host, self.port)

    def stop(self) -> None:
        """Stop accepting requests."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server.stop_reaper()
            self._server = None
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None

    @property
    def busy(self) -> int:
        """Connections refused because max_connections were being served."""
        return self._server.busy if self._server is not None else 0

    @property
    def cut(self) -> int:
        """Connections cut because a request did not arrive within timeout_s."""
        return self._server.cut if self._server is not None else 0

    @property
    def open_connections(self) -> int:
        """Connections being served now (each holds one thread)."""
        return self._server.open_connections if self._server is not None else 0

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


def check_settings(settings: AccessHttpSettings) -> None:
    """Refuse to serve an open endpoint unless the config says so explicitly."""
    if settings.require_token and not settings.token:
        raise ValueError("agent.access.http.token is empty: set a token (controllers send 'Authorization: Bearer "
                         "<token>'), or set agent.access.http.require_token: false to serve without one")
    if not settings.token:
        log.warning("access push endpoint serves without a token (require_token: false)")


def _json(status: int, body: dict[str, Any], close: bool = False) -> bytes:
    data = json.dumps(body).encode()
    head = (f"HTTP/1.1 {status} {HTTPStatus(status).phrase}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(data)}\r\n{'Connection: close' + chr(13) + chr(10) if close else ''}\r\n")
    return head.encode() + data


class _Server(ThreadingHTTPServer):
    """One thread per connection, at most max_connections of them, each with a deadline for its request."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler],
                 settings: AccessHttpSettings) -> None:
        super().__init__(address, handler)
        self.settings = settings
        self._slots = threading.BoundedSemaphore(settings.max_connections)
        self._deadlines: dict[socket.socket, float] = {}
        self._guard = threading.Lock()
        self._stopping = threading.Event()
        self._reaper: threading.Thread | None = None
        self.busy = 0
        self.cut = 0

    @property
    def open_connections(self) -> int:
        with self._guard:
            return len(self._deadlines)

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False):
            # Answered here, on the accepting thread, without reading: a short bounded send, then close.
            self.busy += 1
            with contextlib.suppress(OSError):
                request.settimeout(1.0)
                request.sendall(_json(HTTPStatus.SERVICE_UNAVAILABLE,
                                      {"error": f"busy: {self.settings.max_connections} connections are being "
                                                "served; retry later"}, close=True))
            self.shutdown_request(request)
            return
        self.arm(request)
        try:
            super().process_request(request, client_address)
        except BaseException:
            self.disarm(request)
            self._slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self.disarm(request)
            self._slots.release()

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that vanishes (or a connection we cut) is not a fault of ours worth a traceback.
        log.debug("push connection from %s ended with an error", client_address, exc_info=True)

    def arm(self, request: socket.socket) -> None:
        """(Re)start the deadline of the request now expected on this connection."""
        with self._guard:
            self._deadlines[request] = time.monotonic() + self.settings.timeout_s

    def disarm(self, request: socket.socket) -> None:
        with self._guard:
            self._deadlines.pop(request, None)

    def start_reaper(self) -> None:
        self._stopping.clear()
        self._reaper = threading.Thread(target=self._reap, name="access-http-reaper", daemon=True)
        self._reaper.start()

    def stop_reaper(self) -> None:
        self._stopping.set()
        if self._reaper is not None:
            self._reaper.join(5)
            self._reaper = None

    def _reap(self) -> None:
        # A socket timeout alone does not bound a request: a client sending a byte every few seconds never
        # trips it. Cutting the connection at its deadline wakes the blocked reader, which frees the thread.
        period = min(1.0, self.settings.timeout_s / 4)
        while not self._stopping.wait(period):
            now = time.monotonic()
            with self._guard:
                late = [sock for sock, due in self._deadlines.items() if due <= now]
                for sock in late:
                    del self._deadlines[sock]
            for sock in late:
                self.cut += 1
                with contextlib.suppress(OSError):
                    sock.sendall(_json(HTTPStatus.REQUEST_TIMEOUT,
                                       {"error": f"request not received within {self.settings.timeout_s:g} s"},
                                       close=True))
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)


class _Handler(BaseHTTPRequestHandler):
    owner: HttpPushAdapter
    server: _Server
    protocol_version = "HTTP/1.1"
    server_version = "commhub-access/1"

    def setup(self) -> None:
        # _Server cuts a request (or an idle keep-alive connection) at timeout_s with a 408; the socket timeout,
        # later than that, is only a safety net for a connection the reaper missed.
        super().setup()
        self.connection.settimeout(2 * self.server.settings.timeout_s + 1.0)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s %s", self.address_string(), format % args)

    def _reply(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        if status >= 400 and status != HTTPStatus.NOT_FOUND:
            self.close_connection = True  # the rest of a refused request may still be in flight
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(data)
        if not self.close_connection:
            self.server.arm(self.connection)  # the next request on this connection gets its own deadline

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
        try:
            raw = self.rfile.read(length)
        except TimeoutError:
            self.close_connection = True
            self._reply(HTTPStatus.REQUEST_TIMEOUT,
                        {"error": f"body not received within {self.server.settings.timeout_s:g} s"})
            return
        if len(raw) < length:
            self.close_connection = True
            return  # the client went away (or was cut at its deadline) mid-body: nobody to answer
        self.server.disarm(self.connection)  # the request is in: its processing is our time, not the client's
        try:
            data = json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            where = getattr(e, "pos", "?")
            self._reply(HTTPStatus.BAD_REQUEST, {"error": f"body is not JSON ({e.__class__.__name__} at {where})"})
            return
        except RecursionError:
            self._reply(HTTPStatus.BAD_REQUEST, {"error": "body is nested too deeply"})
            return
        try:
            status, body = self.owner.handle(data)
        except RuntimeError as e:  # the agent is stopping: the controller should retry later
            self._reply(HTTPStatus.SERVICE_UNAVAILABLE, {"error": str(e)})
            return
        except Exception:
            # A bug, not the client's fault; it still gets an answer, and nothing of the body reaches the log.
            log.exception("push request could not be processed")
            self._reply(HTTPStatus.INTERNAL_SERVER_ERROR, {"error": "internal error; nothing was accepted"})
            return
        self._reply(status, body)
