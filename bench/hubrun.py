"""What the ingest benchmarks share: a hub process with CPU and memory read from /proc, the raw paho baseline.

Nothing here waits a fixed time for the broker: on a loaded machine a resumed session's SUBACK (or CONNACK)
can arrive only after the whole queued backlog, so every wait is for an outcome, with a generous bound.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import yaml
from paho.mqtt.enums import CallbackAPIVersion

from commhub.mqtt import connect_properties
from commhub.services import Influxd, Mosquitto, free_port

REPO = Path(__file__).resolve().parents[1]
_TICK = os.sysconf("SC_CLK_TCK")
START_TIMEOUT_S = 180.0  # a hub start on a loaded machine (imports, migrations, absence seeds)
DRAIN_TIMEOUT_S = 900.0


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (from /proc/<pid>/stat)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICK


def peak_rss_mb(pid: int) -> float:
    """Peak resident set size of a process (VmHWM), in MB."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return 0.0


def wait_for(check: Callable[[], bool], timeout: float, what: str, poll: float = 0.1) -> None:
    """Poll until check() is true; RuntimeError naming `what` after timeout seconds."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what}: not within {timeout:.0f} s")
        time.sleep(poll)


def metric(port: int, name: str) -> float:
    """The sum of one metric over its label sets on a hub's /metrics (-1 when unreachable)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
            text = r.read().decode()
    except OSError:
        return -1.0
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name + "{"))


def influx_count(url: str, db: str, measurement: str = "/.*/") -> int:
    """Points with a `seq` field in a database (every device message has one; dead letters do not)."""
    qs = urllib.parse.urlencode({"db": db, "q": f'SELECT count("seq") FROM {measurement}'})
    with urllib.request.urlopen(f"{url}/query?{qs}", timeout=300) as r:
        series = json.load(r)["results"][0].get("series", [])
    return sum(int(s["values"][0][1]) for s in series)


class _Session:
    """A persistent raw paho QoS 1 subscriber session that counts what arrives."""

    def __init__(self, broker: Mosquitto, client_id: str, topic_filter: str) -> None:
        self.broker, self.client_id, self.filter = broker, client_id, topic_filter
        self.received = 0
        self.target = 0
        self.done = threading.Event()
        self.connected = threading.Event()
        self.subscribed = threading.Event()

    def open(self, subscribe: bool) -> paho.Client:
        c = paho.Client(CallbackAPIVersion.VERSION2, client_id=self.client_id, protocol=paho.MQTTv5)

        def on_message(_c: Any, _u: Any, _m: Any) -> None:
            self.received += 1
            if self.target and self.received >= self.target:
                self.done.set()

        def on_connect(cl: paho.Client, *_a: Any) -> None:
            self.connected.set()
            if subscribe:
                cl.subscribe(self.filter, qos=1)

        c.on_message = on_message
        c.on_connect = on_connect
        c.on_subscribe = lambda *a: self.subscribed.set()
        c.connect(self.broker.host, self.broker.port, clean_start=False,
                  properties=connect_properties(session_expiry_s=3600))
        c.loop_start()
        return c


def close(c: paho.Client) -> None:
    """Disconnect and stop the loop."""
    c.disconnect()
    c.loop_stop()


def forget_session(broker: Mosquitto, client_id: str) -> None:
    """End a persistent session: mosquitto would otherwise keep queueing for it (shared groups included)."""
    c = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=paho.MQTTv5)
    connected = threading.Event()
    c.on_connect = lambda *a: connected.set()
    c.connect(broker.host, broker.port, clean_start=True, properties=connect_properties(session_expiry_s=0))
    c.loop_start()
    try:
        if not connected.wait(START_TIMEOUT_S):
            raise RuntimeError(f"no CONNACK for {client_id} within {START_TIMEOUT_S:.0f} s")
    finally:
        close(c)


def measure_raw(broker: Mosquitto, topic_filter: str, queue: Callable[[], int]) -> float:
    """Raw paho QoS 1 drain rate (msg/s) of the backlog that queue() publishes (it returns the count)."""
    s = _Session(broker, "raw-sub", topic_filter)
    c = s.open(subscribe=True)  # creates the persistent session
    try:
        if not s.subscribed.wait(START_TIMEOUT_S):
            raise RuntimeError("raw subscriber: no SUBACK on an empty session")
    finally:
        close(c)
    n = queue()
    s = _Session(broker, "raw-sub", topic_filter)
    s.target = n
    t0 = time.perf_counter()
    # The session already holds the subscription: no SUBSCRIBE (its SUBACK would queue behind the backlog).
    c = s.open(subscribe=False)
    try:
        if not s.done.wait(DRAIN_TIMEOUT_S):
            raise RuntimeError(f"raw subscriber got {s.received} of {n}")
        elapsed = time.perf_counter() - t0
    finally:
        close(c)
    forget_session(broker, "raw-sub")
    return n / elapsed


def hub_config(broker: Mosquitto, influx: Influxd, workdir: Path, db: str, rules: bool,
               alerts: dict[str, Any] | None = None, **hub: Any) -> Path:
    """A hub config for the sample community, the alerting chain on or off."""
    cfg: dict[str, Any] = {
        "community": str(REPO / "configs" / "community" / "sample.yaml"),
        "mqtt": {"host": broker.host, "port": broker.port},
        "influx": {"url": influx.url, "database": db, "transport": "auto"},
        "hub": {"worker_id": "bench-hub", "spool": {"dir": str(workdir / f"spool-{db}")},
                "snapshots_dir": str(workdir / "snapshots"), **hub},
        "alerts": {"enabled": rules, "db_path": str(workdir / f"alerts-{db}.db"), **(alerts or {})},
    }
    path = workdir / f"hub-{db}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


class HubProc:
    """One `commhub hub` process with its own worker id and metrics port."""

    def __init__(self, cfg_path: Path, worker_id: str, log: Path) -> None:
        self.cfg_path, self.worker_id, self.log = cfg_path, worker_id, log
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        """The process id."""
        assert self.proc is not None
        return self.proc.pid

    def start(self) -> None:
        """Start the process (returns at once)."""
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "commhub.cli", "--log-level", "WARNING", "hub", "--config", str(self.cfg_path),
                 "--worker-id", self.worker_id, "--metrics-port", str(self.port)],
                stdout=out, stderr=subprocess.STDOUT, cwd=REPO)

    def wait_connected(self) -> None:
        """Wait until /metrics says the MQTT connection is up."""
        def up() -> bool:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"hub {self.worker_id} exited; see {self.log}")
            return self.metric("commhub_mqtt_connected") == 1.0
        wait_for(up, START_TIMEOUT_S, f"hub {self.worker_id} start (see {self.log})", 0.05)

    def metric(self, name: str) -> float:
        """One metric, summed over label sets."""
        return metric(self.port, name)

    def stop(self) -> None:
        """SIGTERM and wait."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(120)
