"""The live path's cheaper batches (issue 14, round 5): the kept batch connection, and timer passes only when
something is due, under a database that fails mid-batch, timers falling due between batches, and a clock that
jumps an hour."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from alerts_helpers import T0, FakeClock, Rig, SinkDriver, accepted, env, make_config
from hub_helpers import wait_for
from sqlalchemy import event
from sqlalchemy.exc import OperationalError

from hub.alerts.store import Tx

STEP_S = 0.5  # a live batch every half second of device time
BUSY = ["gas-b2", "hydrant-b2", "elec-b3", "cam-b3"]  # devices that keep talking while the door is held


@pytest.fixture
def driver(tmp_path: Path) -> Iterator[SinkDriver]:
    d = SinkDriver(make_config(tmp_path, tick_s=60), FakeClock(T0)).start()  # the test's ticks are the only ones
    try:
        yield d
    finally:
        d.stop()


def _batch(d: SinkDriver, *bodies: tuple[str, str, dict[str, Any]]) -> None:
    d.sink.handle([accepted(d.cfg, env(dev, kind, d.clock(), **fields)) for dev, kind, fields in bodies])


def _busy(d: SinkDriver) -> None:
    """One live batch of ordinary traffic (readings and heartbeats that raise nothing)."""
    _batch(d, ("gas-b2", "gas_reading", {"lel_pct": 1.0}), ("hydrant-b2", "heartbeat", {}),
           ("elec-b3", "heartbeat", {}), ("cam-b3", "heartbeat", {}))


def _hold_the_door(d: SinkDriver) -> None:
    _batch(d, ("door-b1", "access_granted", {"door": "d1", "credential_ref": "a11ce000a11ce000", "method": "card"}))
    d.clock.advance(1.0)
    _batch(d, ("door-b1", "door_opened", {"door": "d1"}))


def _opened(d: SinkDriver, rule: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for a in d.alerts(rule=rule):
        out.extend(t for t in d.sink.store.transitions(a["id"]) if t["transition"] == "opened")
    return out


def _live(d: SinkDriver, seconds: float, every_batch: bool) -> tuple[float | None, int, int]:
    """Batches every STEP_S for `seconds`, ticking after every batch or only when the sink says a timer is due
    (as the hub's timer thread does): when door_held_open first showed, batches, timer passes."""
    first, batches, ticks = None, 0, 0
    for _ in range(int(seconds / STEP_S)):
        d.clock.advance(STEP_S)
        _busy(d)
        batches += 1
        if every_batch or d.sink.timers_due():
            d.sink.tick()
            ticks += 1
        if first is None and d.alerts(rule="door_held_open"):
            first = d.clock()
    return first, batches, ticks


def test_a_timer_falling_due_while_batches_keep_coming_fires_as_when_every_batch_ticks(tmp_path: Path) -> None:
    runs = []
    for every_batch in (True, False):
        d = SinkDriver(make_config(tmp_path / str(every_batch), tick_s=60), FakeClock(T0)).start()
        try:
            _hold_the_door(d)
            runs.append(_live(d, 60.0, every_batch))
            assert len(_opened(d, "door_held_open")) == 1
        finally:
            d.stop()
    (at_every, batches, every_ticks), (at_due, _, due_ticks) = runs
    # The hold (30 s) and its settling (3 s) end between two batches; the alert shows at the same batch.
    assert at_every is not None and T0 + 1 + 30 <= at_every <= T0 + 1 + 30 + 3 + 2 * STEP_S, (at_every, T0)
    assert at_due == at_every, (at_due, at_every)
    assert every_ticks == batches and due_ticks < batches / 4, (due_ticks, batches)  # passes were skipped


def test_a_clock_jumping_an_hour_between_batches_fires_each_due_timer_once(driver: SinkDriver) -> None:
    d = driver
    _hold_the_door(d)
    _live(d, 5.0, every_batch=False)
    assert d.alerts(rule="door_held_open") == []
    d.clock.advance(3600.0)  # the host's clock is set right: an hour passes between two batches
    _live(d, 10.0, every_batch=False)
    # The hold (30 s) and the rule's one severity step (5 min) both passed in the jump: each fires once.
    held = d.alerts(rule="door_held_open")
    assert len(held) == 1 and held[0]["count"] == 2 and held[0]["severity"] == "medium", held
    trail = [t["transition"] for t in d.sink.store.transitions(held[0]["id"])]
    assert trail == ["opened", "severity_raised"], trail
    # Every device silent for the hour is offline once, not once per pass; the busy ones are not offline.
    offline = d.alerts(rule="device_offline")
    subjects = [a["subject"] for a in offline]
    assert offline and len(subjects) == len(set(subjects)), subjects
    assert all(a["count"] == 1 for a in offline), [(a["subject"], a["count"]) for a in offline]
    assert not {a["device_id"] for a in offline} & set(BUSY)
    assert len(_opened(d, "device_offline")) == len(offline)
    before = {a["id"]: (a["count"], a["updated_at"]) for a in d.alerts()}
    _live(d, 5.0, every_batch=True)  # passes after every batch now: nothing is due twice
    assert {a["id"]: (a["count"], a["updated_at"]) for a in d.alerts() if a["id"] in before} == before


def _presses(d: SinkDriver, *devices: str) -> list[Any]:
    return [accepted(d.cfg, env(p, "panic_press", d.clock())) for p in devices]


def _sos(d: SinkDriver) -> dict[str, int]:
    return {a["device_id"]: a["count"] for a in d.alerts(rule="sos_button")}


def test_a_commit_failing_on_the_kept_connection_is_retried_on_a_fresh_one(driver: SinkDriver) -> None:
    d = driver
    d.sink.handle(_presses(d, "panic-b1"))
    kept = d.sink.store._batch_conn
    assert kept is not None  # the batch thread keeps its connection between batches
    d.sink.handle(_presses(d, "panic-b1"))
    assert d.sink.store._batch_conn is kept
    fails = [1]

    def locked(_conn: Any) -> None:
        if fails[0]:
            fails[0] -= 1
            raise OperationalError("COMMIT", {}, sqlite3.OperationalError("database is locked"))

    event.listen(d.sink.db, "commit", locked)
    try:
        d.sink.handle(_presses(d, "panic-b1", "panic-b2"))  # the rules ran and wrote; the commit fails once
    finally:
        event.remove(d.sink.db, "commit", locked)
    assert fails == [0] and d.sink.retries["other"] == 1
    assert d.sink.store._batch_conn is not kept  # the failed connection was given up
    assert _sos(d) == {"panic-b1": 3, "panic-b2": 1}  # nothing lost, nothing counted twice
    assert len(_opened(d, "sos_button")) == 2


def test_a_database_closed_under_the_kept_connection_mid_batch_replays_one_by_one(driver: SinkDriver) -> None:
    d = driver
    d.sink.handle(_presses(d, "panic-b1"))
    run = d.sink._run
    closed: list[Any] = []

    def dropped(tx: Tx, work: Any) -> None:
        run(tx, work)
        if not closed:  # after the rules ran, before their states and alerts are written: the link breaks
            closed.append(tx._raw)
            tx._raw.close()
    d.sink._run = dropped  # type: ignore[method-assign]
    d.sink.handle(_presses(d, "panic-b1", "panic-b2", "panic-b3"))
    d.sink._run = run  # type: ignore[method-assign]
    d.sink.handle(_presses(d, "panic-b2"))  # and the next batch is fine
    assert closed
    assert _sos(d) == {"panic-b1": 2, "panic-b2": 2, "panic-b3": 1}
    assert len(_opened(d, "sos_button")) == 3


@pytest.mark.broker
def test_a_crash_after_the_spool_write_before_the_rules_commit_resumes_on_restart(
        tmp_path: Path, mosquitto: Any, unique_site: str) -> None:
    clock = FakeClock(T0)
    rig = Rig(tmp_path, mosquitto, unique_site, clock, tick_s=60).start()  # the test's ticks are the only ones
    try:
        rig.publish(env("door-b1", "access_granted", clock(), door="d1", credential_ref="a11ce000a11ce000",
                        method="card"))
        sink = rig.sink
        run = sink._run

        def dies(tx: Tx, work: Any) -> None:
            run(tx, work)  # the rules ran on the opening; the process dies before their commit
            raise OperationalError("COMMIT", {}, sqlite3.OperationalError("the process died here"))
        sink._run = dies
        rig.publish(env("door-b1", "door_opened", clock.advance(1.0), door="d1"), wait=False)
        assert wait_for(lambda: rig.workers[0]._held is not None, 60), "the worker took no opening"
        spooled = b"".join(p.read_bytes() for p in (tmp_path / "spool0").rglob("*.lp"))
        assert spooled.count(b"door_opened") == 1  # in the spool before the rules' commit, never acknowledged
        rig.stop_workers()  # still failing: the batch stays unacknowledged, as with a killed process
        assert sink.store.alerts() == []

        rig.start_workers()  # the restart: the broker gives the opening back
        rig.wait_handled(1, timeout=60)
        sink = rig.sink
        clock.advance(40.0)  # past the hold (30 s) and its settling (3 s)
        assert sink.timers_due()
        sink.tick()
        held = sink.store.alerts(rule="door_held_open")
        forced = sink.store.alerts(rule="door_forced_open")
        clock.advance(10.0)
        sink.tick()
        again = sink.store.alerts(rule="door_held_open")
    finally:
        rig.stop()
    assert len(held) == 1 and held[0]["count"] == 1, held  # the opening was timed after the restart, once
    assert forced == []  # the grant committed before the crash was remembered
    assert again == held
