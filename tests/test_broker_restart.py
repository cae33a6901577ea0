"""Broker restarts mid-stream from a real edge agent (issue 13 item 12): every message in InfluxDB exactly once.

mosquitto 2.0.11 answers `0x10 No matching subscribers` (and discards the message) until the hub has
subscribed again after a restart, and does not restore `$share/` subscriptions from persistence at all, so
with the hub offline everything published after the restart would be discarded. The agent must hold.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import influx_query
from hub_helpers import write_config

from commhub.config import Config, load
from commhub.services import Influxd, Mosquitto
from commhub.wire import DeviceKind, Heartbeat
from edge_agents.base import BaseAgent
from hub.worker import Worker

pytestmark = pytest.mark.services
WAIT = 120.0  # generous: the machine is shared; no verdict depends on speed


class Stream:
    """Publishes heartbeats round-robin over some devices at a steady pace while `go` is set."""

    def __init__(self, agent: BaseAgent, devices: list[str], rate: float = 200.0) -> None:
        self.agent, self.devices, self.rate = agent, devices, rate
        self.go = threading.Event()
        self.sent: dict[str, set[int]] = {d: set() for d in devices}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self.go.set()
        self._thread.start()

    def stop(self) -> None:
        self.go.clear()
        self._stop.set()
        self._thread.join(10)

    @property
    def count(self) -> int:
        return sum(len(s) for s in self.sent.values())

    def _run(self) -> None:
        i = 0
        while not self._stop.is_set():
            if not self.go.wait(0.1):
                continue
            dev = self.devices[i % len(self.devices)]
            self.sent[dev].add(self.agent.publish(dev, Heartbeat(uptime_s=float(i))))
            i += 1
            time.sleep(1 / self.rate)


def _wait(pred: Callable[[], bool], what: str, timeout: float = WAIT) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


class Hub:
    """The real hub worker, in this process (a fresh Worker per start, same id, spool and broker session)."""

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self.worker: Worker | None = None

    def start(self) -> None:
        self.worker = Worker(self.cfg)
        self.worker.start()
        assert self.worker.wait_connected(WAIT), "the hub did not connect"

    def stop(self) -> None:
        if self.worker is not None:
            self.worker.stop(flush_timeout=WAIT)
            self.worker = None


def test_broker_restarts_mid_stream_lose_nothing(mosquitto_factory: Callable[..., Mosquitto], influxd: Influxd,
                                                 tmp_path: Path) -> None:
    autosave_s = 1
    broker = mosquitto_factory(autosave_interval_s=autosave_s)
    db = "restart_" + uuid.uuid4().hex[:8]
    cfg = load(write_config(tmp_path, broker, influxd, db, hub={"metrics": {"port": 0}}))
    hub = Hub(cfg)
    hub.start()
    devices = [d for d in cfg.community.devices if d.kind in (DeviceKind.SMOKE, DeviceKind.GAS)][:20]
    settings = cfg.agent.model_copy(update={"heartbeats": False, "backoff_initial_s": 0.2, "backoff_max_s": 1.0})
    agent = BaseAgent(cfg.mqtt, cfg.community.site.id, "facility", tmp_path / "agent", settings)
    for d in devices:
        agent.add_device(d.id, d.kind, d.interval_s)
    agent.start()
    assert agent.wait_connected(WAIT)
    stream = Stream(agent, [d.id for d in devices])
    try:
        stream.start()
        _wait(lambda: stream.count >= 300, "the stream to get going")
        # 1. SIGTERM and restart while the hub is live: the agent races the hub's re-subscription.
        broker.stop()
        time.sleep(1.0)
        broker.start()
        _wait(lambda: agent.connected and not agent.stats.holding, "the agent to deliver again after SIGTERM")
        n = stream.count
        _wait(lambda: stream.count >= n + 300, "more of the stream")
        # 2. The hub stops; the broker restarts while the hub's backlog waits in it. The shared subscription
        # is gone after the restart, so every publish is answered 0x10 and the agent must hold.
        hub.stop()
        n = stream.count
        _wait(lambda: stream.count >= n + 300, "a backlog for the stopped hub")
        broker.stop()
        broker.start()
        _wait(lambda: agent.stats.holding, "the agent to hold on 0x10 No matching subscribers")
        # 3. SIGKILL once the broker has saved (nothing was accepted since: the agent holds).
        stream.go.clear()
        time.sleep(autosave_s + 2)
        broker.stop(kill=True)
        broker.start()
        stream.go.set()
        n = stream.count
        _wait(lambda: stream.count >= n + 300, "the stream to go on while the hub is away")
        assert agent.stats.holding and agent.stats.rejected > 0
        hub.start()
        _wait(lambda: not agent.stats.holding, "the agent to end its hold once the hub has subscribed")
        n = stream.count
        _wait(lambda: stream.count >= n + 300, "the stream after the hub came back")
    finally:
        stream.stop()
    assert agent.flush(WAIT), f"the agent still has {agent.stats.spooled} messages spooled"
    agent.stop()
    expected = stream.count

    def stored() -> dict[str, list[int]]:
        out: dict[str, list[int]] = {}
        for s in influx_query(influxd.url, db, 'SELECT "seq" FROM heartbeat GROUP BY device_id'):
            out[s["tags"]["device_id"]] = [int(v[1]) for v in s["values"]]
        return out

    try:
        _wait(lambda: sum(map(len, stored().values())) >= expected, f"{expected} points in InfluxDB")
    finally:
        hub.stop()
    got = stored()
    for dev, seqs in stream.sent.items():
        assert sorted(got.get(dev, [])) == sorted(seqs), f"{dev}: stored seqs differ from the published ones"
    assert sum(map(len, got.values())) == expected  # exactly once: nothing extra
