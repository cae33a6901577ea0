"""The alert store on PostgreSQL: the same identity and lifecycle guarantees as on SQLite, under races."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alerts_helpers import (
    SCENARIOS,
    T0,
    FakeClock,
    Postgres,
    Rig,
    SinkDriver,
    accepted,
    check_held_runs,
    check_state_keys,
    env,
    make_config,
    msg,
    race,
    wait,
)
from hub_helpers import wait_for
from sqlalchemy import text

from hub.alerts.db import VERSION_TABLE, make_engine, migrate
from hub.alerts.models import Base
from hub.alerts.store import AckRefused
from hub.rules import reorder

pytestmark = pytest.mark.postgres


@pytest.fixture(scope="module")
def pg(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Postgres]:
    server = Postgres(tmp_path_factory.mktemp("postgres"))
    if not server.available:
        # Not a skip: scripts/setup.sh installs it, so a missing server is a broken setup, not an option.
        pytest.fail("PostgreSQL server binaries are not installed (Debian: apt-get install postgresql)")
    server.start()
    yield server
    server.stop()


@pytest.fixture
def db(pg: Postgres) -> str:
    """A fresh schema state: drop our tables between tests."""
    engine = make_engine(pg.url)
    with engine.begin() as conn:
        for t in ("alert_transitions", "outbox", "rule_state", "rule_held", "silences", "alerts", "api_keys",
                  "user_sessions", "users", "login_failures", "audit_log", "audit_head", "settings", VERSION_TABLE):
            conn.exec_driver_sql(f"DROP TABLE IF EXISTS {t} CASCADE")
    engine.dispose()
    return pg.url


def test_migrations_match_the_models_on_postgres(db: str) -> None:
    engine = make_engine(db)
    migrate(engine)
    migrate(engine)  # idempotent
    with engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE})
        diff = [d for d in compare_metadata(ctx, Base.metadata) if not (isinstance(d, tuple) and d[0] == "add_index")]
    engine.dispose()
    assert diff == []


def test_held_messages_come_back_merged_in_device_time_order_on_postgres(tmp_path: Path, db: str,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(reorder, "RUN_PART", 2)
    driver = SinkDriver(make_config(tmp_path, db_url=db, tick_s=60), FakeClock(T0)).start()
    try:
        check_held_runs(driver.sink.store)
    finally:
        driver.stop()


def test_rule_state_under_odd_keys_is_kept_as_itself_on_postgres(tmp_path: Path, db: str) -> None:
    # The keys reach PostgreSQL as array elements (unnest): quotes, commas, braces, "NULL" and the rest must
    # come back as themselves, through the plain, optimistic and locking reads and the upsert and delete.
    driver = SinkDriver(make_config(tmp_path, db_url=db, tick_s=60), FakeClock(T0)).start()
    try:
        check_state_keys(driver.sink.store)
    finally:
        driver.stop()


def test_two_sinks_racing_on_postgres_make_one_alert_each(tmp_path: Path, db: str) -> None:
    cfg = make_config(tmp_path, db_url=db, tick_s=60)
    clock = FakeClock(T0)
    drivers = [SinkDriver(cfg, clock), SinkDriver(cfg, clock)]
    starters = [threading.Thread(target=d.start) for d in drivers]  # both migrate at once
    for t in starters:
        t.start()
    for t in starters:
        t.join()
    errors = race(drivers, 25, [("panic-b3", "panic_press", {}), ("smoke-b3-1", "smoke_state", {"alarm": True}),
                                ("hydrant-b2", "hydrant_pressure", {"pressure_mpa": 0.30})])
    rows = drivers[0].alerts(rule="sos_button") + drivers[0].alerts(rule="smoke_alarm")
    for d in drivers:
        d.stop()
    assert not errors
    assert len(rows) == 2 and all(r["count"] == 50 for r in rows)


def test_lifecycle_escalation_and_restart_on_postgres(tmp_path: Path, db: str) -> None:
    cfg = make_config(tmp_path, db_url=db, tick_s=60)
    clock = FakeClock(T0)
    d = SinkDriver(cfg, clock).start()
    d.run(SCENARIOS["door_forced_open"][1])
    forced = d.alerts(rule="door_forced_open")[0]
    with pytest.raises(AckRefused):
        d.sink.store.acknowledge(forced["id"], "prop-1")
    d.run([msg("door-b2", "access_granted", door="d1", credential_ref="a11ce000a11ce000", method="card"),
           msg("door-b2", "door_opened", 1, door="d1"), wait(5)])
    d.stop()
    d = SinkDriver(cfg, clock).start()
    d.wait(30)
    d.wait(900)  # forced door (high): 15 min to acknowledge
    held = d.alerts(rule="door_held_open")
    forced = d.alerts(rule="door_forced_open")[0]
    d.stop()
    assert len(held) == 1 and held[0]["severity"] == "medium"  # fired once, raised once at 5 min
    assert forced["state"] == "escalated" and forced["route"]["recipients"][0]["role"] == "police_liaison"


def test_the_kept_batch_connection_killed_by_the_server_mid_stream_loses_no_press(tmp_path: Path, db: str) -> None:
    # The batch thread keeps its connection between batches (no pool pre-ping then): a server that ends it
    # (a failover, an administrator, an idle timeout) fails the next batch's first statement; the batch is
    # run again on a fresh connection, each press counted once.
    d = SinkDriver(make_config(tmp_path, db_url=db, tick_s=60), FakeClock(T0)).start()
    try:
        def press(*devices: str) -> None:
            d.sink.handle([accepted(d.cfg, env(p, "panic_press", d.clock.advance(1.0))) for p in devices])
        press("panic-b1")
        kept = d.sink.store._batch_conn
        assert kept is not None
        pid = kept.connection.driver_connection.info.backend_pid  # type: ignore[union-attr]
        press("panic-b1")
        assert d.sink.store._batch_conn is kept
        with d.sink.db.connect() as admin:
            assert admin.execute(text("SELECT pg_terminate_backend(:p)"), {"p": pid}).scalar() is True
        press("panic-b1", "panic-b2")
        assert d.sink.store._batch_conn is not kept and d.sink.retries["other"] >= 1
        press("panic-b2")
        counts = {a["device_id"]: a["count"] for a in d.alerts(rule="sos_button")}
    finally:
        d.stop()
    assert counts == {"panic-b1": 3, "panic-b2": 2}


def test_a_door_held_open_settles_when_its_messages_reach_two_workers_out_of_order(tmp_path: Path, db: str) -> None:
    # Two sinks on one database, as two workers on one shared subscription: each gets part of a door's messages,
    # and the later batch commits first.
    cfg = make_config(tmp_path, db_url=db, tick_s=60)
    clock = FakeClock(T0)
    a, b = SinkDriver(cfg, clock).start(), SinkDriver(cfg, clock).start()
    grant = {"door": "d1", "credential_ref": "a11ce000a11ce000", "method": "card"}

    def on(d: SinkDriver, device: str, body_type: str, dt: float, **fields: Any) -> None:
        d.sink.handle([accepted(cfg, env(device, body_type, T0 + dt, **fields))])

    clock.t = T0 + 6
    # door-b1: granted, opened and closed 5 s later; the closing commits before the opening (a false alarm).
    on(a, "door-b1", "access_granted", 0, **grant)
    on(a, "door-b1", "door_closed", 5, door="d1")
    on(b, "door-b1", "door_opened", 1, door="d1")
    # door-b2: granted, opened and left open; the opening commits before its grant (a missed alarm).
    on(b, "door-b2", "door_opened", 1, door="d1")
    on(a, "door-b2", "access_granted", 0, **grant)
    b.wait(26)  # T0 + 32: the hold is over, its settle is not
    before = a.alerts(rule="door_held_open")
    a.wait(10)
    held = a.alerts(rule="door_held_open")
    forced = a.alerts(rule="door_forced_open")
    a.stop()
    b.stop()
    assert before == []
    assert [(r["device_id"], r["count"], r["opened_at"]) for r in held] == [("door-b2", 1, T0 + 34)]
    assert forced == []  # each opening had its grant


def test_a_gate_whose_share_of_a_replay_ended_first_waits_for_the_other_workers_exit(tmp_path: Path, db: str
                                                                                    ) -> None:
    # Worker a got gate g1's part of a replay (a credential's two entries) and went quiet; worker b still receives
    # gate g2's share, the credential's exit between the two entries last. Each worker ticks every timer. Before,
    # a released g1's hold on its own messages' quiet, and anti_passback fired once b's exit came too late.
    cfg = make_config(tmp_path, db_url=db, tick_s=60)
    clock = FakeClock(T0)
    a, b = SinkDriver(cfg, clock).start(), SinkDriver(cfg, clock).start()
    ref = "00000000000000aa"
    seq = {"gate-g1": 100, "gate-g2": 100}

    def on(d: SinkDriver, gate: str, dt: float, cred: str, direction: str) -> None:
        seq[gate] += 1
        d.sink.handle([accepted(cfg, env(gate, "access_granted", T0 + dt, seq=seq[gate], door="d1",
                                         credential_ref=cred, method="card", direction=direction))])

    def tick(s: float) -> None:
        clock.t += s
        a.sink.tick()
        b.sink.tick()

    for gate in ("gate-g1", "gate-g2"):
        for d in (a, b):
            d.sink.handle([accepted(cfg, env(gate, "heartbeat", T0, uptime_s=1.0))])
    clock.t = T0 + 3600
    on(b, "gate-g2", 50, "00000000000000bb", "in")
    seq["gate-g2"] += 1  # the other worker's share
    on(a, "gate-g1", 100, ref, "in")
    on(a, "gate-g1", 300, ref, "in")
    on(a, "gate-g2", 60, "00000000000000cc", "in")
    for k in range(40):  # b's share goes on for 20 s
        tick(0.5)
        on(b, "gate-g2", 400 + k, f"{k:016x}", "in")
    tick(0.5)
    on(b, "gate-g2", 200, ref, "out")
    for _ in range(90):
        tick(1.0)
    fired = a.alerts(rule="anti_passback")
    with a.sink.db.connect() as conn:
        holds = conn.execute(text("SELECT count(*) FROM rule_state WHERE rule = '_hold'")).scalar()
    a.stop()
    b.stop()
    assert fired == []
    assert holds == 0  # both gates' holds went in


@pytest.mark.broker
def test_two_hub_workers_on_postgres_one_alert_per_incident(tmp_path: Path, db: str, mosquitto: Any,
                                                            unique_site: str) -> None:
    rig = Rig(tmp_path, mosquitto, unique_site, FakeClock(T0), workers=2, db_url=db).start()
    try:
        devices = ["panic-b1", "panic-b2", "smoke-b1-1", "smoke-b3-2"]
        for rnd in range(15):
            for dev in devices:
                body = ("panic_press", {}) if dev.startswith("panic") else ("smoke_state", {"alarm": True})
                rig.publish(env(dev, body[0], T0 + rnd, **body[1]), wait=False)
        rig.wait_handled(len(devices) * 15)
        rows = [r for r in rig.sink.store.alerts() if r["rule"] in ("sos_button", "smoke_alarm")]
        per_worker = [s.handled for s in rig.sinks]
    finally:
        rig.stop()
    assert all(h > 0 for h in per_worker)
    assert len(rows) == len(devices) and all(r["count"] == 15 for r in rows)


@pytest.mark.broker
def test_two_workers_fed_the_same_devices_keep_state_whole_without_contention(tmp_path: Path, db: str,
                                                                              mosquitto: Any,
                                                                              unique_site: str) -> None:
    # Issue 14: mosquitto's shared subscription hands each device's messages to both workers in turn, so both
    # read and write the same rule states and alerts at once. The outcome must be the one a single worker
    # gives, with no deadlock and no transaction run more than twice (optimistic, then with row locks).
    # Five messages a round: the broker's round robin gives each device's messages to both workers in turn.
    doors, panics, rounds = ["door-b1", "door-b2", "fgate-b3"], ["panic-b1", "panic-b2"], 40
    engine = make_engine(db)
    with engine.connect() as conn:
        deadlocks_before = conn.execute(text("SELECT deadlocks FROM pg_stat_database "
                                             "WHERE datname = current_database()")).scalar_one()
    rig = Rig(tmp_path, mosquitto, unique_site, FakeClock(T0), workers=2, db_url=db).start()
    seen: list[set[str]] = [set(), set()]
    for i, counting in enumerate(rig.sinks):
        def spy(batch: Any, inner: Any = counting.handle, devices: set[str] = seen[i]) -> None:
            devices.update(a.envelope.device_id for a in batch)
            inner(batch)
        counting.handle = spy  # type: ignore[method-assign]
    seqs: dict[str, set[int]] = {d: set() for d in doors}
    try:
        for r in range(rounds):
            t = T0 + r * 0.05  # 2 s in all: inside every window, and within the clock tolerance
            for d in doors:
                e = env(d, "access_denied", t, door="d1", method="card", reason="unknown_credential")
                seqs[d].add(e.seq)
                rig.publish(e, wait=False)
            for p in panics:
                rig.publish(env(p, "panic_press", t), wait=False)
        rig.wait_handled(rounds * (len(doors) + len(panics)), timeout=300)
        alerts = rig.sink.store.alerts()
        sinks = [c.sink for c in rig.sinks]
        with engine.connect() as conn:
            states = {k: json.loads(v) for k, v in conn.execute(
                text("SELECT key, data FROM rule_state WHERE rule = 'invalid_credential_burst'")).all()}
    finally:
        rig.stop()
    # Both workers were fed every device (the contention this test is about).
    assert all(seen_by >= {*doors, *panics} for seen_by in seen), seen
    # Every alert once, every event counted once: one SOS alert per button with all its presses, one burst
    # alert per door fired by every denial from the third on, and each door's window holding every denial.
    sos = [a for a in alerts if a["rule"] == "sos_button"]
    assert sorted(a["device_id"] for a in sos) == sorted(panics) and all(a["count"] == rounds for a in sos)
    bursts = [a for a in alerts if a["rule"] == "invalid_credential_burst"]
    assert sorted(a["device_id"] for a in bursts) == sorted(doors)
    assert all(a["count"] == rounds - 2 for a in bursts), [(a["device_id"], a["count"]) for a in bursts]
    for d in doors:
        idents = [s[2] for s in states[f"{d}/d1"]["samples"]]
        assert sorted(idents) == sorted(f"{d}#{q}" for q in seqs[d])  # no update lost, none counted twice
    # Contention: no deadlock, and no transaction needed more than its optimistic try and one locked retry.
    assert sum(s.retries["deadlock"] for s in sinks) == 0
    assert max(s.most_attempts for s in sinks) <= 2, [s.retries for s in sinks]
    with engine.connect() as conn:
        deadlocks = conn.execute(text("SELECT deadlocks FROM pg_stat_database "
                                      "WHERE datname = current_database()")).scalar_one()
    engine.dispose()
    assert deadlocks == deadlocks_before


@pytest.mark.broker
def test_two_workers_spread_absence_and_correlation_and_a_killed_batch_loses_no_alert(
        tmp_path: Path, db: str, mosquitto: Any, unique_site: str) -> None:
    # Issue 14: each device's messages alternate between the two workers, so both write its absence deadline
    # (device_offline) and both feed one building's fire correlation (smoke_confirmed). A conflict redoes only
    # the stale keys; the outcome must be a single worker's. Only the test ticks the timers (tick_s=60), one
    # worker after the other, so the verdict never depends on which thread is faster.
    from sqlalchemy.exc import OperationalError

    clock = FakeClock(T0)
    rig = Rig(tmp_path, mosquitto, unique_site, clock, workers=2, db_url=db, tick_s=60).start()
    live, smokes, rounds = ["gas-b1", "hydrant-b2", "elec-b3"], ["smoke-b1-1", "smoke-b1-2"], 10
    seen: list[set[str]] = [set(), set()]

    def spy_on(i: int) -> None:
        counting = rig.sinks[i]

        def spy(batch: Any, inner: Any = counting.handle, devices: set[str] = seen[i]) -> None:
            devices.update(a.envelope.device_id for a in batch)
            inner(batch)
        counting.handle = spy  # type: ignore[method-assign]

    def tick_all() -> None:
        for c in rig.sinks:
            c.sink.tick()

    def alerts(rule: str) -> list[dict[str, Any]]:
        return [a for a in rig.sink.store.alerts() if a["rule"] == rule]

    try:
        for i in range(2):
            spy_on(i)
            rig.sinks[i].sink._stop.set()  # no timer thread: the test's ticks are the only ones
        n = 0
        for _ in range(rounds):
            t = clock.advance(10.0)  # 10 s apart: every sign of life moves the stored deadline
            for _twice in range(2):  # two messages a device a round: the round robin gives it to both workers
                for d in live:
                    rig.publish(env(d, "heartbeat", t), wait=False)
                for d in smokes:
                    rig.publish(env(d, "smoke_state", t, alarm=True), wait=False)
                n += len(live) + len(smokes)
            rig.wait_handled(n, timeout=120)
        last = clock()
        assert all(seen_by >= {*live, *smokes} for seen_by in seen), seen
        # Signs of life kept in memory are written back by both workers; then the deadline (3 x 60 s) comes.
        clock.advance(6.0)
        tick_all()
        clock.t = last + 180.0 - 5.0
        tick_all()
        early = [a for a in alerts("device_offline") if a["device_id"] in live]
        clock.t = last + 180.0 + 1.0
        tick_all()
        clock.advance(120.0)
        tick_all()
        offline = [a for a in alerts("device_offline") if a["device_id"] in live]
        confirmed = alerts("smoke_confirmed")
        smoke = alerts("smoke_alarm")
        sinks = [c.sink for c in rig.sinks]
        assert early == [], [a["device_id"] for a in early]
        assert sorted(a["device_id"] for a in offline) == sorted(live)  # once each, after the deadline
        assert all(a["count"] == 1 and a["opened_at"] > last + 175.0 for a in offline), offline
        # Every detector's alarm counted once, and every one after the first fed the building's incident.
        assert sorted(a["device_id"] for a in smoke) == sorted(smokes)
        assert all(a["count"] == 2 * rounds for a in smoke), [a["count"] for a in smoke]
        assert len(confirmed) == 1 and confirmed[0]["count"] == 2 * len(smokes) * rounds - 1, confirmed
        # Conflicts were redone in the transaction: none needed more than one locked retry.
        assert max(s.most_attempts for s in sinks) <= 2, [(s.retries, s.stale_keys) for s in sinks]
        assert sum(s.retries["deadlock"] for s in sinks) == 0

        # A worker dies mid-batch: its connection breaks after the rules ran, before the commit, and it stops
        # with the batch unacknowledged. The broker gives the batch back when the worker returns: each press
        # is counted once, none lost.
        dying = rig.sinks[1].sink
        run = dying._run

        def killed(tx: Any, work: Any) -> None:
            run(tx, work)
            if any(ev.type == "panic_press" for ev, _, _ in work):
                raise OperationalError("COMMIT", {}, Exception("server closed the connection unexpectedly"))
        dying._run = killed
        presses = 6
        for _ in range(presses):
            t = clock.advance(1.0)
            for p in ("panic-b1", "panic-b2"):
                rig.publish(env(p, "panic_press", t), wait=False)
        assert wait_for(lambda: rig.workers[1]._held is not None, 60), "the dying worker took no press"
        rig.stop_workers()
        rig.start_workers()
        assert wait_for(lambda: sum(a["count"] for a in alerts("sos_button")) == 2 * presses, 60), \
            [(a["device_id"], a["count"]) for a in alerts("sos_button")]
        sos = alerts("sos_button")
    finally:
        rig.stop()
    assert sorted(a["device_id"] for a in sos) == ["panic-b1", "panic-b2"]
    assert all(a["count"] == presses for a in sos), [(a["device_id"], a["count"]) for a in sos]
