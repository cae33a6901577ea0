"""One device's messages split between two hub workers: the rules judge them in the device's own order."""

from __future__ import annotations

from collections.abc import Callable

from alerts_helpers import T0, env
from test_rules_late import Hub

from hub.rules.clock import DeviceClocks
from hub.rules.engine import MemoryStates
from hub.rules.event import Signal

HYD = "hydrant-b1"  # reports every 60 s
DRAIN = T0 + 3600.0  # the backlog is drained an hour after its readings (a device first seen: kept on its stamps)


def _workers() -> tuple[Hub, Hub]:
    """Two workers (own engine, own device clocks) on one rule-state store, as the hub runs them."""
    a, b = Hub(), Hub()
    b.store = a.store = MemoryStates()
    for h in (a, b):  # the default alerts.state_write_back_s: each worker's clock offsets are its own for 5 s
        h.clocks = DeviceClocks(30.0, write_back_s=5.0)
    a.engine.seed(a.store, T0)
    return a, b


def _batch(h: Hub, received: float, *readings: tuple[float, float, int]) -> None:
    """One worker's batch: (device time, pressure, seq) readings of the hydrant, received at once."""
    h.tick(received)
    h.process([h.event(env(HYD, "hydrant_pressure", t, seq=seq, pressure_mpa=v)) for t, v, seq in readings],
              received)


def _drops(*hubs: Hub) -> list[Signal]:
    return [s for h in hubs for s in h.fired("hydrant_pressure_drop")]


def test_a_rising_pressure_split_between_workers_is_no_drop() -> None:
    # 0.30, 0.36, 0.42 a minute apart: A commits the first and last, B the middle one half a second later. On
    # B's clock the middle reading is the newest, 0.06 below the last: a false drop before the fix.
    a, b = _workers()
    _batch(a, DRAIN, (T0, 0.30, 1), (T0 + 120, 0.42, 3))
    _batch(b, DRAIN + 0.5, (T0 + 60, 0.36, 2))
    a.settle(DRAIN + 200)
    assert not _drops(a, b)
    one = Hub()  # one worker, same readings: nothing either
    _batch(one, DRAIN, (T0, 0.30, 1), (T0 + 60, 0.36, 2), (T0 + 120, 0.42, 3))
    assert not _drops(one)


def test_a_real_drop_split_between_workers_still_fires_at_the_lower_readings_time() -> None:
    # 0.42 then 0.36 a minute later (a drop of 0.06): A commits the lower reading first, B the higher one after.
    a, b = _workers()
    _batch(a, DRAIN, (T0, 0.42, 1))
    _batch(a, DRAIN + 1.0, (T0 + 60, 0.36, 2))
    _batch(b, DRAIN + 1.5, (T0, 0.42, 1))  # the same reading again, from the other worker: nothing
    b.settle(DRAIN + 40)  # (B takes it for a late message, held and released in order)
    assert [s.t for s in _drops(a, b)] == [T0 + 60]  # the lower reading's own time
    a2, b2 = _workers()
    _batch(a2, DRAIN, (T0 + 60, 0.36, 2))
    _batch(b2, DRAIN + 0.5, (T0, 0.42, 1))
    b2.settle(DRAIN + 40)
    drops = _drops(a2, b2)
    assert [s.t for s in drops] == [T0 + 60]  # the lower reading's own time, as one worker says
    assert drops[0].thresholds["observed"] == 0.06


def test_a_live_drop_fires_at_its_own_time_and_a_drop_of_exactly_the_value_fires() -> None:
    for high, low in ((0.42, 0.36), (0.45, 0.40), (0.40, 0.35)):  # 0.45 - 0.40 is 0.0499999... in floats
        h = Hub()
        h.deliver(HYD, "hydrant_pressure", T0 + 10, T0 + 10.1, pressure_mpa=high)
        h.deliver(HYD, "hydrant_pressure", T0 + 70, T0 + 70.1, pressure_mpa=low)
        assert [s.t for s in h.fired("hydrant_pressure_drop")] == [T0 + 70], (high, low)


def test_a_drop_of_just_under_the_value_does_not_fire() -> None:
    h = Hub()
    h.deliver(HYD, "hydrant_pressure", T0 + 10, T0 + 10.1, pressure_mpa=0.45)
    h.deliver(HYD, "hydrant_pressure", T0 + 70, T0 + 70.1, pressure_mpa=0.401)
    assert not h.fired("hydrant_pressure_drop")


