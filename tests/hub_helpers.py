"""Helpers for tests that run a real hub: write a config, run `commhub hub` as a process, publish raw."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import yaml
from paho.mqtt.enums import CallbackAPIVersion

from commhub.services import Influxd, Mosquitto, free_port

REPO = Path(__file__).resolve().parents[1]
SAMPLE_COMMUNITY = REPO / "configs" / "community" / "sample.yaml"


def write_config(tmp: Path, broker: Mosquitto, influx: Influxd | None, database: str,
                 community: Path = SAMPLE_COMMUNITY, site: str | None = None, **sections: dict[str, Any]) -> Path:
    """A hub config file under tmp pointing at the given services; extra sections are merged in.

    site: a copy of the community whose site id is this one (the hub refuses topics of other sites).
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


class HubProcess:
    """`commhub hub --config ...` as a child process."""

    def __init__(self, config: Path, log: Path, worker_id: str | None = None, metrics_port: int | None = None):
        self.config = config
        self.log = log
        self.worker_id = worker_id
        self.metrics_port = metrics_port or int(yaml.safe_load(config.read_text())["hub"]["metrics"]["port"])
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 120.0) -> None:
        """Start and wait until /metrics reports the MQTT connection up."""
        cmd = [sys.executable, "-m", "commhub.cli", "hub", "--config", str(self.config),
               "--metrics-port", str(self.metrics_port)]
        if self.worker_id:
            cmd += ["--worker-id", self.worker_id]
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=REPO)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"hub exited with {self.proc.returncode}: {self.log.read_text()[-2000:]}"
            if self.metric("commhub_mqtt_connected") == 1.0:
                return
            time.sleep(0.1)
        raise AssertionError(f"hub did not connect: {self.log.read_text()[-2000:]}")

    def metrics_text(self) -> str:
        """The /metrics page, or '' while it is not up."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=2) as r:
                return str(r.read().decode())
        except OSError:
            return ""

    def metric(self, name: str, **labels: str) -> float | None:
        """The value of one sample (summed over label sets that match the given labels)."""
        total, found = 0.0, False
        for line in self.metrics_text().splitlines():
            if line.startswith("#") or not line.startswith(name):
                continue
            head, _, value = line.rpartition(" ")
            metric, _, rest = head.partition("{")
            if metric != name or any(f'{k}="{v}"' not in rest for k, v in labels.items()):
                continue
            total += float(value)
            found = True
        return total if found else None

    @property
    def alive(self) -> bool:
        """Whether the process runs."""
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL, as a power cut or OOM kill would."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM and wait; returns the exit code."""
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return int(self.proc.returncode)


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

