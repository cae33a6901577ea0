"""The access push endpoint against hostile or broken clients, on a real loopback socket.

The agent behind the endpoint is replaced by a recording emit function: what is under test is the HTTP
receiver (authentication, bounds on size, time and threads, a 4xx with a reason for every bad request).
"""

from __future__ import annotations

import contextlib
import http.client
import json
import socket
import time
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pytest

from commhub.agent_config import AccessHttpSettings
from commhub.wire import DeviceKind
from edge_agents.access.hashing import CredentialHasher
from edge_agents.access.http_push import HttpPushAdapter

TOKEN = "push-token-0123456789"
SECRET = "test-site-secret-0123456789"
GOOD = {"device": "dc1", "event": "granted", "card": "0012345678"}
# Generous bounds: the machine is shared and loaded; a verdict never depends on how fast it is.
WAIT_S = 30.0


class Recorder:
    """Stands in for BaseAgent.publish: records what the endpoint accepted."""

    def __init__(self) -> None:
        self.bodies: list[tuple[str, Any, datetime | None]] = []

    def __call__(self, device_id: str, body: Any, *, ts: datetime | None = None) -> int:
        self.bodies.append((device_id, body, ts))
        return len(self.bodies)


def _adapter(**settings: Any) -> tuple[HttpPushAdapter, Recorder]:
    cfg = AccessHttpSettings.model_validate({"port": 0, **settings})
    adapter = HttpPushAdapter(cfg, CredentialHasher(SECRET, 32), {"dc1": DeviceKind.DOOR_CONTROLLER})
    rec = Recorder()
    adapter.start(rec)
    return adapter, rec


@pytest.fixture
def push() -> Iterator[tuple[HttpPushAdapter, Recorder]]:
    adapter, rec = _adapter(token=TOKEN, max_body_bytes=4096)
    yield adapter, rec
    adapter.stop()


def _post(port: int, body: Any, token: str | None = TOKEN, raw: bytes | None = None) -> tuple[int, dict[str, Any]]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=WAIT_S)
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    try:
        conn.request("POST", "/events", body=raw if raw is not None else json.dumps(body).encode(), headers=headers)
        resp = conn.getresponse()
        return resp.status, json.loads(resp.read())
    finally:
        conn.close()


def _wait(cond: Any, what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while not cond():
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


def test_a_token_is_required_unless_turned_off_explicitly() -> None:
    adapter = HttpPushAdapter(AccessHttpSettings(port=0), CredentialHasher(SECRET, 32), {})
    with pytest.raises(ValueError, match=r"token is empty.*require_token: false"):
        adapter.start(Recorder())
    open_adapter, rec = _adapter(require_token=False)
    try:
        assert _post(open_adapter.port, [GOOD], token=None)[0] == 202
        assert len(rec.bodies) == 1
    finally:
        open_adapter.stop()


def test_bad_token_oversized_body_and_overflowing_timestamp_get_a_4xx_with_a_reason(
        push: tuple[HttpPushAdapter, Recorder]) -> None:
    adapter, rec = push
    port = adapter.port
    for token in (None, "wrong", TOKEN + "x"):
        status, body = _post(port, [GOOD], token=token)
        assert status == 401 and "Authorization" in body["error"]
    status, body = _post(port, None, raw=b"[" + b" " * 5000 + b"]")
    assert status == 413 and "4096" in body["error"]
    for ts in (1e20, -1e20, 1e308):
        status, body = _post(port, [{**GOOD, "ts": ts}])
        assert status == 400, (ts, body)
        assert "ts must be unix seconds" in body["details"][0]["reason"]
    # JSON's non-standard Infinity and NaN (Python's json accepts them) are refused the same way.
    for word in (b"Infinity", b"NaN"):
        raw = b'[{"device": "dc1", "event": "granted", "card": "1", "ts": ' + word + b"}]"
        status, body = _post(port, None, raw=raw)
        assert status == 400 and body["details"], word
    status, body = _post(port, None, raw=b"[" * 100_000 + b"]" * 100_000)
    assert status in (400, 413) and body["error"]
    # A poison event inside a good batch: the whole batch is refused, nothing is half accepted.
    status, body = _post(port, [GOOD, {**GOOD, "ts": 1e20}, GOOD])
    assert status == 400 and [d["index"] for d in body["details"]] == [1]
    assert rec.bodies == [], "nothing from a refused request was accepted"
    status, body = _post(port, [{**GOOD, "ts": 1_777_593_600.0}])
    assert status == 202 and body["accepted"] == 1 and len(rec.bodies) == 1


def test_half_sent_requests_do_not_pin_threads() -> None:
    # A deadline of 4 s: long enough that the connections below are all open before the first is cut, even on
    # a loaded machine.
    adapter, rec = _adapter(token=TOKEN, timeout_s=4.0, max_connections=4)
    port = adapter.port
    try:
        # Slowloris: connections that send part of a request and then nothing, or a byte now and then
        # (which a plain socket timeout would never cut).
        held = []
        for i in range(4):
            s = socket.create_connection(("127.0.0.1", port), timeout=WAIT_S)
            s.sendall(b"POST /events HTTP/1.1\r\nHost: x\r\nContent-Length: 500\r\n" if i % 2 else b"POST /ev")
            held.append(s)
        _wait(lambda: adapter.open_connections == 4, "the half-sent requests were not being served")
        # Every thread is taken: more connections are told at once that the endpoint is busy.
        for _ in range(4):
            with socket.create_connection(("127.0.0.1", port), timeout=WAIT_S) as s:
                s.sendall(b"POST /events HTTP/1.1\r\n")
                assert _read_all(s).startswith(b"HTTP/1.1 503 "), "a connection over the limit was not refused"
        assert adapter.busy == 4
        # The held ones are cut at their deadline with a 408, the tricklers too; no thread stays pinned.
        answers = []
        for s in held:
            answers.append(_read_all(s, trickle=held[1::2]))
            s.close()
        assert all(a.startswith(b"HTTP/1.1 408 ") for a in answers), answers
        assert adapter.cut == 4
        _wait(lambda: adapter.open_connections == 0, "half-sent requests still hold threads")
        # The endpoint still serves a well-behaved controller.
        status, body = _post(port, [GOOD])
        assert status == 202 and body["accepted"] == 1
        assert len(rec.bodies) == 1
    finally:
        adapter.stop()


def _read_all(s: socket.socket, trickle: list[socket.socket] | None = None) -> bytes:
    """Everything the server sends until it closes; meanwhile `trickle` sockets send a byte every 0.3 s."""
    chunks = []
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        for t in trickle or ():
            with contextlib.suppress(OSError):
                t.sendall(b"X")
        s.settimeout(0.3 if trickle else WAIT_S)
        try:
            data = s.recv(4096)
        except TimeoutError:
            continue
        except OSError:
            break
        if not data:
            break
        chunks.append(data)
    return b"".join(chunks)
