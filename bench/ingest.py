"""`commhub bench ingest`: the hub's sustained MQTT -> InfluxDB rate against raw paho QoS 1 subscribe, same run.

Both sides drain the same backlog: N messages are queued in mosquitto for a persistent session (published by
several `mosquitto_pub` processes, a C client, so the publisher is not what we measure), then the subscriber
connects and we time how long it takes to receive them all. For the hub, "done" means every message is
validated, spooled and written to InfluxDB, and a final InfluxQL count must equal N.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import yaml
from paho.mqtt.enums import CallbackAPIVersion

from commhub.mqtt import connect_properties
from commhub.services import Influxd, Mosquitto, free_port

REPO = Path(__file__).resolve().parents[1]
PUBLISHERS = 8
SITE = "bench"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options."""
    parser.add_argument("--messages", type=int, default=200_000, help="messages per measurement")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")


def _payloads(n: int, dev: str, start_seq: int) -> str:
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    lines = []
    for i in range(n):
        ts = (t0 + timedelta(milliseconds=start_seq + i)).isoformat().replace("+00:00", "Z")
        lines.append(json.dumps({"schema": 1, "device_id": dev, "ts": ts, "seq": start_seq + i,
                                 "body": {"type": "gas_reading", "lel_pct": round((i % 500) / 10, 1)}}))
    return "\n".join(lines) + "\n"


def _queue_backlog(broker: Mosquitto, n: int, workdir: Path, tag: str) -> None:
    """Publish n messages at QoS 1 with PUBLISHERS mosquitto_pub processes (each < 65,535: mid wraps)."""
    per = n // PUBLISHERS
    procs = []
    for p in range(PUBLISHERS):
        dev = f"gas-bench-{p}"
        feed = workdir / f"feed-{tag}-{p}.txt"
        feed.write_text(_payloads(per, dev, 0))
        topic = f"commhub/v1/{SITE}/gas/{dev}/tele"
        with open(feed, "rb") as stdin:
            procs.append(subprocess.Popen(
                ["mosquitto_pub", "-h", broker.host, "-p", str(broker.port), "-q", "1", "-l", "-t", topic,
                 "-i", f"bench-pub-{tag}-{p}", "-V", "mqttv5"], stdin=stdin))
    for proc in procs:
        if proc.wait(300) != 0:
            raise RuntimeError(f"mosquitto_pub exited with {proc.returncode}")


def _raw_session(broker: Mosquitto, client_id: str, received: list[int], done: threading.Event,
                 n: int) -> paho.Client:
    c = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=paho.MQTTv5)
    subscribed = threading.Event()

    def on_message(_c: Any, _u: Any, _m: Any) -> None:
        received[0] += 1
        if received[0] >= n:
            done.set()

    c.on_message = on_message
    c.on_subscribe = lambda *a: subscribed.set()
    c.on_connect = lambda cl, *a: cl.subscribe(f"commhub/v1/{SITE}/#", qos=1)
    c.connect(broker.host, broker.port, clean_start=False, properties=connect_properties(session_expiry_s=3600))
    c.loop_start()
    if not subscribed.wait(10):
        raise RuntimeError("raw subscriber: no SUBACK")
    return c


def _forget_session(broker: Mosquitto, client_id: str) -> None:
    """End a persistent session: mosquitto would otherwise keep queueing for it (shared groups included)."""
    c = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=paho.MQTTv5)
    c.connect(broker.host, broker.port, clean_start=True, properties=connect_properties(session_expiry_s=0))
    c.loop_start()
    time.sleep(0.2)
    c.disconnect()
    c.loop_stop()


def measure_raw(broker: Mosquitto, n: int, workdir: Path) -> float:
    """Raw paho QoS 1 drain rate of an n-message backlog (msg/s)."""
    received, done = [0], threading.Event()
    c = _raw_session(broker, "raw-sub", received, done, n)  # creates the persistent session
    c.disconnect()
    c.loop_stop()
    _queue_backlog(broker, n, workdir, "raw")
    received[0] = 0
    t0 = time.perf_counter()
    c = _raw_session(broker, "raw-sub", received, done, n)
    if not done.wait(300):
        raise RuntimeError(f"raw subscriber got {received[0]} of {n}")
    elapsed = time.perf_counter() - t0
    c.disconnect()
    c.loop_stop()
    _forget_session(broker, "raw-sub")
    return n / elapsed


def _metric(port: int, name: str) -> float:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as r:
            text = r.read().decode()
    except OSError:
        return -1.0
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith(name + "{"))


