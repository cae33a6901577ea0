"""Shuffled late replays: the rules raise what device-time order raises, and nothing more (hub.rules.reorder)."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

from alerts_helpers import T0, FakeClock, SinkDriver, accepted, env, make_config
from test_rules_late import GRANT, Hub, _live

from hub.rules.engine import Engine
from hub.rules.event import Event
from hub.rules.reorder import HOLD, HOLD_MAX_S, HOLD_SPAN_S, SETTLE_S

DENIED: dict[str, Any] = {"door": "main", "credential_ref": "bad0bad0bad0bad0", "method": "card",
                          "reason": "unknown_credential"}
AT = T0 + 600  # when the replays arrive: ten minutes after the first message in them


def _held(h: Hub, device: str) -> int:
    return h.held(device)


def _replay(h: Hub, device: str, msgs: list[tuple[str, float, dict[str, Any]]], at: float, seed: int,
            step: float = 0.05) -> None:
    """Deliver (type, stamp, fields) shuffled, `step` apart from `at`, with the hub's 1 s ticks in between."""
    order = list(msgs)
    random.Random(seed).shuffle(order)
    for i, (body_type, t, fields) in enumerate(order):
        h.deliver(device, body_type, t, at + step * i, **fields)


def _door_visit(t: float, exit_request: bool) -> list[tuple[str, float, dict[str, Any]]]:
    auth: tuple[str, float, dict[str, Any]] = ("exit_request", t, {"door": "main"}) if exit_request \
        else ("access_granted", t, GRANT)
    return [auth, ("door_opened", t + 1.0, {"door": "main"}), ("door_closed", t + 8.0, {"door": "main"})]


def test_a_shuffled_replay_of_ordinary_door_use_raises_nothing() -> None:
    # Every order of a day's door use (grant or exit request, opening, closing) replayed together: an
    # opening replayed before its exit request is not a forced door. Many seeds: the bad orders are found.
    for seed in range(12):
        h = Hub()
        _live(h, "door-b1", T0)
        msgs = [m for k in range(6) for m in _door_visit(T0 + 20 + 60 * k, exit_request=k % 2 == 1)]
        _replay(h, "door-b1", msgs, AT, seed)
        h.settle(AT + 4 * SETTLE_S)
        assert not h.fired("door_forced_open") and not h.fired("door_held_open"), seed
        assert _held(h, "door-b1") == 0


def test_a_shuffled_replay_raises_the_forced_door_and_the_tailgater_at_their_own_time() -> None:
    for seed in range(8):
        h = Hub()
        _live(h, "door-b1", T0)
        _live(h, "fgate-b1", T0)
        # A real forced door among ordinary visits.
        msgs = [*_door_visit(T0 + 20, True), ("door_opened", T0 + 100, {"door": "main"}),
                ("door_closed", T0 + 104, {"door": "main"}), *_door_visit(T0 + 200, False)]
        _replay(h, "door-b1", msgs, AT, seed)
        # Two people on one grant at the face gate: the passage replayed before its grant is still counted.
        gate = [("access_granted", T0 + 50, {**GRANT, "direction": "in"}),
                ("passage", T0 + 51, {"door": "main", "count": 2, "direction": "in"}),
                ("access_granted", T0 + 150, {**GRANT, "direction": "in"}),
                ("passage", T0 + 151.5, {"door": "main", "count": 1, "direction": "in"})]
        _replay(h, "fgate-b1", gate, AT + 1.0, seed)
        h.settle(AT + 4 * SETTLE_S)
        assert [s.t for s in h.fired("door_forced_open")] == [T0 + 100], seed
        assert [s.t for s in h.fired("tailgating")] == [T0 + 51], seed


def test_duplicates_inside_a_shuffled_replay_count_once() -> None:
    # Two denials (the burst needs three), each delivered twice inside the shuffled replay (a redelivery).
    h = Hub()
    _live(h, "door-b1", T0)
    envs = [env("door-b1", "access_denied", T0 + 30 + 20 * k, seq=500 + k, **DENIED) for k in range(2)]
    order = [*envs, *envs]
    random.Random(3).shuffle(order)
    for i, e in enumerate(order):
        h.tick(AT + 0.1 * i)
        h.process([h.event(e)], AT + 0.1 * i)
    assert _held(h, "door-b1") == 2  # two messages, each kept twice
    h.settle(AT + 4 * SETTLE_S)
    assert not h.fired("invalid_credential_burst")


