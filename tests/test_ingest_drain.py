"""The spool drainer against a real influxd that goes away in the middle of a write.

A TCP relay sits between the drainer and influxd and cuts the connection at chosen moments: after influxd has
taken a write but before its answer reaches us (the write happened, we cannot know it), and by refusing
connections for a while (InfluxDB down). Every point must end up in InfluxDB exactly once and the spool empty.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from commhub.config import InfluxConfig, SpoolConfig
from commhub.services import Influxd
from hub.metrics import HubMetrics
from hub.store.drain import Drainer
from hub.store.influx import make_transport
from hub.store.spool import Spool

pytestmark = pytest.mark.services


class _Relay:
    """Forwards TCP to influxd; drops the answer to the next `lose_answers` writes, refuses while `down`."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.lose_answers = 0
        self.down = False
        self.lost = 0
        self.refused = 0
        self._live: list[socket.socket] = []
        self._srv = socket.create_server(("127.0.0.1", 0))
        self.port = self._srv.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._srv.accept()
            except OSError:
                return
            if self.down:
                self.refused += 1
                conn.close()
                continue
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        up = socket.create_connection(self.target)
        self._live += [conn, up]
        writing = threading.Event()  # a /write request went up on this connection
        threading.Thread(target=self._pipe, args=(conn, up, writing), daemon=True).start()
        try:
            while data := up.recv(65536):
                if writing.is_set() and self.lose_answers:  # influxd took the write; its answer never arrives
                    self.lose_answers -= 1
                    self.lost += 1
                    break
                conn.sendall(data)
        except OSError:
            pass
        finally:
            for s in (conn, up):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)  # wakes the other direction's recv(); close() alone does not
                s.close()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket, writing: threading.Event) -> None:
        try:
            while data := src.recv(65536):
                if b"POST /write" in data:
                    writing.set()
                dst.sendall(data)
        except OSError:
            pass

    def go_down(self) -> None:
        """InfluxDB goes away: open connections are cut and new ones refused."""
        self.down = True
        for s in self._live:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self._srv.close()


def _count(influx: Influxd, db: str) -> int:
    qs = urllib.parse.urlencode({"db": db, "q": 'SELECT count("seq") FROM "gas_reading"'})
    with urllib.request.urlopen(f"{influx.url}/query?{qs}", timeout=30) as r:
        series = json.load(r)["results"][0].get("series", [])
    return sum(int(s["values"][0][1]) for s in series)


def _wait(check: object, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():  # type: ignore[operator]
            return True
        time.sleep(0.05)
    return False


def test_an_influxdb_lost_mid_write_gets_every_point_exactly_once(tmp_path: Path, influxd: Influxd) -> None:
    host, port = urllib.parse.urlsplit(influxd.url).hostname, urllib.parse.urlsplit(influxd.url).port
    relay = _Relay((str(host), int(port or 8086)))
    db = f"drain_{int(time.time() * 1000)}"
    cfg = InfluxConfig(url=f"http://127.0.0.1:{relay.port}", database=db, transport="v1", timeout_s=5)
    spool = Spool(tmp_path / "spool", fsync=False)
    spool.open()
    metrics = HubMetrics("w")
    drainer = Drainer(spool, lambda: make_transport(cfg), SpoolConfig(retry_initial_s=0.05, retry_max_s=0.2,
                                                                      max_points_per_write=300), metrics)
    n, per_batch = 1200, 200
    lines = [f"gas_reading,device_id=g{i % 7},site=s lel_pct={i / 10!r},seq={i}i {1_790_000_000_000_000 + i}"
             for i in range(n)]
    try:
        # The first write's answer is lost after influxd stored it: the drainer must write it again, and
        # influxd's overwrite of an identical point keeps it once.
        relay.lose_answers = 1
        spool.append(lines[:per_batch])
        drainer.start()
        assert _wait(lambda: relay.lost == 1 and spool.depth[0] == 0, 60), "the lost answer was not written again"
        # InfluxDB down: batches keep arriving and stay spooled, in order, until it is back.
        relay.go_down()
        for i in range(per_batch, n - per_batch, per_batch):
            spool.append(lines[i:i + per_batch])
        assert _wait(lambda: relay.refused >= 2, 60), "the drainer did not retry while InfluxDB was down"
        assert spool.depth[1] == n - 2 * per_batch  # all of it still on disk
        relay.lose_answers = 1  # and the first write after it comes back loses its answer too
        relay.down = False
        spool.append(lines[n - per_batch:])
        assert _wait(lambda: spool.depth[0] == 0, 60), f"spool not drained: {spool.depth}"
        assert relay.lost == 2
        assert _count(influxd, db) == n  # each point once: the repeated writes overwrote themselves
        assert metrics.registry.get_sample_value("commhub_points_written_total", {"worker": "w"}) == n
        assert (metrics.registry.get_sample_value("commhub_write_errors_total", {"worker": "w"}) or 0) >= 4
    finally:
        drainer.stop(flush_timeout=1)
        relay.close()
