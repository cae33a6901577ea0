"""Issue 13's second property (hypothesis), on real services: a real edge agent process streams readings, SOS
presses and gas leaks while a drawn schedule SIGKILLs the hub, restarts the broker (SIGTERM or SIGKILL), stops
InfluxDB and cuts the alert database (PostgreSQL behind a TcpProxy), overlapping as drawn. In the end every
message the agent produced is in InfluxDB exactly once and every expected alert exists exactly once.

The one loss the README admits ("Limits"): a broker SIGKILL loses what the broker accepted in the last
`autosave_interval` and had not delivered to a hub worker. Messages the broker acknowledged to the agent in
that window before a SIGKILL (plus a margin) may be missing; nothing else may.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import pytest
from alerts_helpers import Postgres
from conftest import influx_query
from hub_helpers import REPO, write_config
from hypothesis import HealthCheck, Phase, example, given, settings
from hypothesis import strategies as st
from robust_helpers import HubRunner, TcpProxy, spooled_seqs
from sqlalchemy.exc import OperationalError

from commhub.config import load
from commhub.ports import free_port
from commhub.services import AUTOSAVE_INTERVAL_S, Influxd, Mosquitto
from commhub.wire import DeviceKind
from hub.alerting import AlertingSink

pytestmark = [pytest.mark.services, pytest.mark.postgres]

WAIT = 240.0  # generous: the machine is shared; no verdict depends on its speed
STREAM_S = 5.0
STEP_S = 0.25
# Each example takes 15-35 s on a loaded 2-core machine (a hub process starts in 5-15 s there): two drawn
# schedules plus the explicit one keep the test within its budget. More, locally: COMMHUB_INTERLEAVE_EXAMPLES=9.
EXAMPLES = int(os.environ.get("COMMHUB_INTERLEAVE_EXAMPLES", "2"))
FAULTS = ("hub_kill", "broker_term", "broker_kill", "influx_down", "alertdb_cut")
# A SIGKILL loses what the broker accepted in its last autosave interval; the margin covers the commit
# interval of the agent's spool, our poll of it and the broker's save itself.
LOSS_WINDOW_S = AUTOSAVE_INTERVAL_S + 1.5


PANIC_AT = (1.25, 3.75)  # one press per button, two buttons per example


def _lel(i: int, t: float) -> float:
    """Gas levels over the stream: one stays low, two rise and stay (one alert each), one rises and clears."""
    if i == 1:
        return 25.0 if t >= 1.5 else 4.0
    if i == 2:
        return 30.0 if t >= 3.0 else 5.0
    if i == 3:
        return 40.0 if 1.0 <= t < 2.0 else 2.0  # opens, then clears below 10: still one incident
    return 3.0


def _plan(gas: list[str], panic: list[str]) -> list[list[Any]]:
    """[offset_s, device_id, kind, body] in publishing order: readings every STEP_S, one press per button."""
    plan: list[list[Any]] = []
    t = 0.0
    while t < STREAM_S:
        plan += [[t, d, "gas", {"type": "gas_reading", "lel_pct": _lel(i, t)}] for i, d in enumerate(gas)]
        t = round(t + STEP_S, 3)
    plan += [[at, d, "panic_button", {"type": "panic_press"}] for d, at in zip(panic, PANIC_AT, strict=True)]
    return sorted(plan, key=lambda p: p[0])


@dataclass
class Services:
    """One broker, influxd, PostgreSQL and hub process for every example; each example has its own devices."""

    tmp: Path
    broker: Mosquitto
    influx: Influxd
    pg: Postgres
    proxy: TcpProxy
    config: Path
    dbname: str
    hub: HubRunner
    gas: list[str]
    panic: list[str]


@pytest.fixture(scope="module")
def services(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Services]:
    pg = Postgres(tmp_path_factory.mktemp("postgres"))
    if not pg.available:
        pytest.fail("PostgreSQL server binaries are not installed (Debian: apt-get install postgresql)")
    broker = Mosquitto(tmp_path_factory.mktemp("mosquitto"))  # the persistence settings we ship (autosave 5 s)
    influx = Influxd(tmp_path_factory.mktemp("influxd"))
    tmp = tmp_path_factory.mktemp("interleave")
    pg.start()
    broker.start()
    influx.start()
    proxy = TcpProxy(pg.port).up()
    uid = uuid.uuid4().hex[:8]
    dbname = f"il_{uid}"
    with psycopg.connect(f"host=127.0.0.1 port={pg.port} user=postgres dbname=postgres", autocommit=True) as c:
        c.execute(f"CREATE DATABASE {dbname}")
    # The hub reaches the alert database through the proxy, the one link an outage cuts.
    cfg = write_config(
        tmp, broker, influx, dbname,
        mqtt={"host": broker.host, "port": broker.port, "root": f"r{uid}"},
        hub={"worker_id": f"hub-{uid}", "metrics": {"port": free_port()}},
        alerts={"enabled": True, "db_url": f"postgresql+psycopg://postgres@127.0.0.1:{proxy.port}/{dbname}"},
        agent={"heartbeats": False, "backoff_initial_s": 0.2, "backoff_max_s": 1.0})
    devices = load(cfg).community.devices
    hub = HubRunner(cfg, tmp / "hub.log")
    try:
        yield Services(tmp, broker, influx, pg, proxy, cfg, dbname, hub,
                       [d.id for d in devices if d.kind is DeviceKind.GAS],
                       [d.id for d in devices if d.kind is DeviceKind.PANIC_BUTTON])
    finally:
        if hub.alive:
            hub.kill()
        proxy.down()
        broker.stop(kill=True)
        influx.stop(kill=True)
        pg.stop()


@dataclass
class Timeline:
    """Plays a fault schedule: each resource is down while any of its faults lasts; the hub is supervised."""

    s: Services
    hub: HubRunner
    spool_file: Path
    down: dict[str, int] = field(default_factory=lambda: dict.fromkeys(("hub", "broker", "influx", "alertdb"), 0))
    # Before each broker SIGKILL: (window start, the kill, what the agent's spool held at the start).
    windows: list[tuple[float, float, set[tuple[str, int]]]] = field(default_factory=list)
    terms: int = 0  # broker SIGTERMs
    hub_crashes: int = 0  # exits of the hub by itself
    log: list[str] = field(default_factory=list)

    def fault(self, kind: str, start: bool) -> None:
        res = {"hub_kill": "hub", "broker_term": "broker", "broker_kill": "broker", "influx_down": "influx",
               "alertdb_cut": "alertdb"}[kind]
        self.log.append(f"{time.time():.2f} {kind} {'start' if start else 'end'}")
        if start:
            self.down[res] += 1
            if res == "hub" and self.hub.alive:
                self.hub.kill()
            elif res == "broker" and self.s.broker.running:
                self.terms += kind == "broker_term"
                self.s.broker.stop(kill=kind == "broker_kill")
            elif res == "influx" and self.s.influx.running:
                self.s.influx.stop()
            elif res == "alertdb" and self.down[res] == 1:
                self.s.proxy.down()
            return
        self.down[res] -= 1
        if self.down[res]:
            return
        if res == "broker":
            self.s.broker.start()
        elif res == "influx":
            self.s.influx.start()
        elif res == "alertdb":
            self.s.proxy.up()
        elif res == "hub":
            self.hub.launch()

    def supervise(self) -> None:
        """Restart a hub that exited by itself (as `restart: unless-stopped` in docker-compose does)."""
        if not self.down["hub"] and not self.hub.alive:
            self.log.append(f"{time.time():.2f} hub exited by itself ({self.hub.proc and self.hub.proc.returncode})")
            self.hub_crashes += 1
            self.hub.launch()

    def open_window(self) -> None:
        """A broker SIGKILL is coming: whatever the broker has not acknowledged to the agent by now may be lost."""
        now = time.time()
        self.windows.append((now, now + LOSS_WINDOW_S, spooled_seqs(self.spool_file)))

    def allowed(self, produced: list[tuple[str, int, float]]) -> set[tuple[str, int]]:
        """What a broker SIGKILL may have lost: unacknowledged at a window's start (in the agent's spool, or
        published later; a second's margin for the agent's group commit)."""
        out: set[tuple[str, int]] = set()
        for start, kill, spooled in self.windows:
            out |= spooled | {(d, s) for d, s, at in produced if start - 1.0 <= at <= kill + 1.0}
        return out

    def play(self, schedule: list[tuple[float, str, float]], t0: float) -> None:
        events: list[tuple[float, int, str, bool]] = []
        for offset, kind, duration in schedule:
            events.append((t0 + offset, 1, kind, True))
            events.append((t0 + offset + duration, 0, kind, False))
            if kind == "broker_kill":
                events.append((t0 + offset - LOSS_WINDOW_S, 2, "window", True))
        events.sort()
        for at, _, kind, start in events:
            while time.monotonic() < at:
                self.supervise()
                time.sleep(min(0.1, max(0.0, at - time.monotonic())))
            if kind == "window":
                self.open_window()
            else:
                self.fault(kind, start)
        assert not any(self.down.values())


def _produced(out: Path) -> list[tuple[str, int, float]]:
    if not out.exists():
        return []
    rows = []
    for line in out.read_text().splitlines():
        if line.startswith("["):
            d, s, _, at = json.loads(line)
            rows.append((d, int(s), float(at)))
    return rows


def _stored(url: str, db: str, measurement: str) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {}
    try:
        series = influx_query(url, db, f'SELECT "seq" FROM {measurement} GROUP BY device_id')
    except OSError:
        return out  # influxd is restarting
    except AssertionError as e:
        if "database not found" in str(e):
            return out  # nothing written yet
        raise
    for s in series:
        out[s["tags"]["device_id"]] = [int(v[1]) for v in s["values"]]
    return out


def _alerts(pg: Postgres, dbname: str) -> dict[int, tuple[str, str]]:
    """Every alert by id: (rule, device or subject)."""
    with psycopg.connect(f"host=127.0.0.1 port={pg.port} user=postgres dbname={dbname}") as c:
        try:
            rows = c.execute("SELECT id, rule, coalesce(device_id, subject) FROM alerts").fetchall()
        except psycopg.errors.UndefinedTable:
            return {}
    return {int(i): (r, d) for i, r, d in rows}


def _wait(pred: Callable[[], bool], what: str, diag: Callable[[], str], timeout: float = WAIT) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, f"timed out waiting for {what}\n{diag()}"
        time.sleep(0.3)


_schedules = st.lists(
    st.tuples(st.integers(0, int(STREAM_S * 2) - 2).map(lambda h: h / 2), st.sampled_from(FAULTS),
              st.integers(1, 8).map(lambda h: h / 2)),
    min_size=1, max_size=3)


@settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
          phases=[Phase.explicit, Phase.generate],
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
# Every fault, overlapping; the hub restarts while the alert database is cut (longer than a hub takes to start).
@example(schedule=[(0.0, "alertdb_cut", 9.0), (0.5, "hub_kill", 0.5), (2.0, "broker_term", 1.0),
                   (2.5, "influx_down", 2.0), (4.0, "broker_kill", 0.5)])
@given(schedule=_schedules)
def test_any_interleaving_of_faults_loses_nothing(services: Services, schedule: list[tuple[float, str, float]]) -> None:
    s, hub = services, services.hub
    uid = uuid.uuid4().hex[:8]
    tmp = s.tmp / uid
    tmp.mkdir()
    # Devices of its own: an earlier example's alerts (open or resolved) cannot absorb this one's.
    assert len(s.panic) >= len(PANIC_AT), "the sample community has no panic buttons left for more examples"
    gas, panic = [s.gas.pop() for _ in range(4)], [s.panic.pop() for _ in range(len(PANIC_AT))]
    plan = _plan(gas, panic)
    plan_file, out, state, go = tmp / "plan.json", tmp / "produced.jsonl", tmp / "agent", tmp / "go"
    plan_file.write_text(json.dumps(plan))
    if not hub.alive:
        hub.launch()
    before = set(_alerts(s.pg, s.dbname))
    agent_log = open(tmp / "agent.log", "ab")  # noqa: SIM115 - closed in finally
    agent = subprocess.Popen(
        [sys.executable, str(REPO / "tests" / "robust_helpers.py"), "--config", str(s.config), "--name", f"a{uid}",
         "--state-dir", str(state), "--plan", str(plan_file), "--out", str(out), "--go", str(go)],
        stdout=agent_log, stderr=agent_log, cwd=REPO)
    tl = Timeline(s, hub, state / "spool.sqlite3")
    phases = [("begin", time.monotonic())]
    admitted = -1
    mark = (s.tmp / "hub.log").stat().st_size if (s.tmp / "hub.log").exists() else 0

    def diag() -> str:
        with open(s.tmp / "hub.log", "rb") as f:
            f.seek(mark)
            tail = f.read().decode(errors="replace")[-3000:]
        return (f"schedule {schedule}\nevents {tl.log}\nhub log:\n{tail}\n"
                f"agent log:\n{(tmp / 'agent.log').read_text(errors='replace')[-2000:]}")

    try:
        # Both processes start together; the stream begins once the hub has subscribed.
        _wait(lambda: hub.metric("commhub_mqtt_connected") == 1, "the hub to subscribe", diag)
        go.touch()
        _wait(lambda: out.exists(), "the agent to start its stream", diag)
        phases.append(("started", time.monotonic()))
        tl.play(schedule, time.monotonic())
        phases.append(("faults played", time.monotonic()))

        def flushed() -> bool:
            tl.supervise()
            return "flushed" in out.read_text()
        _wait(flushed, "the agent to empty its spool", diag)
        assert agent.wait(WAIT) == 0, diag()
        phases.append(("agent flushed", time.monotonic()))
        produced = _produced(out)
        assert [d for d, _, _ in produced] == [p[1] for p in plan]  # the agent played the whole plan, in order
        allowed = tl.allowed(produced)
        must = {(d, q) for d, q, _ in produced} - allowed

        def stored() -> dict[str, list[int]]:
            got = _stored(s.influx.url, s.dbname, "gas_reading") | _stored(s.influx.url, s.dbname, "panic_press")
            return {d: qs for d, qs in got.items() if d in gas or d in panic}

        def caught_up() -> bool:
            tl.supervise()
            have = {(d, q) for d, qs in stored().items() for q in qs}
            # Subscribed too: a restarted hub gets what the broker queued for its session only after its SUBACK.
            return must <= have and hub.metric("commhub_spool_points") == 0 and hub.metric(
                "commhub_ingest_held") == 0 and hub.metric("commhub_mqtt_connected") == 1
        _wait(caught_up, "every message in InfluxDB and the hub caught up", diag)
        phases.append(("stored", time.monotonic()))
        body = {(d, q): p[3] for p, (d, q, _) in zip(plan, produced, strict=True)}

        def expected_for(got: dict[str, list[int]]) -> set[tuple[str, str]]:
            # Expected alerts follow what was stored (a message lost as the README admits takes its alert along).
            out = {("sos_button", d) for d in panic if got.get(d)}
            return out | {("gas_leak", d) for d in gas if any(body[(d, q)]["lel_pct"] >= 20 for q in got.get(d, []))}
        # mosquitto 2.0.11 publishes every connected client's will when it shuts down (SIGTERM), and again when
        # the session is taken over after the restart, Will Delay Interval or not. The rule's will grace (20 s)
        # drops it when the agent is back in time; a schedule can keep it away longer, and then the agent really
        # was cut off: one device_offline per broker SIGTERM at most; never otherwise.
        will = ("device_offline", f"device:agent/a{uid}")

        def new_alerts() -> list[tuple[str, str]]:
            return [a for i, a in _alerts(s.pg, s.dbname).items() if i not in before]

        def settled() -> bool:
            # A message a broker SIGKILL may have lost can still come (the broker had queued it for the hub's
            # session, and a restarted hub gets it once it subscribes): wait until the alerts and the store agree.
            return caught_up() and {a for a in new_alerts() if a != will} == expected_for(stored())
        _wait(settled, "the alerts to match what was stored", diag)
        phases.append(("alerts", time.monotonic()))
        got = stored()
        sent: dict[str, set[int]] = {}
        for d, q, _ in produced:
            sent.setdefault(d, set()).add(q)
        admitted = 0
        for d, seqs in sent.items():
            got_seqs = got.get(d, [])
            admitted += len(seqs - set(got_seqs))
            assert len(got_seqs) == len(set(got_seqs)), f"{d}: a seq stored twice\n{diag()}"
            assert set(got_seqs) <= seqs, f"{d}: stored seqs the agent never sent\n{diag()}"
            lost = {(d, q) for q in seqs - set(got_seqs)}
            assert not lost - allowed, (
                f"{d}: {len(lost - allowed)} messages lost outside a broker SIGKILL's autosave window\n{diag()}")
        alerts = new_alerts()
        assert sorted(a for a in alerts if a != will) == sorted(expected_for(got)), f"{alerts}\n{diag()}"  # each once
        assert alerts.count(will) <= tl.terms, f"{alerts}\n{diag()}"
        assert tl.hub_crashes == 0, diag()
    finally:
        if agent.poll() is None:
            agent.kill()
            agent.wait()
        agent_log.close()
        print(f"schedule {schedule}: " + ", ".join(f"{n} {t - phases[0][1]:.1f}s" for n, t in phases[1:])
              + f"; lost as the README admits: {admitted}; hub exits: {tl.hub_crashes}",
              file=sys.stderr)
        for svc in (s.broker, s.influx):
            if not svc.running:
                svc.start()
        if not s.proxy.is_up:
            s.proxy.up()


def test_the_alerting_sink_starts_while_its_database_is_cut(services: Services) -> None:
    """What the property found: `commhub hub` exited when the alert database was unreachable at start."""
    s = services
    sink = AlertingSink(load(s.config), mqtt=False)
    s.proxy.down()
    try:
        sink.start()  # logs and goes on, instead of raising OperationalError out of the worker's start()
        with pytest.raises(OperationalError):
            sink.handle([])  # the worker holds its batch, unacknowledged, while the database is unreachable
    finally:
        s.proxy.up()
    sink.handle([])  # the database is back: the schema is migrated and timers seeded on the first batch
    sink.tick()
    sink.stop()
