"""BaseAgent against a real mosquitto: delivery, order, historical replay, restarts, will and state, spool bounds."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from agent_helpers import Collector, TcpProxy, fast_settings, first_occurrences, make_agent, wait_until

from commhub.config import MqttConfig
from commhub.ports import free_port
from commhub.services import Mosquitto
from commhub.wire import Birth, DeviceKind, DoorOpened, GasReading, SmokeState, parse_envelope
from edge_agents.base import BaseAgent, StateDirError
from edge_agents.base.backoff import Backoff

ROOT = Path(__file__).resolve().parents[1]


# ---- pure logic --------------------------------------------------------------------------------------

def test_backoff_doubles_caps_jitters_and_resets() -> None:
    b = Backoff(0.5, 4.0, jitter=0.5, rng=random.Random(7))
    delays = [b.next() for _ in range(8)]
    ceilings = [0.5, 1.0, 2.0, 4.0, 4.0, 4.0, 4.0, 4.0]
    for d, c in zip(delays, ceilings, strict=True):
        assert c * 0.5 <= d <= c
    assert len({round(d, 6) for d in delays[3:]}) > 1, "jitter must spread the capped delays"
    b.reset()
    assert 0.25 <= b.next() <= 0.5
    assert Backoff(1.0, 1.0, jitter=0.0).next() == 1.0


def test_publish_rejects_bad_input_clearly(tmp_path: Path) -> None:
    agent = make_agent(free_port(), "s1", tmp_path)  # nobody listens: no broker needed for validation
    agent.add_device("gas1", DeviceKind.GAS)
    with pytest.raises(RuntimeError, match="start"):
        agent.publish("gas1", GasReading(lel_pct=1.0))
    agent.start()
    try:
        with pytest.raises(ValueError, match="unknown device"):
            agent.publish("nope", GasReading(lel_pct=1.0))
        with pytest.raises(ValueError, match="may not send 'door_opened'"):
            agent.publish("gas1", DoorOpened(door="d1"))
        with pytest.raises(TypeError, match="wire body"):
            agent.publish("gas1", {"type": "gas_reading", "lel_pct": 1.0})
        from datetime import datetime
        with pytest.raises(ValueError, match="timezone"):
            agent.publish("gas1", GasReading(lel_pct=1.0), ts=datetime(2026, 1, 1))
        with pytest.raises(ValueError, match="already registered"):
            agent.add_device("gas1", DeviceKind.GAS)
        with pytest.raises(ValueError):
            agent.add_device("has space", DeviceKind.GAS)
        before = agent.seq("gas1")
        from datetime import timedelta, timezone
        with pytest.raises(ValueError):  # an Envelope that fails validation takes no seq: no gap on the wire
            agent.publish("gas1", GasReading(lel_pct=1.0), ts=datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=5))))
        assert agent.seq("gas1") == before
        # A second process on the same state dir would reuse seqs: refused.
        other = make_agent(free_port(), "s1", tmp_path)
        with pytest.raises(StateDirError, match="in use"):
            other.start()
    finally:
        agent.stop()
    with pytest.raises(ValueError, match="agent name"):
        make_agent(free_port(), "s1", tmp_path / "x", name="Bad Name").start()


# ---- against a broker -------------------------------------------------------------------------------

@pytest.mark.broker
def test_births_state_and_ordered_delivery(mosquitto: Mosquitto, unique_site: str, tmp_path: Path) -> None:
    col = Collector(mosquitto.port, f"commhub/v1/{unique_site}/#").start()
    agent = make_agent(mosquitto.port, unique_site, tmp_path, name="fac1")
    agent.add_device("gas1", DeviceKind.GAS, interval_s=30)
    agent.add_device("smoke1", DeviceKind.SMOKE)
    agent.start()
    try:
        assert agent.wait_connected(60)
        seqs = [agent.publish("gas1", GasReading(lel_pct=float(i % 100))) for i in range(2000)]
        agent.publish("smoke1", SmokeState(alarm=True))
        jpeg = b"\xff\xd8fake-jpeg\xff\xd9"
        agent.publish_snapshot("smoke1", "snap1", jpeg)
        assert agent.flush(60)
        assert seqs == sorted(seqs) and len(set(seqs)) == 2000
        assert col.wait_for(lambda ms: len([m for m in ms if m.channel == "tele"]) >= 2000)
        got = col.envelopes("gas1")
        assert [e.seq for e in got] == seqs, "every reading once, in order"
        assert not any(e.historical for e in got)
        births = [m.envelope for m in col.snapshot() if m.channel == "birth"]
        by_dev = {b.device_id: b.body for b in births}
        assert set(by_dev) == {"gas1", "smoke1", "fac1"}
        gas_birth = by_dev["gas1"]
        assert isinstance(gas_birth, Birth)
        assert gas_birth.type == "birth" and gas_birth.agent == "fac1" and gas_birth.interval_s == 30
        assert gas_birth.session == agent.stats.session >= 1
        snaps = [m for m in col.snapshot() if m.topic.endswith("/snap/snap1")]
        assert [m.payload for m in snaps] == [jpeg]
        st = agent.stats
        assert st.acked == st.sent == st.published and st.spooled == 0 and st.dropped == 0
    finally:
        agent.stop()
        col.stop()
    # A clean stop leaves every state topic retained as offline, with the session it belonged to.
    late = Collector(mosquitto.port, f"commhub/v1/{unique_site}/+/+/state").start()
    assert late.wait_for(lambda ms: len(ms) >= 3)
    states = {m.envelope.device_id: (m.retain, m.state) for m in late.snapshot()}
    late.stop()
    assert set(states) == {"gas1", "smoke1", "fac1"}
    for retained, body in states.values():
        assert retained and body.status == "offline" and body.session == st.session


@pytest.mark.broker
def test_broker_restart_mid_stream_loses_nothing(mosquitto_factory: Callable[..., Mosquitto], unique_site: str,
                                                 tmp_path: Path) -> None:
    broker = mosquitto_factory()
    col = Collector(broker.port, f"commhub/v1/{unique_site}/#").start()
    agent = make_agent(broker.port, unique_site, tmp_path / "agent")
    agent.add_device("gas1", DeviceKind.GAS)
    agent.start()
    assert agent.wait_connected(60)
    published: list[tuple[int, str]] = []  # (seq, "up" | "down" | "unsure") as seen around the call
    stop = threading.Event()

    def produce() -> None:
        i = 0
        while not stop.is_set():
            before = agent.connected
            seq = agent.publish("gas1", GasReading(lel_pct=float(i % 100)))
            after = agent.connected
            published.append((seq, "up" if before and after else "down" if not (before or after) else "unsure"))
            i += 1
            time.sleep(0.001)

    t = threading.Thread(target=produce)
    t.start()
    try:
        time.sleep(0.5)
        broker.stop()  # SIGTERM: mosquitto saves the collector's queued messages
        assert wait_until(lambda: not agent.connected, 60)
        time.sleep(1.0)  # the stream goes on while the broker is down
        broker.start()
        assert wait_until(lambda: agent.connected, 60)
        time.sleep(0.5)
    finally:
        stop.set()
        t.join()
    assert agent.flush(60)
    n_down = sum(1 for _, s in published if s == "down")
    assert n_down > 100, "the test must publish while the broker is down"
    seqs = [s for s, _ in published]
    assert col.wait_for(lambda ms: set(seqs) <= {m.envelope.seq for m in ms if m.channel == "tele"}, 30), \
        "every published reading must arrive"
    got = col.envelopes("gas1")
    assert first_occurrences([e.seq for e in got]) == seqs, "order kept"
    hist = {e.seq: e.historical for e in got}
    assert all(hist[s] for s, st in published if st == "down"), "produced while down -> historical"
    assert not any(hist[s] for s, st in published if st == "up"), "produced while connected -> live"
    assert agent.stats.connects >= 2
    agent.stop()
    col.stop()


@pytest.mark.broker
def test_network_loss_loses_nothing(mosquitto: Mosquitto, unique_site: str, tmp_path: Path) -> None:
    # The cable is pulled between agent and broker: packets vanish, nothing is closed. The agent notices only
    # by its MQTT keepalive, so what it sent in between is lost on the wire and must come again from the spool.
    proxy = TcpProxy(mosquitto.port).start()
    col = Collector(mosquitto.port, f"commhub/v1/{unique_site}/#").start()
    agent = BaseAgent(MqttConfig(port=proxy.port, keepalive_s=5), unique_site, "testagent", tmp_path,
                      fast_settings())
    agent.add_device("door1", DeviceKind.DOOR_CONTROLLER)
    agent.start()
    assert agent.wait_connected(60)
    published: list[tuple[int, str]] = []
    stop = threading.Event()

    def produce() -> None:
        while not stop.is_set():
            before = agent.connected
            seq = agent.publish("door1", DoorOpened(door="main"))
            after = agent.connected
            published.append((seq, "up" if before and after else "down" if not (before or after) else "unsure"))
            time.sleep(0.005)

    t = threading.Thread(target=produce)
    t.start()
    try:
        time.sleep(0.5)
        proxy.blackhole()
        assert wait_until(lambda: not agent.connected, 60), "keepalive must detect the dead link"
        time.sleep(0.5)
        proxy.restore()
        assert wait_until(lambda: agent.connected, 60)
        time.sleep(0.3)
    finally:
        stop.set()
        t.join()
        try:
            assert agent.flush(60)
            seqs = [s for s, _ in published]
            assert col.wait_for(lambda ms: set(seqs) <= {m.envelope.seq for m in ms if m.channel == "evt"}, 20), \
                "every event must arrive, also those sent into the void before the loss was noticed"
            got = col.envelopes("door1")
            assert first_occurrences([e.seq for e in got]) == seqs, "order kept"
            hist = {e.seq: e.historical for e in got}
            assert sum(1 for _, st in published if st == "down") > 20
            assert all(hist[s] for s, st in published if st == "down")
            assert not any(hist[s] for s, st in published if st == "up")
        finally:
            agent.stop()
            col.stop()
            proxy.close()


CHILD = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    sys.path.insert(0, {tests!r})
    from agent_helpers import make_agent
    from commhub.wire import DeviceKind, GasReading
    agent = make_agent({port}, {site!r}, Path({state!r}), spool_fsync=False)
    agent.add_device("gas1", DeviceKind.GAS)
    agent.start()
    agent.wait_connected({wait})
    i = 0
    while True:
        agent.publish("gas1", GasReading(lel_pct=float(i % 100)))
        i += 1
        if i == {ready}:
            agent.sync(5)
            print("ready", flush=True)
        if i % 50 == 0:
            time.sleep(0.002)
""")


