"""What the ingest benchmarks share: a hub process with CPU and memory read from /proc, the raw paho baseline.

Nothing here waits a fixed time for the broker: on a loaded machine a resumed session's SUBACK (or CONNACK)
can arrive only after the whole queued backlog, so every wait is for an outcome, with a generous bound.
"""

from __future__ import annotations

import functools
import json
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

from commhub.hubproc import START_TIMEOUT_S, HubProcess, metrics_text, sample_sum
from commhub.hubproc import cpu_seconds as cpu_seconds  # re-exported: the benches import them from here
from commhub.hubproc import peak_rss_mb as peak_rss_mb
from commhub.hubproc import thread_cpu_seconds as thread_cpu_seconds
from commhub.mqtt import connect_properties
from commhub.ports import free_port
from commhub.services import Influxd, Mosquitto
from hub.rules.reorder import HOLD

REPO = Path(__file__).resolve().parents[1]
DRAIN_TIMEOUT_S = 900.0


def wait_for(check: Callable[[], bool], timeout: float, what: str, poll: float = 0.1) -> None:
    """Poll until check() is true; RuntimeError naming `what` after timeout seconds."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what}: not within {timeout:.0f} s")
        time.sleep(poll)


def metric(port: int, name: str, **labels: str) -> float:
    """The sum of one metric over its label sets on a hub's /metrics (0 when absent, -1 when unreachable)."""
    text = metrics_text(port)
    return -1.0 if text is None else sample_sum(text, name, **labels) or 0.0


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


def create_session(broker: Mosquitto, client_id: str, topic_filter: str) -> None:
    """Subscribe a persistent session while the topics are quiet, so the broker queues a backlog for it."""
    s = _Session(broker, client_id, topic_filter)
    c = s.open(subscribe=True)
    try:
        if not s.subscribed.wait(START_TIMEOUT_S):
            raise RuntimeError("raw subscriber: no SUBACK on an empty session")
    finally:
        close(c)


def drain_session(broker: Mosquitto, client_id: str, topic_filter: str, n: int) -> float:
    """Resume a session made by create_session and receive its n queued messages; the seconds it took."""
    s = _Session(broker, client_id, topic_filter)
    s.target = n
    t0 = time.perf_counter()
    # The session already holds the subscription: no SUBSCRIBE (its SUBACK would queue behind the backlog).
    c = s.open(subscribe=False)
    try:
        if not s.done.wait(DRAIN_TIMEOUT_S):
            raise RuntimeError(f"raw subscriber got {s.received} of {n}")
        return time.perf_counter() - t0
    finally:
        close(c)


def measure_raw(broker: Mosquitto, topic_filter: str, queue: Callable[[], int]) -> float:
    """Raw paho QoS 1 drain rate (msg/s) of the backlog that queue() publishes (it returns the count)."""
    create_session(broker, "raw-sub", topic_filter)
    n = queue()
    elapsed = drain_session(broker, "raw-sub", topic_filter, n)
    forget_session(broker, "raw-sub")
    return n / elapsed


SAMPLE_COMMUNITY = REPO / "configs" / "community" / "sample.yaml"


@functools.cache
def _sample_model() -> dict[str, Any]:
    """The sample community's model, parsed once, when first needed (half a second of YAML: not at import)."""
    return dict(yaml.safe_load(SAMPLE_COMMUNITY.read_text()))


def sample_site() -> str:
    """The sample community's site id."""
    return str(_sample_model()["site"]["id"])


def community_site(i: int) -> str:
    """The site id of the i-th community of a bench (0: the sample community's own; others: copies of it)."""
    return sample_site() if i == 0 else f"{sample_site()}-c{i}"


def hub_config(broker: Mosquitto, influx: Influxd, workdir: Path, db: str, rules: bool,
               alerts: dict[str, Any] | None = None, site: str | None = None, **hub: Any) -> Path:
    """A hub config for the sample community (under another site id: a copy of it), the alerting chain on or off."""
    community = SAMPLE_COMMUNITY
    if site is not None and site != sample_site():
        model = _sample_model()
        community = workdir / f"community-{site}.yaml"
        community.write_text(yaml.safe_dump({**model, "site": {**model["site"], "id": site}}, allow_unicode=True))
    cfg: dict[str, Any] = {
        "community": str(community),
        "mqtt": {"host": broker.host, "port": broker.port},
        "influx": {"url": influx.url, "database": db, "transport": "auto"},
        "hub": {"worker_id": "bench-hub", "spool": {"dir": str(workdir / f"spool-{db}")},
                "snapshots_dir": str(workdir / "snapshots"), **hub},
        "alerts": {"enabled": rules, "db_path": str(_alerts_db(workdir, db)), **(alerts or {})},
    }
    path = workdir / f"hub-{db}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _alerts_db(workdir: Path, db: str) -> Path:
    """A hub_config(...) hub's SQLite alert store (unless `alerts` names a db_url)."""
    return workdir / f"alerts-{db}.db"


def alerts_url(workdir: Path, db: str, alerts: dict[str, Any] | None) -> str:
    """The alert store URL of a hub_config(...) hub."""
    return str((alerts or {}).get("db_url") or f"sqlite:///{_alerts_db(workdir, db)}")


def wait_rules_done(url: str, timeout_s: float = DRAIN_TIMEOUT_S) -> float:
    """Wait until the rules have seen every message: no late message is held in the alert store any more (a
    replay is held, and let go to the rules once quiet: hub.rules.reorder). Returns the seconds waited."""
    import sqlalchemy
    engine = sqlalchemy.create_engine(url)
    query = sqlalchemy.text("SELECT count(*) FROM rule_state WHERE rule = :hold")

    def let_go() -> bool:
        with engine.connect() as conn:  # a fresh snapshot each look
            return not conn.execute(query, {"hold": HOLD}).scalar()

    t0 = time.monotonic()
    try:
        wait_for(let_go, timeout_s, "the rules' hold let go", 0.05)
    finally:
        engine.dispose()
    return time.monotonic() - t0


class HubProc(HubProcess):
    """A benchmark's hub: its own worker id and metrics port, warnings only in its log; start() does not wait."""

    def __init__(self, cfg_path: Path, worker_id: str, log: Path) -> None:
        super().__init__(cfg_path, log, worker_id=worker_id, metrics_port=free_port(), log_level="WARNING", cwd=REPO)
        self.worker_id: str = worker_id  # always named: it names the broker session the bench forgets after

    @property
    def cfg_path(self) -> Path:
        """The config file."""
        return self.config

    @property
    def port(self) -> int:
        """The metrics port."""
        return self.metrics_port

    def start(self, wait: bool = False, timeout: float = START_TIMEOUT_S) -> None:
        """Start the process; returns at once unless wait (start several, then wait_connected each)."""
        super().start(wait, timeout)

    def metric(self, name: str, **labels: str) -> float:
        """One metric, summed over label sets (0 when absent, -1 while /metrics is unreachable)."""
        return metric(self.port, name, **labels)