def test_a_replay_that_spans_two_batches_and_a_pause_is_put_in_order() -> None:
    h = Hub()
    _live(h, "door-b1", T0)
    # The exit request comes in a later batch than its opening, 3 s later: under the settle time, so the
    # hold still has the opening (a replay over two reconnects).
    h.tick(AT)
    h.process([_event(h, "door-b1", "door_opened", T0 + 41, door="main"),
               _event(h, "door-b1", "door_closed", T0 + 45, door="main")], AT)
    h.settle(AT + 3.0)
    assert _held(h, "door-b1") == 2
    h.process([_event(h, "door-b1", "exit_request", T0 + 40, door="main")], AT + 3.0)
    h.settle(AT + 4 * SETTLE_S)
    assert not h.fired("door_forced_open") and _held(h, "door-b1") == 0


def test_a_replay_arriving_for_exactly_the_hold_bound_is_released_then_and_nothing_is_lost() -> None:
    h = Hub()
    _live(h, "door-b1", T0)
    # One late message a second for HOLD_MAX_S + 10 s: never quiet, so the hold lets go at its bound exactly,
    # and what comes after is held anew.
    n = int(HOLD_MAX_S) + 10
    for i in range(n):
        h.deliver("door-b1", "door_closed", T0 + 10 + i, AT + i, door="main")
    h.settle(AT + n + 4 * SETTLE_S)
    assert _held(h, "door-b1") == 0
    rel = [(when, k, since) for d, when, k, since in h.released if d == "door-b1"]
    assert len(rel) == 2 and rel[0][0] - rel[0][2] == HOLD_MAX_S
    assert sum(k for _, k, _ in rel) == n  # every message reached the rules once


def test_a_clock_stepped_back_an_hour_does_not_hold_a_live_device_for_long() -> None:
    h = Hub()
    _live(h, "door-b1", T0)
    # The controller's clock is stepped back an hour: its messages look an hour late until the clocks
    # relearn it (120 s); meanwhile they are held, never longer than the hold's span, and all reach the rules.
    t = T0 + 10
    first: int | None = None  # when the denials' burst was first raised (seconds after the step)
    for i in range(300):
        now = t + i
        h.deliver("door-b1", "exit_request", now - 3600, now, door="main")
        h.deliver("door-b1", "access_denied", now - 3600 + 0.5, now + 0.5,
                  **DENIED)
        held = h.holds().get("door-b1")
        if held is not None:
            assert now - held[1] <= HOLD_SPAN_S
        if first is None and h.fired("invalid_credential_burst"):
            first = i
    assert _held(h, "door-b1") == 0  # relearned: live again, nothing waits
    h.settle(t + 300 + 4 * SETTLE_S)
    # A denial every second is a burst: raised while the clock still looks an hour late, within the hold's span.
    assert first is not None and first <= HOLD_SPAN_S
    assert 0 < sum(k for d, _, k, _ in h.released if d == "door-b1") < 2 * 300  # the late part only


def test_live_messages_of_other_devices_are_not_held_during_a_replay() -> None:
    h = Hub()
    _live(h, "door-b1", T0)
    _live(h, "door-b2", T0)
    h.deliver("door-b1", "door_opened", T0 + 41, AT, door="main")  # late: held
    h.deliver("door-b2", "door_opened", AT + 0.5, AT + 0.5, door="main")  # live, forced: raised once settled
    h.tick(AT + 4.0)
    assert [s.t for s in h.fired("door_forced_open")] == [AT + 0.5]
    assert _held(h, "door-b1") == 1 and _held(h, "door-b2") == 0


def test_held_messages_survive_a_restart_of_the_engine() -> None:
    h = Hub()
    _live(h, "door-b1", T0)
    h.deliver("door-b1", "door_opened", T0 + 41, AT, door="main")
    h.deliver("door-b1", "door_closed", T0 + 45, AT + 0.1, door="main")
    # The process dies: a new engine on the same store (the rule state) releases them from its timer.
    h.engine = Engine(h.pack, h.ctx)
    h.settle(AT + 4 * SETTLE_S)
    assert [s.t for s in h.fired("door_forced_open")] == [T0 + 41]


def test_a_hub_killed_while_holding_raises_the_replay_after_restart(tmp_path: Path) -> None:
    # The real alerting sink on SQLite: a batch is acknowledged once its transaction commits, and the held
    # messages are in that transaction; a sink dropped without stop() (a crash) leaves them to the next one.
    cfg = make_config(tmp_path)
    clock = FakeClock(T0)
    a = SinkDriver(cfg, clock).start()
    a.sink.handle([accepted(cfg, env("door-b1", "heartbeat", T0, uptime_s=1.0))])
    clock.t = AT
    a.sink.handle([accepted(cfg, env("door-b1", "door_closed", T0 + 45, door="main")),
                   accepted(cfg, env("door-b1", "door_opened", T0 + 41, door="main"))])
    a.sink.tick()
    assert not a.alerts(rule="door_forced_open")  # held, not judged
    a.sink._stop.set()  # the crash: its timer stops, nothing is flushed or stopped in order
    assert a.sink._thread is not None
    a.sink._thread.join(10)
    a.sink.db.dispose()
    b = SinkDriver(cfg, clock).start()
    try:
        b.wait(4 * SETTLE_S, step=1.0)
        rows = b.alerts(rule="door_forced_open")
        assert len(rows) == 1
    finally:
        b.stop()


