"""Door rules that settle (settle_s): several workers may see a grant after the opening or passage it allowed."""

from __future__ import annotations

from typing import Any

from alerts_helpers import T0
from test_rules_late import GRANT, Hub

from hub.rules.engine import Engine
from hub.rules.spec import RulePack

SETTLE = 3.0


def _hub(settle: float, rule: str = "door_forced_open") -> Hub:
    h = Hub()
    rules = tuple(r.model_copy(update={"settle_s": settle}) if r.id == rule else r for r in h.pack.rules)
    h.pack = RulePack(rules=rules)
    h.engine = Engine(h.pack, h.ctx)
    h.engine.seed(h.store, T0)
    return h


def test_an_opening_whose_grant_comes_after_it_raises_nothing_once_settled() -> None:
    # Two workers: the opening's batch commits first, its grant (1 s older) a moment later.
    h = _hub(SETTLE)
    h.deliver("door-b1", "door_opened", T0 + 11, T0 + 11.2, door="main")
    h.deliver("door-b1", "access_granted", T0 + 10, T0 + 11.4, **GRANT)
    h.deliver("door-b1", "door_closed", T0 + 15, T0 + 15.1, door="main")
    h.settle(T0 + 30)
    assert not h.fired("door_forced_open")


def test_without_settle_the_same_order_is_a_false_forced_door() -> None:
    # What settle_s is for: judged at once, the opening before its grant is a forced door.
    h = _hub(0.0)
    h.deliver("door-b1", "door_opened", T0 + 11, T0 + 11.2, door="main")
    h.deliver("door-b1", "access_granted", T0 + 10, T0 + 11.4, **GRANT)
    assert [s.t for s in h.fired("door_forced_open")] == [T0 + 11]


def test_a_forced_door_fires_at_its_opening_time_after_the_settle_and_clears_if_closed_meanwhile() -> None:
    h = _hub(SETTLE)
    h.deliver("door-b1", "door_opened", T0 + 11, T0 + 11.1, door="main")
    h.deliver("door-b1", "door_closed", T0 + 12, T0 + 12.1, door="main")  # closed before it settled
    # A grant newer than the opening does not authorize it.
    h.deliver("door-b1", "access_granted", T0 + 12.5, T0 + 12.6, **GRANT)
    h.tick(T0 + 11 + SETTLE - 0.5)
    assert not h.fired("door_forced_open")  # still settling
    h.settle(T0 + 11 + SETTLE + 1.0)
    assert [s.t for s in h.fired("door_forced_open")] == [T0 + 11]
    clears = [s for s in h.signals if s.rule == "door_forced_open" and s.action == "clear"]
    assert [s.t for s in clears] == [T0 + 12]


def test_a_grant_older_than_the_window_does_not_authorize_a_settling_opening() -> None:
    h = _hub(SETTLE)
    h.deliver("door-b1", "door_opened", T0 + 20, T0 + 20.1, door="main")
    h.deliver("door-b1", "access_granted", T0 + 10, T0 + 20.3, **GRANT)  # 10 s before: outside window_s 5
    h.settle(T0 + 30)
    assert [s.t for s in h.fired("door_forced_open")] == [T0 + 20]


def test_a_settling_opening_survives_a_restart_of_the_engine() -> None:
    h = _hub(SETTLE)
    h.deliver("door-b1", "door_opened", T0 + 11, T0 + 11.1, door="main")
    h.engine = Engine(h.pack, h.ctx)  # a new process on the same stored state
    h.engine.seed(h.store, T0 + 12)
    h.settle(T0 + 20)
    assert [s.t for s in h.fired("door_forced_open")] == [T0 + 11]


def _tailgate_hub(settle: float) -> Hub:
    h = Hub()
    rules = tuple(r.model_copy(update={"settle_s": settle}) if r.id == "tailgating" else r for r in h.pack.rules)
    h.pack = RulePack(rules=rules)
    h.engine = Engine(h.pack, h.ctx)
    h.engine.seed(h.store, T0)
    return h


PASS: dict[str, Any] = {"door": "main", "direction": "in", "count": 1}
GRANT_IN: dict[str, Any] = {**GRANT, "direction": "in"}


