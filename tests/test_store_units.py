"""Spool, de-duplication and transport choice: pure logic, on a real filesystem and a real local HTTP server."""

from __future__ import annotations

import http.server
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest

from commhub.config import InfluxConfig
from hub.ingest.dedup import Deduplicator
from hub.store.influx import V2Transport, WriteError, choose_transport
from hub.store.spool import Spool


def test_spool_survives_reopen_in_order(tmp_path: Path) -> None:
    s = Spool(tmp_path)
    s.open()
    s.append(["a v=1 1", "a v=2 2"])
    s.append(["a v=3 3"])
    (tmp_path / "0000000000000099.tmp").write_text("half a batch")  # a crash mid-write
    again = Spool(tmp_path)
    again.open()
    assert again.depth[:2] == (2, 3)
    segs = again.take(max_points=10, timeout=0)
    assert [p for seg in segs for p in seg.path.read_text().split()] == ["a", "v=1", "1", "a", "v=2", "2", "a", "v=3",
                                                                        "3"]
    assert not (tmp_path / "0000000000000099.tmp").exists()
    again.done(segs[:1])
    assert again.depth[:2] == (1, 1)
    seg = again.append(["a v=4 4"])
    assert int(seg.path.stem) > int(segs[-1].path.stem)  # numbering continues after a reopen


def test_spool_take_respects_point_budget_and_rejects_aside(tmp_path: Path) -> None:
    s = Spool(tmp_path, fsync=False)
    s.open()
    for i in range(5):
        s.append([f"m v={i} {i}"] * 3)
    first = s.take(max_points=7, timeout=0)
    assert sum(seg.points for seg in first) == 6
    s.reject(first[:1])
    assert (tmp_path / "rejected" / first[0].path.name).exists()
    assert s.depth[1] == 12
    assert s.take(max_points=1, timeout=0)[0].points == 3  # at least one segment, even over the budget


def test_take_lingers_for_more_points_until_a_full_write_a_wake_or_the_linger(tmp_path: Path) -> None:
    s = Spool(tmp_path, fsync=False)
    s.open()
    s.append(["a v=1 1"])
    threading.Timer(0.05, s.append, [["a v=2 2"]]).start()
    t0 = time.monotonic()
    segs = s.take(max_points=2, timeout=0, linger=60)  # the second batch makes a full write: no more waiting
    assert [seg.points for seg in segs] == [1, 1] and time.monotonic() - t0 < 60
    s.done(segs)
    s.append(["a v=3 3"])
    threading.Timer(0.05, s.wake).start()  # the drainer stopping
    t0 = time.monotonic()
    woken = s.take(max_points=10, timeout=0, linger=60)
    assert [seg.points for seg in woken] == [1] and time.monotonic() - t0 < 60
    s.done(woken)
    s.append(["a v=4 4"])
    t0 = time.monotonic()
    assert [seg.points for seg in s.take(max_points=10, timeout=0, linger=0.2)] == [1]  # alone, after the linger
    assert time.monotonic() - t0 >= 0.15
    assert s.take(max_points=10, timeout=0, linger=0.0)  # no linger: at once, as before


def test_dedup_window() -> None:
    d = Deduplicator(window=16)
    assert d.first_time("a", 1) and d.first_time("b", 1)
    assert not d.first_time("a", 1)
    for seq in range(2, 40):
        d.first_time("a", seq)
    assert d.first_time("a", 1)  # fell out of the window
    d.forget("a", 39)
    assert d.first_time("a", 39)


@pytest.mark.parametrize("version,expected", [
    ("1.6.7~rc0", "v1"), ("1.7.11", "v1"), ("1.8.10", "v2"), ("v2.7.4", "v2"), ("2.7.1", "v2"),
    ("3.0.0", "v2"), (None, "v2"), ("", "v2"),
])
def test_transport_choice(version: str | None, expected: str) -> None:
    assert choose_transport(version) == expected


class _Recorder(http.server.BaseHTTPRequestHandler):
    requests: ClassVar[list[dict[str, Any]]] = []
    status = 204

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        type(self).requests.append({"path": self.path, "body": body, "auth": self.headers.get("Authorization")})
        self.send_response(type(self).status)
        self.end_headers()
        if type(self).status != 204:
            self.wfile.write(b'{"code":"invalid","message":"partial write"}')

    def log_message(self, *_: Any) -> None:
        pass


@pytest.fixture
def recorder() -> Iterator[tuple[str, type[_Recorder]]]:
    _Recorder.requests = []
    _Recorder.status = 204
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", _Recorder
    server.shutdown()


def test_v2_transport_speaks_api_v2_write(recorder: tuple[str, type[_Recorder]]) -> None:
    url, rec = recorder
    t = V2Transport(InfluxConfig(url=url, transport="v2", database="commhub", retention_policy="autogen",
                                 org="-", token="user:pass"))
    t.write(b"m v=1 1\nm v=2 2\n")
    req = rec.requests[-1]
    assert req["path"].startswith("/api/v2/write?")
    assert "bucket=commhub%2Fautogen" in req["path"] and "precision=us" in req["path"] and "org=-" in req["path"]
    assert req["auth"] == "Token user:pass"
    assert req["body"].strip().splitlines() == [b"m v=1 1", b"m v=2 2"]
    rec.status = 400
    with pytest.raises(WriteError) as e:
        t.write(b"m v=1 1\n")
    assert e.value.retryable is False
    t.close()
