"""A realistic feed for the ingest benchmarks: the sample community's life, published by C clients.

The simulator produces every modelled device kind in its own proportions (the same models the simulator and
the scenarios use). A backlog is published per topic by `mosquitto_pub -l` processes, several at a time;
mosquitto_pub -l sends every line to one topic, and wraps its 16-bit message id after 65,535 lines at QoS 1,
so each topic's lines are split into files below that and the files of one topic run one after another
(a topic's messages stay in order; a device's topics interleave, so its seqs reach the hub out of order).
`publish_in_order` instead queues the backlog in device-time order from one client, as a broker queues live
traffic while the hub is down (slower to publish; the publishing is before the drain, outside the figures).
"""

from __future__ import annotations

import json
import subprocess
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from paho.mqtt import client as mqtt_client

from commhub import mqtt, topics
from commhub.config import Config, MqttConfig
from commhub.services import Mosquitto
from commhub.wire import Envelope, _Body
from simulators.clock import SimClock
from simulators.engine import Simulation
from simulators.fleet import select
from simulators.models import ModelContext
from simulators.recordings import default_data_dir
from simulators.recordings import load as load_recordings
from simulators.rhythm import LocalTime

START = datetime(2026, 3, 2, 8, 0, tzinfo=UTC).timestamp()
LINES_PER_FILE = 60_000  # under mosquitto_pub's 65,535 at QoS 1
PARALLEL = 8


@dataclass
class Feed:
    """Pre-serialized messages in device-time order: (topic, payload) and the count per body type."""

    messages: list[tuple[str, bytes]] = field(default_factory=list)
    by_type: dict[str, int] = field(default_factory=dict)


class _Collect:
    """A simulator Publisher that keeps envelopes instead of sending them."""

    def __init__(self, cfg: Config, n: int) -> None:
        self.root, self.site = cfg.mqtt.root, cfg.community.site.id
        self.kinds = {d.id: d.kind.value for d in cfg.community.devices}
        self.n = n
        self.seqs: dict[str, int] = {}
        self.items: list[tuple[str, Envelope]] = []
        self.sim: Simulation | None = None

    def publish(self, device_id: str, body: _Body, *, ts: datetime | None = None) -> int:
        assert ts is not None
        seq = self.seqs.get(device_id, -1) + 1
        self.seqs[device_id] = seq
        topic = topics.device(self.root, self.site, self.kinds[device_id], device_id, body.channel)
        self.items.append((topic, Envelope(device_id=device_id, ts=ts, seq=seq, body=body)))  # type: ignore[arg-type]
        if len(self.items) >= self.n and self.sim is not None:
            self.sim.stop()
        return seq


def simulate(cfg: Config, n: int, end_at: float | None = None) -> Feed:
    """n messages of the whole community's normal life, their device times shifted to end at `end_at`."""
    fleet = select(cfg.community.devices)
    ctx = ModelContext(site=cfg.community.site.id, local=LocalTime(cfg.community.site.timezone),
                       recordings=load_recordings(default_data_dir()))
    collect = _Collect(cfg, n)
    sim = Simulation(fleet, collect, SimClock(START, 0), ctx, seed=1)
    collect.sim = sim
    sim.run()
    items = collect.items[:n]
    if len(items) < n:
        raise RuntimeError(f"the simulator produced {len(items)} of {n} messages")
    shift = (end_at if end_at is not None else time.time()) - items[-1][1].ts.timestamp()
    feed = Feed()
    for topic, env in items:
        ts = datetime.fromtimestamp(env.ts.timestamp() + shift, UTC)
        payload = json.loads(env.to_json())
        payload["ts"] = ts.isoformat().replace("+00:00", "Z")
        feed.messages.append((topic, json.dumps(payload, separators=(",", ":")).encode()))
        feed.by_type[env.body.type] = feed.by_type.get(env.body.type, 0) + 1
    return feed


def storm(feed: Feed) -> Feed:
    """The same feed with every access grant an entry: each credential re-use raises anti-passback."""
    out = Feed(by_type=dict(feed.by_type))
    for topic, payload in feed.messages:
        if b'"access_granted"' in payload:
            payload = payload.replace(b'"direction":"out"', b'"direction":"in"')
        out.messages.append((topic, payload))
    return out