def _queue(h: Hub) -> None:
    # A queue of two at a face gate; the second passage's grant reaches the rules after it (another worker).
    h.deliver("fgate-b1", "access_granted", T0 + 10, T0 + 10.1, **GRANT_IN)
    h.deliver("fgate-b1", "passage", T0 + 11, T0 + 11.1, **PASS)
    h.deliver("fgate-b1", "passage", T0 + 13, T0 + 13.1, **PASS)
    h.deliver("fgate-b1", "access_granted", T0 + 12.5, T0 + 13.4, **GRANT_IN)


def test_a_queue_whose_second_grant_comes_after_its_passage_is_not_tailgating_once_settled() -> None:
    h = _tailgate_hub(SETTLE)
    _queue(h)
    h.settle(T0 + 40)
    assert not h.fired("tailgating")


def test_without_settle_the_same_queue_is_a_false_tailgater() -> None:
    h = _tailgate_hub(0.0)
    _queue(h)
    assert [s.t for s in h.fired("tailgating")] == [T0 + 13]


def test_a_tailgater_fires_at_its_passage_time_after_the_settle_and_a_newer_grant_does_not_pay_for_it() -> None:
    h = _tailgate_hub(SETTLE)
    h.deliver("fgate-b1", "access_granted", T0 + 10, T0 + 10.1, **GRANT_IN)
    h.deliver("fgate-b1", "passage", T0 + 11, T0 + 11.1, **PASS)
    h.deliver("fgate-b1", "passage", T0 + 11.5, T0 + 11.6, **PASS)  # a second person on one grant
    h.tick(T0 + 14.0)
    assert not h.fired("tailgating")  # still settling
    h.deliver("fgate-b1", "access_granted", T0 + 14.2, T0 + 14.3, **GRANT_IN)  # the next visitor's, later
    h.settle(T0 + 40)
    assert [s.t for s in h.fired("tailgating")] == [T0 + 11.5]


HOLD_S = 30.0


def _held(settle: float) -> Hub:
    return _hub(settle, "door_held_open")


def test_a_closing_that_comes_before_its_opening_raises_no_held_open_once_settled() -> None:
    # Two workers: the grant and the closing commit first, the opening (4 s before the closing) a moment later.
    for settle, fired in ((SETTLE, 0), (0.0, 1)):  # without settle_s: a false "held open"
        h = _held(settle)
        h.deliver("door-b1", "access_granted", T0 + 10, T0 + 10.1, **GRANT)
        h.deliver("door-b1", "door_closed", T0 + 15, T0 + 15.1, door="main")
        h.deliver("door-b1", "door_opened", T0 + 11, T0 + 15.3, door="main")
        h.settle(T0 + 11 + HOLD_S + SETTLE + 5)
        assert len(h.fired("door_held_open")) == fired, settle


def test_an_opening_whose_grant_comes_after_it_is_still_timed_once_settled() -> None:
    # The opening commits before its grant (1 s older): without settle_s the opening counts as forced, and
    # a door then held open is missed.
    for settle, fired in ((SETTLE, 1), (0.0, 0)):
        h = _held(settle)
        h.deliver("door-b1", "door_opened", T0 + 11, T0 + 11.2, door="main")
        h.deliver("door-b1", "access_granted", T0 + 10, T0 + 11.4, **GRANT)
        h.settle(T0 + 11 + HOLD_S + SETTLE + 5)
        assert len(h.fired("door_held_open")) == fired, settle
        assert all(s.t == T0 + 11 + HOLD_S and s.refs for s in h.fired("door_held_open"))
        assert all(s.t == T0 + 11 + HOLD_S for s in h.fired("door_held_open"))


def test_a_closing_inside_the_hold_that_comes_after_the_hold_raises_nothing() -> None:
    # The closing (29 s after the opening) reaches the rules 2 s after the hold ended, from the other worker.
    h = _held(SETTLE)
    h.deliver("door-b1", "access_granted", T0 + 10, T0 + 10.1, **GRANT)
    h.deliver("door-b1", "door_opened", T0 + 11, T0 + 11.1, door="main")
    h.settle(T0 + 11 + HOLD_S + 1)
    h.deliver("door-b1", "door_closed", T0 + 11 + HOLD_S - 1, T0 + 11 + HOLD_S + 2, door="main")
    h.settle(T0 + 11 + HOLD_S + SETTLE + 5)
    assert not h.fired("door_held_open")