def _spawn_child(port: int, site: str, state: Path, *, wait: float, ready: int) -> subprocess.Popen[str]:
    code = CHILD.format(tests=str(ROOT / "tests"), port=port, site=site, state=str(state), wait=wait, ready=ready)
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, cwd=ROOT,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line.strip() == "ready", f"child agent did not start: {line!r}"
    return proc


@pytest.mark.broker
def test_agent_killed_and_restarted_keeps_seq_and_replays_spool(mosquitto_factory: Callable[..., Mosquitto],
                                                               unique_site: str, tmp_path: Path) -> None:
    broker = mosquitto_factory()
    col = Collector(broker.port, f"commhub/v1/{unique_site}/#").start()
    state = tmp_path / "agent"
    # 1) An agent streams while connected and is SIGKILLed mid-stream: some messages are unacknowledged.
    child = _spawn_child(broker.port, unique_site, state, wait=10, ready=3000)
    time.sleep(0.3)
    child.send_signal(signal.SIGKILL)
    child.wait()
    time.sleep(0.3)
    seen_before = {e.seq for e in col.envelopes("gas1")}
    assert seen_before, "the first agent published"
    # 2) The broker goes away; a second agent process produces while it is down, then is killed too.
    broker.stop()
    child = _spawn_child(broker.port, unique_site, state, wait=0.3, ready=500)
    child.send_signal(signal.SIGKILL)
    child.wait()
    # 3) A third start, broker back: the spool of both earlier runs is replayed, in order, without gaps.
    broker.start()
    agent = make_agent(broker.port, unique_site, state)
    agent.add_device("gas1", DeviceKind.GAS)
    agent.start()
    try:
        assert agent.wait_connected(60)
        last = agent.publish("gas1", GasReading(lel_pct=1.0))
        assert agent.flush(60)
        assert col.wait_for(lambda ms: last in {m.envelope.seq for m in ms if m.channel == "tele"}, 20)
        got = col.envelopes("gas1")
        order = first_occurrences([e.seq for e in got])
        assert order == sorted(order), "seq order kept across two crashes and a replay"
        assert order[-1] == last
        # Everything the dead agents persisted or sent is there: with births and states (which also take a
        # seq) the seqs form one run without gaps. On a slow machine more may follow `last` (a state, a heartbeat):
        # the run then goes past it, still without a gap.
        every = first_occurrences([e.seq for e in col.envelopes("gas1", ("evt", "tele", "birth", "state"))])
        assert sorted(every) == list(range(min(every), max(every) + 1)) and max(every) >= last
        assert len(order) >= 3000 + 500
        hist = {e.seq: e.historical for e in got}
        assert sum(hist.values()) >= 500, "the run produced while the broker was down is historical"
        assert not hist[last]
    finally:
        agent.stop()
        col.stop()


