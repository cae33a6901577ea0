"""Helpers for tests that run a real hub: write a config, run `commhub hub` as a process, publish raw."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import yaml
from paho.mqtt.enums import CallbackAPIVersion

from commhub.hubproc import HubProcess as HubProcess  # the tests' hub runner, shared with bench/hubrun
from commhub.ports import free_port
from commhub.services import Influxd, Mosquitto

REPO = Path(__file__).resolve().parents[1]
SAMPLE_COMMUNITY = REPO / "configs" / "community" / "sample.yaml"


def write_config(tmp: Path, broker: Mosquitto, influx: Influxd | None, database: str,
                 community: Path = SAMPLE_COMMUNITY, site: str | None = None, **sections: dict[str, Any]) -> Path:
    """A hub config file under tmp pointing at the given services; extra sections are merged in.

    site: a copy of the community whose site id is this one (the hub takes only its own site's topics).
    """
    if site is not None:
        model = yaml.safe_load(community.read_text())
        model["site"]["id"] = site
        community = tmp / f"community-{site}.yaml"
        community.write_text(yaml.safe_dump(model))
    # A worker id of its own: the id names the broker session, which a later test must not inherit.
    hub: dict[str, Any] = {"worker_id": f"hub-{uuid.uuid4().hex[:8]}", "metrics": {"port": free_port()},
                           "spool": {"dir": str(tmp / "spool")}, "snapshots_dir": str(tmp / "snapshots")}
    hub.update(sections.pop("hub", {}))
    data: dict[str, Any] = {
        "community": str(community),
        "mqtt": {"host": broker.host, "port": broker.port, "root": "commhub"},
        "influx": {"url": influx.url if influx else "http://127.0.0.1:9", "database": database,
                   "transport": "v1"},
        "hub": hub,
        **sections,
    }
    path = tmp / "commhub.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def raw_client(broker: Mosquitto, client_id: str) -> paho.Client:
    """A plain paho client (not the project's publisher), connected, with its loop running."""
    c = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=paho.MQTTv5)
    c.max_inflight_messages_set(0)  # a cap makes paho rescan its queue on every ack
    c.connect(broker.host, broker.port)
    c.loop_start()
    return c


def envelope_json(device_id: str, seq: int, body: dict[str, Any], ts: datetime | None = None) -> bytes:
    """A hand-written envelope, independent of the project's models."""
    ts = ts or datetime(2026, 1, 1, tzinfo=UTC) + timedelta(milliseconds=seq)
    return json.dumps({"schema": 1, "device_id": device_id, "ts": ts.isoformat().replace("+00:00", "Z"),
                       "seq": seq, "body": body}).encode()


def publish_stream(client: paho.Client, site: str, devices: list[tuple[str, str]], n: int,
                   make_body: Callable[[int], dict[str, Any]], rate: float = 0.0, channel: str = "tele",
                   on_progress: Callable[[int], None] | None = None) -> None:
    """Publish n messages at QoS 1 round-robin over (kind, device_id), seq per device, and wait for PUBACKs."""
    seqs: dict[str, int] = {}
    infos = []
    start = time.monotonic()
    for i in range(n):
        kind, dev = devices[i % len(devices)]
        seq = seqs.get(dev, 0)
        seqs[dev] = seq + 1
        payload = envelope_json(dev, seq, make_body(i))
        infos.append(client.publish(f"commhub/v1/{site}/{kind}/{dev}/{channel}", payload, qos=1))
        if on_progress:
            on_progress(i)
        if rate:
            ahead = (i + 1) / rate - (time.monotonic() - start)
            if ahead > 0:
                time.sleep(ahead)
    for info in infos:
        info.wait_for_publish(timeout=60)
        assert info.is_published()


class Collector:
    """Subscribes to a filter and keeps every payload."""

    def __init__(self, broker: Mosquitto, topic_filter: str, client_id: str) -> None:
        self.messages: list[tuple[str, bytes]] = []
        self._lock = threading.Lock()
        self._ready = threading.Event()
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=paho.MQTTv5)
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *a: self._ready.set()
        self.client.on_connect = lambda c, *a: c.subscribe(topic_filter, qos=1)
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()
        assert self._ready.wait(10), "subscription was not acknowledged"

    def _on_message(self, _c: Any, _u: Any, msg: paho.MQTTMessage) -> None:
        with self._lock:
            self.messages.append((msg.topic, bytes(msg.payload)))

    def close(self) -> None:
        """Disconnect."""
        self.client.disconnect()
        self.client.loop_stop()


def wait_for(predicate: Callable[[], bool], timeout: float, interval: float = 0.2) -> bool:
    """Poll until predicate() is true or the timeout passes."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()