def test_a_held_open_door_fires_at_its_hold_time_after_the_settle_steps_up_and_clears() -> None:
    h = _held(SETTLE)
    h.deliver("door-b1", "access_granted", T0 + 10, T0 + 10.1, **GRANT)
    h.deliver("door-b1", "door_opened", T0 + 11, T0 + 11.1, door="main")
    h.settle(T0 + 11 + HOLD_S + SETTLE - 0.5)
    assert not h.fired("door_held_open")  # still settling: a closing may come from the other worker
    h.settle(T0 + 11 + HOLD_S + SETTLE + 1)
    assert [s.t for s in h.fired("door_held_open")] == [T0 + 11 + HOLD_S]
    h.settle(T0 + 11 + 300 + SETTLE + 1)
    assert [(s.t, s.severity) for s in h.fired("door_held_open")] == [(T0 + 11 + HOLD_S, "low"),
                                                                      (T0 + 11 + 300, "medium")]
    h.deliver("door-b1", "door_closed", T0 + 400, T0 + 400.1, door="main")
    assert h.signals[-1].rule == "door_held_open" and h.signals[-1].action == "clear"


def test_an_old_closing_after_a_new_opening_does_not_clear_it() -> None:
    # The closing of the previous opening arrives after the next opening (each on another worker).
    h = _held(SETTLE)
    h.deliver("door-b1", "access_granted", T0 + 10, T0 + 10.1, **GRANT)
    h.deliver("door-b1", "door_opened", T0 + 11, T0 + 11.1, door="main")
    h.deliver("door-b1", "access_granted", T0 + 19, T0 + 19.1, **GRANT)
    h.deliver("door-b1", "door_opened", T0 + 20, T0 + 20.1, door="main")  # re-opened: the first closing is late
    h.deliver("door-b1", "door_closed", T0 + 15, T0 + 20.3, door="main")
    h.settle(T0 + 20 + HOLD_S + SETTLE + 1)
    assert [s.t for s in h.fired("door_held_open")] == [T0 + 20 + HOLD_S]


def test_a_held_open_door_survives_a_restart_mid_settle() -> None:
    h = _held(SETTLE)
    h.deliver("door-b1", "access_granted", T0 + 10, T0 + 10.1, **GRANT)
    h.deliver("door-b1", "door_opened", T0 + 11, T0 + 11.1, door="main")
    h.settle(T0 + 11 + HOLD_S + 1)
    h.engine = Engine(h.pack, h.ctx)  # a new process on the same stored state
    h.engine.seed(h.store, T0 + 11 + HOLD_S + 1.5)
    h.settle(T0 + 11 + HOLD_S + SETTLE + 1)
    assert [s.t for s in h.fired("door_held_open")] == [T0 + 11 + HOLD_S]


def _passback(settle: float) -> Hub:
    return _hub(settle, "anti_passback")


def _card(h: Hub, direction: str, t: float, received: float) -> None:
    h.deliver("gate-g1", "access_granted", t, received, door="g1", credential_ref="a11ce000a11ce000", method="card",
              direction=direction)


def test_an_exit_that_comes_after_the_next_entry_is_no_anti_passback_once_settled() -> None:
    # In, out, in 3 s apart; the exit reaches the rules after the second entry (another worker's batch).
    for settle, fired in ((SETTLE, 0), (0.0, 1)):  # without settle_s: a false anti-passback
        h = _passback(settle)
        _card(h, "in", T0 + 10, T0 + 10.1)
        _card(h, "in", T0 + 16, T0 + 16.1)
        _card(h, "out", T0 + 13, T0 + 16.3)
        h.settle(T0 + 16 + SETTLE + 5)
        assert len(h.fired("anti_passback")) == fired, settle


def test_a_repeat_entry_fires_at_its_own_time_after_the_settle_and_a_later_exit_does_not_excuse_it() -> None:
    h = _passback(SETTLE)
    _card(h, "in", T0 + 10, T0 + 10.1)
    _card(h, "in", T0 + 50, T0 + 50.1)
    h.tick(T0 + 50 + SETTLE - 0.5)
    assert not h.fired("anti_passback")  # still settling
    _card(h, "out", T0 + 52, T0 + 52.2)  # after the repeat: it does not excuse it
    h.settle(T0 + 50 + SETTLE + 2)
    _card(h, "in", T0 + 90, T0 + 90.1)  # an entry after an exit is fine
    h.settle(T0 + 90 + SETTLE + 2)
    assert [s.t for s in h.fired("anti_passback")] == [T0 + 50]