def publish_backlog(broker: Mosquitto, messages: Sequence[tuple[str, bytes]], workdir: Path, tag: str,
                    parallel: int = PARALLEL, timeout_s: float = 600.0) -> None:
    """Publish every message at QoS 1 with mosquitto_pub -l processes, `parallel` at a time; waits for all."""
    by_topic: dict[str, list[bytes]] = {}
    for topic, payload in messages:
        by_topic.setdefault(topic, []).append(payload)
    jobs: list[tuple[str, list[Path]]] = []
    folder = workdir / f"feed-{tag}"
    folder.mkdir(parents=True, exist_ok=True)
    for i, (topic, lines) in enumerate(sorted(by_topic.items(), key=lambda kv: -len(kv[1]))):
        files = []
        for k in range(0, len(lines), LINES_PER_FILE):
            f = folder / f"{i}-{k}.txt"
            f.write_bytes(b"\n".join(lines[k:k + LINES_PER_FILE]) + b"\n")
            files.append(f)
        jobs.append((topic, files))
    errors: list[str] = []
    lock = threading.Lock()
    deadline = time.monotonic() + timeout_s

    def worker(w: int) -> None:
        while True:
            with lock:
                if not jobs or errors:
                    return
                topic, files = jobs.pop(0)
            for j, f in enumerate(files):
                with open(f, "rb") as stdin:
                    proc = subprocess.run(
                        ["mosquitto_pub", "-h", broker.host, "-p", str(broker.port), "-q", "1", "-l", "-t", topic,
                         "-i", f"bench-pub-{tag}-{w}-{j}", "-V", "mqttv5"], stdin=stdin, capture_output=True,
                        timeout=max(1.0, deadline - time.monotonic()))
                if proc.returncode != 0:
                    with lock:
                        errors.append(f"mosquitto_pub on {topic} exited with {proc.returncode}: "
                                      f"{proc.stderr.decode(errors='replace')[:300]}")
                    return

    threads = [threading.Thread(target=worker, args=(w,)) for w in range(parallel)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise RuntimeError(errors[0])


def publish_in_order(broker: Mosquitto, messages: Sequence[tuple[str, bytes]], tag: str,
                     timeout_s: float = 600.0) -> None:
    """Publish every message at QoS 1 from one client, in the given order; waits until the broker has them all."""
    cfg = MqttConfig(host=broker.host, port=broker.port)
    client = mqtt.make_client(f"bench-pub-{tag}", cfg)
    client.max_inflight_messages_set(1000)
    connected = threading.Event()
    client.on_connect = lambda *a: connected.set()
    mqtt.connect(client, cfg, asynchronous=True)
    client.loop_start()
    try:
        if not connected.wait(60):
            raise RuntimeError("in-order publisher: no CONNACK")
        deadline = time.monotonic() + timeout_s
        pending: deque[mqtt_client.MQTTMessageInfo] = deque()
        for topic, payload in messages:
            pending.append(client.publish(topic, payload, qos=1))
            while pending and (len(pending) > LINES_PER_FILE // 3 or pending[0].is_published()):
                # Under the 16-bit message id space: an id still in flight must not come round again.
                pending.popleft().wait_for_publish(max(0.1, deadline - time.monotonic()))
        for info in pending:
            info.wait_for_publish(max(0.1, deadline - time.monotonic()))
            if not info.is_published():
                raise RuntimeError(f"in-order publisher: not all of {len(messages)} acknowledged in {timeout_s:.0f} s")
    finally:
        client.disconnect()
        client.loop_stop()


def queue_backlog(broker: Mosquitto, messages: Sequence[tuple[str, bytes]], workdir: Path, tag: str,
                  in_order: bool) -> None:
    """Queue a backlog as a bench's `--in-order` says: device-time order from one client, else per topic."""
    if in_order:
        publish_in_order(broker, messages, tag)
    else:
        publish_backlog(broker, messages, workdir, tag)


def backlog_order(in_order: bool) -> str:
    """The `backlog_order:` figure for a bench's `--in-order`."""
    return "device time, one publisher" if in_order else "per topic, parallel mosquitto_pub"