@pytest.mark.broker
def test_will_marks_agent_offline_with_its_session(mosquitto: Mosquitto, unique_site: str, tmp_path: Path) -> None:
    state = tmp_path / "agent"
    col = Collector(mosquitto.port, f"commhub/v1/{unique_site}/+/+/state").start()
    child = _spawn_child(mosquitto.port, unique_site, state, wait=10, ready=10)
    # The agent's own state: its devices' states may come first (on a slow machine, well before it).
    assert col.wait_for(lambda ms: any(m.envelope.device_id == "testagent" and m.state.status == "online"
                                       for m in ms), 60)
    online = [m.state for m in col.snapshot() if m.envelope.device_id == "testagent"]
    assert online and online[-1].status == "online"
    session = online[-1].session
    child.send_signal(signal.SIGKILL)
    child.wait()
    # The broker notices the dead TCP connection and publishes the will: agent offline, same session.
    assert col.wait_for(lambda ms: any(m.envelope.device_id == "testagent" and m.state.status == "offline"
                                       for m in ms), 10)
    will = [m for m in col.snapshot() if m.envelope.device_id == "testagent"][-1]
    assert will.state.session == session and will.state.status == "offline"
    col.stop()
    retained = Collector(mosquitto.port, f"commhub/v1/{unique_site}/agent/+/state").start()
    assert retained.wait_for(lambda ms: len(ms) >= 1)
    r = retained.snapshot()[0]
    assert r.retain and r.state.status == "offline"
    retained.stop()
    # The next run announces a newer session, so a late will of the old one cannot mark it offline.
    agent = make_agent(mosquitto.port, unique_site, state)
    agent.add_device("gas1", DeviceKind.GAS)
    agent.start()
    try:
        assert agent.wait_connected(60)
        assert agent.stats.session > session
    finally:
        agent.stop()


