"""The rule-state cache (SQLite): a worker reads its own committed states from memory, sees another worker's
change by the version check, and keeps nothing a rolled-back transaction changed."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from alerts_helpers import PASSER, FakeClock, SinkDriver, accepted, env, make_config
from sqlalchemy import text
from sqlalchemy.exc import OperationalError

from hub.alerts.store import Tx

KEY = ("anti_passback", PASSER)


def _entry(d: SinkDriver, direction: str, dt: float = 0.0) -> None:
    d.send("gate-g1", "access_granted", dt, door="d1", credential_ref=PASSER, method="card", direction=direction)


class _Reads:
    """Counts the rule-state SELECTs a sink's batches send to SQLite (they go to the driver, past SQLAlchemy)."""

    def __init__(self, d: SinkDriver) -> None:
        self.n = 0
        conn = d.sink.store._batch_conn  # the batch thread's connection, kept between batches
        assert conn is not None, "count after a first batch"
        conn.connection.driver_connection.set_trace_callback(self._seen)  # type: ignore[union-attr]

    def _seen(self, statement: str) -> None:
        if statement.startswith("SELECT rule, key, data, due FROM rule_state"):
            self.n += 1


@pytest.fixture
def two(tmp_path: Path) -> Iterator[tuple[SinkDriver, SinkDriver]]:
    cfg = make_config(tmp_path)  # both on one SQLite file, as two hub workers of one site
    clock = FakeClock(time.time())
    a, b = SinkDriver(cfg, clock).start(), SinkDriver(cfg, clock).start()
    try:
        yield a, b
    finally:
        a.stop()
        b.stop()


def test_own_states_come_from_memory_and_another_workers_change_is_read_again(
        two: tuple[SinkDriver, SinkDriver]) -> None:
    a, b = two
    _entry(a, "in")
    reads = _Reads(a)
    assert KEY in a.sink.store.cache
    before = reads.n
    _entry(a, "out", 30)  # the same credential again: its state is the one a committed, from memory
    assert reads.n == before
    _entry(a, "in", 30)

    _entry(b, "out", 30)  # the other worker: a's cached state is stale now
    _entry(a, "in", 30)  # in after an out: no violation (a stale "in" would have raised anti-passback)
    a.wait(4)  # a repeat entry is judged once it settled (settle_s 3)
    assert a.alerts(rule="anti_passback") == []
    assert a.sink.store.cache.resets >= 1 and reads.n > before  # the version check emptied the cache

    _entry(b, "in", 30)  # a real violation, seen by b
    b.wait(4)
    _entry(a, "in", 30)  # and another, seen by a: the same alert, raised once
    a.wait(4)
    alerts = a.alerts(rule="anti_passback")
    assert len(alerts) == 1 and alerts[0]["count"] == 2, alerts


def test_a_database_failing_mid_batch_leaves_nothing_uncommitted_in_the_cache(
        two: tuple[SinkDriver, SinkDriver], monkeypatch: pytest.MonkeyPatch) -> None:
    a, _ = two
    _entry(a, "in")
    assert KEY in a.sink.store.cache
    flush = Tx.flush

    def failing(tx: Tx) -> None:
        if tx._dirty:  # after the rules changed the batch's states in place
            raise OperationalError("INSERT INTO rule_state", {}, Exception("disk I/O error"))
        flush(tx)

    monkeypatch.setattr(Tx, "flush", failing)
    a.clock.t += 30
    batch = [accepted(a.cfg, env("gate-g1", "access_granted", a.clock(), seq=900, door="d1", credential_ref=PASSER,
                                 method="card", direction="in"))]
    with pytest.raises(OperationalError):
        a.sink.handle(batch)  # every retry fails: the worker holds the batch unacknowledged
    assert KEY not in a.sink.store.cache  # what the failed attempts changed is gone with them
    monkeypatch.undo()

    a.sink.handle(batch)  # redelivered: the violation is judged on the committed state, and raised once
    a.wait(4)  # once it settled (settle_s 3)
    alerts = a.alerts(rule="anti_passback")
    assert len(alerts) == 1 and alerts[0]["count"] == 1, alerts
    with a.sink.db.connect() as conn:
        stored = conn.execute(text("SELECT data FROM rule_state WHERE rule = :r AND key = :k"),
                              {"r": KEY[0], "k": KEY[1]}).scalar()
    assert stored is not None and '"last":"gate-g1#900"' in stored