def _influx_count(url: str, db: str) -> int:
    qs = urllib.parse.urlencode({"db": db, "q": 'SELECT count("seq") FROM "gas_reading"'})
    with urllib.request.urlopen(f"{url}/query?{qs}", timeout=120) as r:
        series = json.load(r)["results"][0].get("series", [])
    return int(series[0]["values"][0][1]) if series else 0


def _hub_config(broker: Mosquitto, influx: Influxd, workdir: Path, db: str) -> Path:
    cfg = {
        "community": str(REPO / "configs" / "community" / "sample.yaml"),
        "mqtt": {"host": broker.host, "port": broker.port},
        "influx": {"url": influx.url, "database": db, "transport": "auto"},
        "hub": {"worker_id": "bench-hub", "spool": {"dir": str(workdir / "spool")},
                "snapshots_dir": str(workdir / "snapshots")},
    }
    path = workdir / f"hub-{db}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


class _Hub:
    """One `commhub hub` process with its own worker id and metrics port."""

    def __init__(self, cfg_path: Path, worker_id: str, log: Path) -> None:
        self.cfg_path, self.worker_id, self.log = cfg_path, worker_id, log
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "commhub.cli", "--log-level", "WARNING", "hub", "--config", str(self.cfg_path),
                 "--worker-id", self.worker_id, "--metrics-port", str(self.port)],
                stdout=out, stderr=subprocess.STDOUT, cwd=REPO)

    def wait_connected(self) -> None:
        deadline = time.monotonic() + 30
        while _metric(self.port, "commhub_mqtt_connected") != 1.0:
            if time.monotonic() > deadline or (self.proc is not None and self.proc.poll() is not None):
                raise RuntimeError(f"hub {self.worker_id} did not start; see {self.log}")
            time.sleep(0.05)

    def metric(self, name: str) -> float:
        return _metric(self.port, name)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(60)


def measure_hub(broker: Mosquitto, influx: Influxd, n: int, workdir: Path, workers: int = 1,
                db: str = "bench") -> dict[str, float]:
    """The drain rate of an n-message backlog by `workers` hub processes on one shared subscription (msg/s)."""
    cfg_path = _hub_config(broker, influx, workdir, db)
    hubs = [_Hub(cfg_path, f"bench-{db}-{i}", workdir / f"hub-{db}-{i}.log") for i in range(workers)]
    for h in hubs:  # first start creates the persistent sessions, so the backlog queues for them
        h.start()
    for h in hubs:
        h.wait_connected()
    for h in hubs:
        h.stop()
    _queue_backlog(broker, n, workdir, db)
    t0 = time.perf_counter()
    for h in hubs:
        h.start()
    received_at = stored_at = 0.0
    try:
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            if not received_at and sum(h.metric("commhub_points_spooled_total") for h in hubs) >= n:
                received_at = time.perf_counter() - t0
            if sum(h.metric("commhub_points_written_total") for h in hubs) >= n:
                stored_at = time.perf_counter() - t0
                break
            time.sleep(0.1)  # scraping /metrics costs the hub CPU: not too often
        else:
            raise RuntimeError("the hub did not store the backlog within 600 s")
        invalid = sum(h.metric("commhub_messages_invalid_total") for h in hubs)
        dupes = sum(h.metric("commhub_messages_duplicate_total") for h in hubs)
    finally:
        for h in hubs:
            h.stop()
            _forget_session(broker, h.worker_id)
    stored = _influx_count(influx.url, db)
    return {"hub_received_msgs_per_s": n / received_at, "hub_stored_msgs_per_s": n / stored_at,
            "hub_points_in_influxdb": stored, "hub_invalid": invalid, "hub_duplicates": dupes}


def run(args: argparse.Namespace) -> int:
    """Measure and print."""
    n = args.messages - args.messages % PUBLISHERS
    workdir = Path(tempfile.mkdtemp(prefix="commhub-bench-ingest-"))
    broker = Mosquitto(workdir / "mosquitto")
    influx = Influxd(workdir / "influxd")
    broker.start()
    influx.start()
    try:
        raw = measure_raw(broker, n, workdir)
        hub = measure_hub(broker, influx, n, workdir)
    finally:
        broker.stop()
        influx.stop()
    print(f"messages: {n}")
    print(f"raw_paho_qos1_msgs_per_s: {raw:.0f}")
    for k, v in hub.items():
        print(f"{k}: {v:.0f}")
    accounted = hub["hub_points_in_influxdb"] == n and hub["hub_invalid"] == 0
    print(f"all_accounted_for: {'yes' if accounted else 'NO'}")
    print(f"ratio: {hub['hub_stored_msgs_per_s'] / raw:.2f}")
    if not args.keep:
        import shutil
        shutil.rmtree(workdir, ignore_errors=True)
    return 0 if accounted else 1