@pytest.mark.broker
def test_spool_bounds_drop_oldest_and_count(mosquitto_factory: Callable[..., Mosquitto], unique_site: str,
                                           tmp_path: Path) -> None:
    broker = mosquitto_factory()
    col = Collector(broker.port, f"commhub/v1/{unique_site}/#").start()
    broker.stop()
    agent = make_agent(broker.port, unique_site, tmp_path / "a", spool_max_bytes=64 * 1024)
    agent.add_device("gas1", DeviceKind.GAS)
    agent.start()
    try:
        seqs = [agent.publish("gas1", GasReading(lel_pct=1.0)) for _ in range(2000)]
        assert agent.sync(10)
        assert wait_until(lambda: agent.stats.dropped > 0, 60)
        st = agent.stats
        assert st.spooled_bytes <= 64 * 1024
        assert st.dropped + st.spooled == 2000
        broker.start()
        assert agent.wait_connected(60) and agent.flush(60)
        got = [e.seq for e in col.envelopes("gas1")]
        assert col.wait_for(lambda ms: len([m for m in ms if m.channel == "tele"]) >= st.spooled, 10)
        got = first_occurrences([e.seq for e in col.envelopes("gas1")])
        # The oldest were dropped; exactly the newest survive, in order, all historical.
        assert got == seqs[st.dropped:]
        assert all(e.historical for e in col.envelopes("gas1"))
    finally:
        agent.stop()
        col.stop()