def test_a_clock_stepped_back_an_hour_does_not_freeze_the_drop_rule() -> None:
    # Live readings, then the device's clock goes back an hour (its seq goes on); a real drop 5 min later fires.
    h = Hub()
    for i in range(5):
        h.deliver(HYD, "hydrant_pressure", T0 + 60 * i, T0 + 60 * i + 0.1, pressure_mpa=0.40)
    for j in range(5, 12):
        h.deliver(HYD, "hydrant_pressure", T0 + 60 * j - 3600, T0 + 60 * j + 0.1, pressure_mpa=0.40)
    h.deliver(HYD, "hydrant_pressure", T0 + 720 - 3600, T0 + 720.1, pressure_mpa=0.33)
    h.settle(T0 + 800)
    assert len(h.fired("hydrant_pressure_drop")) == 1


def test_a_counter_restarted_by_a_reboot_is_not_taken_for_an_old_reading() -> None:
    # seq falls back to 0 (a reboot that lost the counter) a minute later: a real drop still fires.
    h = Hub()
    h.deliver(HYD, "hydrant_pressure", T0 + 10, T0 + 10.1, pressure_mpa=0.42)
    h.process([h.event(env(HYD, "hydrant_pressure", T0 + 70, seq=0, pressure_mpa=0.36))], T0 + 70.1)
    assert [s.t for s in h.fired("hydrant_pressure_drop")] == [T0 + 70]


GATE = "fgate-b1"
GRANT_IN = {"door": "main", "credential_ref": "a11ce000a11ce000", "method": "card", "direction": "in"}
PASS = {"door": "main", "direction": "in", "count": 1}


def _batches(device: str, others: dict[str, object]) -> Callable[..., None]:
    """A sender of one worker's batch of the device's (body type, device time, seq) messages: a grant carries
    GRANT_IN, every other body `others`."""
    def send(h: Hub, received: float, *msgs: tuple[str, float, int]) -> None:
        h.tick(received)
        h.process([h.event(env(device, b, t, seq=seq, **(GRANT_IN if b == "access_granted" else others)))
                   for b, t, seq in msgs], received)
    return send


_gate = _batches(GATE, PASS)


def test_a_grant_committed_later_on_the_other_workers_clock_still_pays_for_its_passage() -> None:
    # Grant, passage, grant, passage a few seconds apart; B commits the second grant 2.5 s after A's batch: on
    # B's clock it is newer than the passage it allowed (beyond the 2 s order slack), yet older by the gate's seq.
    a, b = _workers()
    _gate(a, DRAIN, ("access_granted", T0 + 10, 1), ("passage", T0 + 11, 2), ("passage", T0 + 14, 4))
    _gate(b, DRAIN + 2.5, ("access_granted", T0 + 13, 3))
    a.settle(DRAIN + 40)
    assert not [s for h in (a, b) for s in h.fired("tailgating")]


def test_a_grant_committed_first_but_stamped_later_by_its_worker_still_pays_for_its_passage() -> None:
    a, b = _workers()
    _gate(b, DRAIN + 2.5, ("access_granted", T0 + 13, 3))
    _gate(a, DRAIN, ("access_granted", T0 + 10, 1), ("passage", T0 + 11, 2), ("passage", T0 + 14, 4))
    a.settle(DRAIN + 40)
    assert not [s for h in (a, b) for s in h.fired("tailgating")]


def test_a_real_tailgater_split_between_workers_still_fires() -> None:
    # Two passages on one grant; the second passage comes from the other worker, later on its clock.
    a, b = _workers()
    _gate(a, DRAIN, ("access_granted", T0 + 10, 1), ("passage", T0 + 11, 2))
    _gate(b, DRAIN + 2.5, ("passage", T0 + 11.5, 3))
    b.settle(DRAIN + 40)
    assert len([s for h in (a, b) for s in h.fired("tailgating")]) == 1


DOOR = "door-b1"
_door = _batches(DOOR, {"door": "main"})


def test_a_door_grant_on_the_other_workers_clock_still_authorizes_its_opening_in_either_commit_order() -> None:
    # bench scale: a door_forced_open whose grant looked 0.082 s newer than the opening (the other worker's clock).
    for grant_first in (False, True):
        a, b = _workers()
        if grant_first:
            _door(b, DRAIN + 0.5, ("access_granted", T0 + 10, 1))
        _door(a, DRAIN, ("door_opened", T0 + 11, 2), ("door_closed", T0 + 15, 3))
        if not grant_first:
            _door(b, DRAIN + 0.5, ("access_granted", T0 + 10, 1))
        a.settle(DRAIN + 40)
        assert not [s for h in (a, b) for s in h.fired("door_forced_open")], grant_first


def test_a_forced_door_split_between_workers_still_fires() -> None:
    # The grant is newer by seq: it does not authorize the opening before it.
    a, b = _workers()
    _door(a, DRAIN, ("door_opened", T0 + 11, 2), ("door_closed", T0 + 15, 3))
    _door(b, DRAIN + 0.5, ("access_granted", T0 + 20, 4))
    a.settle(DRAIN + 40)
    assert len([s for h in (a, b) for s in h.fired("door_forced_open")]) == 1