def _event(h: Hub, device: str, body_type: str, t: float, **fields: Any) -> Event:
    return h.event(env(device, body_type, t, **fields))



def test_the_end_of_a_replay_that_arrives_first_looks_live_and_the_rest_still_counts_in_order() -> None:
    # A replay's last seconds lag less than a late message does: delivered first, they go to the rules at once,
    # and the older messages of the same replay, held, must still be judged in their own time.
    end = AT - 10.0
    for spread, burst in ((44.0, False), (20.0, True)):
        h = Hub()
        _live(h, "door-b1", T0)
        times = [end - 2 * spread, end - spread, end]
        h.deliver("door-b1", "access_denied", end, AT, **DENIED)  # lags 10 s: live
        for i, t in enumerate(times[:2]):
            h.deliver("door-b1", "access_denied", t, AT + 0.1 * (i + 1), **DENIED)
        h.settle(AT + 4 * SETTLE_S)
        fired = h.fired("invalid_credential_burst")
        assert [s.t for s in fired][:1] == ([end] if burst else []), spread
    # At a face gate: the newest grant and passage first, then two people on one older grant.
    h = Hub()
    _live(h, "fgate-b1", T0)
    h.deliver("fgate-b1", "access_granted", end, AT, **{**GRANT, "direction": "in"})
    h.deliver("fgate-b1", "passage", end + 1.0, AT + 0.1, door="main", count=1, direction="in")
    h.deliver("fgate-b1", "passage", T0 + 301.0, AT + 0.2, door="main", count=2, direction="in")
    h.deliver("fgate-b1", "access_granted", T0 + 300.0, AT + 0.3, **{**GRANT, "direction": "in"})
    h.settle(AT + 4 * SETTLE_S)
    assert [s.t for s in h.fired("tailgating")] == [T0 + 301.0]


def test_two_workers_holding_one_devices_replay_write_rows_of_their_own_and_both_go_in() -> None:
    # Two workers share a device's replay (a shared subscription): each batch holds its part in a row of its own
    # (no stale write to redo, no worker waiting on the other's row lock), and both parts go in together, in
    # device-time order: the exit request (T0+40, the other worker's) before the opening (T0+41).
    a, b = Hub(), Hub()
    b.store = a.store
    for h in (a, b):
        _live(h, "door-b1", T0)
    mine = a.clocks.correct(_event(a, "door-b1", "door_opened", T0 + 41, door="main"), AT, a.store)
    theirs = b.clocks.correct(_event(b, "door-b1", "exit_request", T0 + 40, door="main"), AT, b.store)
    assert mine.late and theirs.late
    work = a.engine.plan([mine])
    assert [rule.id for _, rule, _ in work] == ["device_offline", HOLD]
    b.process([theirs], AT)  # the other worker's, committed first
    a.signals.extend(a.engine.run(work, a.store))
    assert len([k for r, k in a.store.states if r == HOLD]) == 2 and a.held("door-b1") == 2
    t = AT
    while t < AT + 4 * SETTLE_S:
        t += 1.0
        a.tick(t)
        b.tick(t)
    assert a.held("door-b1") == 0 and [d for d, *_ in a.released] == ["door-b1"]
    assert not a.fired("door_forced_open") and not b.fired("door_forced_open")


def test_the_end_of_a_replay_first_in_its_batch_joins_the_hold() -> None:
    # One batch (a burst read at once): the replay's last opening, lagging 4 s (not late), comes before its
    # grant and the older messages: it waits with them, so the grant is seen first.
    h = Hub()
    _live(h, "door-b1", T0)
    h.tick(AT)
    batch = [_event(h, "door-b1", "door_opened", AT - 4.0, door="main"),
             _event(h, "door-b1", "door_closed", T0 + 48, door="main"),
             _event(h, "door-b1", "access_granted", AT - 4.6, **GRANT),
             _event(h, "door-b1", "exit_request", T0 + 40, door="main"),
             _event(h, "door-b1", "door_opened", T0 + 41, door="main")]
    h.process(batch, AT)
    assert not h.fired("door_forced_open") and _held(h, "door-b1") == 5
    h.settle(AT + 4 * SETTLE_S)
    assert not h.fired("door_forced_open")
    # A live opening of another device in a batch with a replay is not held: raised once settled (settle_s).
    h.process([_event(h, "door-b2", "door_opened", AT + 30.0, door="main"),
               _event(h, "door-b1", "door_opened", T0 + 90, door="main")], AT + 30.0)
    h.tick(AT + 34.0)
    assert [s.t for s in h.fired("door_forced_open")] == [AT + 30.0]
