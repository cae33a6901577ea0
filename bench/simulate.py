"""bench simulate: the simulator's sustained publish rate for 1,000 and 10,000 devices, against raw paho.

Baseline, measured in the same run against the same broker: one raw paho client publishing pre-built
envelopes at QoS 1 until every PUBACK is back. The simulator is measured end to end through BaseAgent
(models -> envelopes -> agent spool -> QoS 1 -> PUBACK), from the first message to the last acknowledgement.
"""

from __future__ import annotations

import argparse
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from commhub import mqtt, topics
from commhub.config import Config, load
from commhub.services import Mosquitto
from commhub.wire import Envelope, _Body
from simulators.clock import SimClock
from simulators.engine import Simulation
from simulators.fleet import select
from simulators.models import ModelContext
from simulators.publish import CountingPublisher, make_agent
from simulators.recordings import default_data_dir
from simulators.recordings import load as load_recordings
from simulators.rhythm import LocalTime

START = datetime(2026, 3, 2, 8, 0, tzinfo=UTC).timestamp()
_RAW_WINDOW = 20_000


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of the benchmark."""
    parser.add_argument("--config", default="configs/commhub.yaml", help="config whose community is simulated")
    parser.add_argument("--devices", default="1000,10000", help="comma-separated device counts")
    parser.add_argument("--messages", type=int, default=100_000, help="messages per measurement")
    parser.add_argument("--no-fsync", action="store_true", help="agent spool without fsync (default: as shipped)")


class _Stopper:
    """Passes messages to the agent and stops the simulation after n of them."""

    def __init__(self, target: Any, n: int) -> None:
        self.target = target
        self.n = n
        self.count = 0
        self.sim: Simulation | None = None

    def publish(self, device_id: str, body: _Body, *, ts: datetime | None = None) -> int:
        seq = int(self.target.publish(device_id, body, ts=ts))
        self.count += 1
        if self.count >= self.n and self.sim is not None:
            self.sim.stop()
        return seq


def _simulation(cfg: Config, devices: int, publisher: Any, n: int) -> tuple[Simulation, _Stopper]:
    fleet = select(cfg.community.devices, devices)
    ctx = ModelContext(site=cfg.community.site.id, local=LocalTime(cfg.community.site.timezone),
                       recordings=load_recordings(default_data_dir()))
    stopper = _Stopper(publisher, n)
    sim = Simulation(fleet, stopper, SimClock(START, 0), ctx, seed=1)
    stopper.sim = sim
    return sim, stopper


def generation_rate(cfg: Config, devices: int, n: int) -> float:
    """Messages/s the models and loop produce with no broker at all."""
    sim, stopper = _simulation(cfg, devices, CountingPublisher(), n)
    t0 = time.perf_counter()
    sim.run()
    return stopper.count / (time.perf_counter() - t0)


def simulator_rate(cfg: Config, devices: int, n: int, state_dir: Path) -> tuple[float, float, int]:
    """(end-to-end msg/s through BaseAgent until all acknowledged, publish-call msg/s, messages)."""
    fleet = select(cfg.community.devices, devices)
    # No hub subscribes here: 0x10 No matching subscribers must not hold the publish path being measured.
    cfg = cfg.model_copy(update={"agent": cfg.agent.model_copy(update={"hold_on_no_subscribers": False})})
    agent = make_agent(cfg, fleet, name=f"bench{devices}", state_dir=state_dir)
    sim, stopper = _simulation(cfg, devices, agent, n)
    agent.start()
    try:
        if not agent.wait_connected(10) or not agent.flush(120):  # births out of the way first
            raise RuntimeError("agent did not connect or flush its births")
        t0 = time.perf_counter()
        sim.run()
        t_pub = time.perf_counter() - t0
        if not agent.flush(300):
            raise RuntimeError("agent did not get every message acknowledged in 300 s")
        t_all = time.perf_counter() - t0
    finally:
        agent.stop()
    return stopper.count / t_all, stopper.count / t_pub, stopper.count


def raw_paho_rate(cfg: Config, payloads: list[tuple[str, bytes]], n: int) -> float:
    """Raw paho QoS 1 publish rate of pre-built payloads, until every PUBACK is back."""
    client = mqtt.make_client("bench-raw-pub", cfg.mqtt)
    done = threading.Event()
    room = threading.Condition()
    acked = [0]

    def on_publish(*_a: Any) -> None:
        with room:
            acked[0] += 1
            room.notify()
        if acked[0] >= n:
            done.set()
    client.on_publish = on_publish
    mqtt.connect(client, cfg.mqtt)
    client.loop_start()
    try:
        t0 = time.perf_counter()
        for i in range(n):
            if i - acked[0] >= _RAW_WINDOW:
                # paho numbers messages with 16 bits when publish() is called: more than 65,535 queued and
                # unacknowledged messages reuse ids, and some PUBACKs are then never matched.
                with room:
                    while i - acked[0] >= _RAW_WINDOW and room.wait(timeout=30):
                        pass
            topic, payload = payloads[i % len(payloads)]
            client.publish(topic, payload, qos=1)
        if not done.wait(300):
            raise RuntimeError(f"raw paho: only {acked[0]} of {n} PUBACKs in 300 s")
        return n / (time.perf_counter() - t0)
    finally:
        client.disconnect()
        client.loop_stop()


def _payloads(cfg: Config, root: str) -> list[tuple[str, bytes]]:
    """Real envelopes from the simulator, pre-serialized, for the raw baseline."""
    class Keep:
        def __init__(self) -> None:
            self.out: list[tuple[str, bytes]] = []
            self.kinds = {d.id: d.kind.value for d in cfg.community.devices}

        def publish(self, device_id: str, body: _Body, *, ts: datetime | None = None) -> int:
            assert ts is not None
            base = device_id.split("-x")[0]
            env = Envelope(device_id=device_id, ts=ts, seq=len(self.out), body=body)  # type: ignore[arg-type]
            topic = topics.device(root, cfg.community.site.id, self.kinds[base], device_id,
                                  body.channel)
            self.out.append((topic, env.to_json()))
            return len(self.out)
    keep = Keep()
    sim, _ = _simulation(cfg, 1000, keep, 5000)
    sim.run()
    return keep.out


def run(args: argparse.Namespace) -> int:
    """Start a broker, measure the baseline and the simulator, print `name: value` lines and the ratio."""
    counts = [int(x) for x in args.devices.split(",") if x.strip()]
    with tempfile.TemporaryDirectory(prefix="bench-simulate-") as tmp:
        broker = Mosquitto(Path(tmp) / "mosquitto")
        broker.start()
        try:
            base = load(args.config)
            agent_cfg = base.agent.model_copy(update={"spool_fsync": not args.no_fsync})
            cfg = base.model_copy(update={"mqtt": base.mqtt.model_copy(update={"port": broker.port}),
                                          "agent": agent_cfg})
            payloads = _payloads(cfg, cfg.mqtt.root)
            raw = raw_paho_rate(cfg, payloads, args.messages)
            print(f"raw_paho_qos1_msgs_per_s: {raw:.0f}", flush=True)
            last = 0.0
            for n_dev in counts:
                gen = generation_rate(cfg, n_dev, args.messages)
                print(f"sim_{n_dev}_generate_only_msgs_per_s: {gen:.0f}", flush=True)
                e2e, calls, sent = simulator_rate(cfg, n_dev, args.messages, Path(tmp) / f"agent{n_dev}")
                print(f"sim_{n_dev}_devices: {n_dev}", flush=True)
                print(f"sim_{n_dev}_messages: {sent}", flush=True)
                print(f"sim_{n_dev}_publish_call_msgs_per_s: {calls:.0f}", flush=True)
                print(f"sim_{n_dev}_sustained_msgs_per_s: {e2e:.0f}", flush=True)
                print(f"sim_{n_dev}_ratio_to_raw: {e2e / raw:.3f}", flush=True)
                last = e2e
            print(f"ratio: {last / raw:.3f}")
        finally:
            broker.stop()
    return 0
