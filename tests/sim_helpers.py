"""Helpers for the simulator and scenario tests: a small community and a recording publisher."""

from __future__ import annotations

import itertools
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import yaml
from paho.mqtt.enums import CallbackAPIVersion

from commhub.community import Community, Device
from commhub.wire import DeviceKind, _Body
from simulators.models import ModelContext, stream
from simulators.models.common import Event
from simulators.rhythm import LocalTime

# 2026-03-02 00:00 in Asia/Shanghai (a Monday).
MIDNIGHT = 1772380800.0
DAY = 86400.0

INTERVALS: dict[DeviceKind, float] = {
    DeviceKind.CAMERA: 10.0, DeviceKind.PATROL: 7200.0, DeviceKind.WATER_METER: 900.0, DeviceKind.SMOKE: 3600.0,
}


def device(kind: DeviceKind, device_id: str | None = None, interval_s: float | None = None) -> Device:
    """One device of a kind in grid g1, building b1, unit u1."""
    return Device(id=device_id or f"{kind.value.replace('_', '-')}-1", kind=kind, grid="g1", building="b1",
                  unit="u1", interval_s=interval_s or INTERVALS.get(kind, 60.0))


def community(extra: int = 0) -> Community:
    """One device of every modelled kind (plus `extra` more door controllers) in a one-building site."""
    devices = [device(k) for k in DeviceKind if k is not DeviceKind.AGENT]
    devices += [device(DeviceKind.DOOR_CONTROLLER, f"door-extra-{i}") for i in range(extra)]
    return Community.model_validate({
        "site": {"id": "simsite", "timezone": "Asia/Shanghai"},
        "grids": [{"id": "g1", "buildings": [{"id": "b1", "units": ["u1"]}]}],
        "devices": [d.model_dump() for d in devices],
    })


def context(recordings: object = None) -> ModelContext:
    """A model context for the test site."""
    return ModelContext(site="simsite", local=LocalTime("Asia/Shanghai"), recordings=recordings)  # type: ignore[arg-type]


def run_for(dev: Device, seconds: float, seed: int = 1, start: float = MIDNIGHT,
            ctx: ModelContext | None = None) -> list[tuple[float, Any]]:
    """A device's normal life for a while (bodies typed Any so tests can read their fields)."""
    gen: Iterator[Event] = stream(dev, seed, start, ctx or context())
    return list(itertools.takewhile(lambda e: e[0] < start + seconds, gen))


class ListPublisher:
    """Records what the simulation publishes (stands in for the broker in pure-logic tests)."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, _Body, datetime]] = []

    def publish(self, device_id: str, body: _Body, *, ts: datetime | None = None) -> int:
        """Record one message."""
        assert ts is not None
        self.sent.append((device_id, body, ts))
        return len(self.sent) - 1


def write_config(tmp: Path, port: int, comm: Community | None = None, extra: str = "") -> Path:
    """A commhub.yaml (and community file) pointing at a test broker, with agent state under tmp."""
    comm = comm or community()
    (tmp / "community.yaml").write_text(yaml.safe_dump(comm.model_dump(mode="json", exclude_none=True)))
    cfg = tmp / "commhub.yaml"
    cfg.write_text(f"community: community.yaml\nmqtt: {{port: {port}}}\nagent: {{state_dir: {tmp / 'agent'}}}\n"
                   + extra)
    return cfg


class Collector:
    """A raw paho subscriber (not the project's publisher) recording every message under a filter."""

    def __init__(self, port: int, topic_filter: str) -> None:
        self.port = port
        self.filter = topic_filter
        self.messages: list[tuple[str, bytes]] = []
        self._lock = threading.Lock()
        self._ready = threading.Event()
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"collect-{uuid.uuid4().hex[:8]}",
                                  protocol=paho.MQTTv5)
        self.client.on_connect = lambda c, *_a: c.subscribe(self.filter, qos=1)
        self.client.on_subscribe = lambda *_a: self._ready.set()
        self.client.on_message = self._on_message

    def _on_message(self, _c: Any, _u: Any, msg: paho.MQTTMessage) -> None:
        with self._lock:
            self.messages.append((msg.topic, bytes(msg.payload)))

    def __enter__(self) -> Collector:
        self.client.connect("127.0.0.1", self.port)
        self.client.loop_start()
        assert self._ready.wait(10), "no SUBACK"
        return self

    def __exit__(self, *_exc: object) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def wait_for(self, n: int, timeout: float = 30.0) -> list[tuple[str, bytes]]:
        """Wait until at least n messages arrived (or the timeout); returns them all."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if len(self.messages) >= n:
                    break
            time.sleep(0.05)
        time.sleep(0.2)  # anything more than expected shows up too
        with self._lock:
            return list(self.messages)