def test_spool_age_bound_drops_old_messages(tmp_path: Path) -> None:
    agent = make_agent(free_port(), "s1", tmp_path, spool_max_age_s=0.3)
    agent.add_device("gas1", DeviceKind.GAS)
    agent.start()
    try:
        for _ in range(50):
            agent.publish("gas1", GasReading(lel_pct=1.0))
        assert agent.sync(5)
        assert wait_until(lambda: agent.stats.dropped == 50, 60)
        assert agent.stats.spooled == 0
    finally:
        agent.stop()


def test_seq_survives_restart_without_broker(tmp_path: Path) -> None:
    port = free_port()
    agent = make_agent(port, "s1", tmp_path, stop_timeout_s=0.2)
    agent.add_device("gas1", DeviceKind.GAS)
    agent.start()
    first = [agent.publish("gas1", GasReading(lel_pct=1.0)) for _ in range(10)]
    agent.stop()
    again = make_agent(port, "s1", tmp_path, stop_timeout_s=0.2)
    again.add_device("gas1", DeviceKind.GAS)
    again.start()
    try:
        assert again.stats.spooled == 10, "the unsent messages are still spooled"
        nxt = again.publish("gas1", GasReading(lel_pct=1.0))
        assert nxt == first[-1] + 1
    finally:
        again.stop()


def test_envelopes_are_valid_wire_messages(tmp_path: Path) -> None:
    # What the agent writes to its spool is exactly what goes on the wire: check it parses.
    import sqlite3
    agent = make_agent(free_port(), "s1", tmp_path, stop_timeout_s=0.1)
    agent.add_device("door1", DeviceKind.DOOR_CONTROLLER)
    agent.start()
    seq = agent.publish("door1", DoorOpened(door="main"))
    agent.stop()
    rows = sqlite3.connect(tmp_path / "spool.sqlite3").execute("SELECT topic, payload FROM spool").fetchall()
    topic, payload = rows[-1]
    env = parse_envelope(payload)
    assert topic == "commhub/v1/s1/door_controller/door1/evt"
    assert env.seq == seq and env.body == DoorOpened(door="main") and env.device_id == "door1"


def test_corrupt_spool_is_refused_with_a_way_out(tmp_path: Path) -> None:
    (tmp_path / "spool.sqlite3").write_bytes(b"this is not a database" * 100)
    agent = make_agent(free_port(), "s1", tmp_path)
    with pytest.raises(StateDirError, match="move the file aside"):
        agent.start()
    # The lock was released: after moving the file aside the agent starts.
    (tmp_path / "spool.sqlite3").rename(tmp_path / "spool.broken")
    agent = make_agent(free_port(), "s1", tmp_path, stop_timeout_s=0.1)
    agent.start()
    agent.stop()


@pytest.mark.broker
def test_heartbeats_for_silent_devices_stop_when_unreachable(mosquitto: Mosquitto, unique_site: str,
                                                            tmp_path: Path) -> None:
    # The whole device tree, as the hub subscribes: a message nobody subscribes to makes the agent hold.
    col = Collector(mosquitto.port, f"commhub/v1/{unique_site}/#").start()
    agent = make_agent(mosquitto.port, unique_site, tmp_path, heartbeats=True)
    agent.add_device("a", DeviceKind.SMOKE, interval_s=0.5)
    agent.add_device("b", DeviceKind.SMOKE, interval_s=0.5)
    agent.add_device("busy", DeviceKind.GAS, interval_s=0.5)
    agent.start()
    try:
        assert agent.wait_connected(60)

        def beats(device: str) -> int:
            return sum(1 for e in col.envelopes(device, ("tele",)) if e.body.type == "heartbeat")

        deadline = time.monotonic() + 2.5
        while time.monotonic() < deadline:  # "busy" talks all the time, so it needs no heartbeat
            agent.publish("busy", GasReading(lel_pct=1.0))
            time.sleep(0.1)
        assert beats("a") >= 1 and beats("b") >= 1
        assert beats("busy") == 0
        agent.set_reachable("b", False)  # its source is gone: the hub's liveness timer must be allowed to fire
        time.sleep(0.3)
        a0, b0 = beats("a"), beats("b")
        time.sleep(2.2)
        assert beats("a") > a0 and beats("b") == b0
    finally:
        agent.stop()
        col.stop()
