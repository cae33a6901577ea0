"""A drained backlog of a device never seen keeps its own device time, with one worker and with two.

`commhub bench scale` drains a queue of hours of a fresh community's traffic into a fresh hub: every device is
first seen hours behind its stamps. Taken for a wrong clock, each message was corrected to its batch's receive
time: hours of one door's denials at a few instants (false `invalid_credential_burst`), and with two workers one
device on two clocks (false `tailgating`). These tests build such a backlog and the hostile cases around it.
"""

from __future__ import annotations

import functools
from typing import Any

import pytest
from alerts_helpers import T0, env
from test_rules_late import Hub

from hub.rules.clock import LATE_S, DeviceClocks
from hub.rules.engine import Engine, MemoryStates
from hub.rules.event import Event, Signal
from hub.rules.reorder import HOLD

GATE = "fgate-b1"
START = T0 - 3 * 3600.0  # the backlog's first stamp: three hours before it is drained
DRAIN = T0  # when the drain starts (its batches come BATCH_GAP_S apart)
BATCH_GAP_S = 0.05
WATCHED = ("tailgating", "invalid_credential_burst", "anti_passback", "door_forced_open", "door_held_open")
TAILGATER = 3600.0  # seconds into the backlog: one grant, two passages (a real tailgater)
BURST = 7200.0  # seconds into the backlog: three denials within 20 s (a real burst)


def _grant(k: int) -> dict[str, Any]:
    return {"door": "main", "credential_ref": f"{k:016x}", "method": "face", "direction": "in"}


def _denial(k: int) -> dict[str, Any]:
    return {"door": "main", "credential_ref": f"d{k:015x}", "method": "face", "reason": "unknown_credential"}


PASS: dict[str, Any] = {"door": "main", "direction": "in", "count": 1}


def backlog(span_s: float = 3 * 3600.0 - 60.0) -> list[tuple[str, float, dict[str, Any]]]:
    """(body type, device time, fields) of a face gate's queued hours, in order: a grant and its passage every
    minute, a denial every 5 minutes (never 3 in 60 s), and one real tailgater and one real burst."""
    out: list[tuple[str, float, dict[str, Any]]] = []
    for k, s in enumerate(range(0, int(span_s), 60)):
        out.append(("access_granted", START + s, _grant(k)))
        out.append(("passage", START + s + 1.0, PASS))
        if s == TAILGATER:
            out.append(("passage", START + s + 1.5, PASS))
        if s % 300 == 0:
            out.append(("access_denied", START + s + 20.0, _denial(k)))
        if s == BURST:
            out += [("access_denied", START + s + 25.0 + 5 * j, _denial(10_000 + j)) for j in range(2)]
    return out


def events(h: Hub, msgs: list[tuple[str, float, dict[str, Any]]], first_seq: int = 1) -> list[Event]:
    """The rules' events of the gate's messages, seq in their order."""
    return [h.event(env(GATE, b, t, seq=first_seq + i, **f)) for i, (b, t, f) in enumerate(msgs)]


def workers(write_back_s: float = 5.0) -> tuple[Hub, Hub]:
    """Two workers (own engine, own device clocks) on one rule-state store, as the hub runs them."""
    a, b = Hub(), Hub()
    b.store = a.store = MemoryStates()
    for h in (a, b):
        h.clocks = DeviceClocks(30.0, write_back_s=write_back_s)
    a.engine.seed(a.store, START)
    return a, b


def drain(turns: list[tuple[Hub, list[Event]]], at: float = DRAIN) -> float:
    """Hand each (worker, batch) in turn, BATCH_GAP_S apart, timers ticked before each; returns the last time."""
    for h, batch in turns:
        h.tick(at)
        h.process(batch, at)
        at += BATCH_GAP_S
    return at


def fires(*hubs: Hub) -> list[tuple[str, float]]:
    """(rule, alert time) of every fire of the watched rules, sorted."""
    return sorted((s.rule, round(s.t, 3)) for h in hubs for s in h.signals if s.action == "fire" and s.rule in WATCHED)


def settle(until: float, *hubs: Hub) -> None:
    for h in hubs:
        h.settle(until)


EXPECTED = [("invalid_credential_burst", START + BURST + 30.0), ("tailgating", START + TAILGATER + 1.5)]


def one_worker(batch: int = 40) -> Hub:
    """The backlog drained by one worker in batches of `batch`, then 60 s of timers."""
    h = Hub()
    evs = events(h, backlog())
    end = drain([(h, evs[i:i + batch]) for i in range(0, len(evs), batch)])
    h.settle(end + 60.0)
    return h


def test_one_worker_drains_a_fresh_devices_backlog_on_its_own_stamps() -> None:
    # Before: every message at its batch's receive time, so hours of denials made ~20 false bursts.
    h = one_worker()
    assert fires(h) == EXPECTED


def test_two_workers_alternating_messages_raise_what_one_worker_raises() -> None:
    # The worst split: every other message to the other worker, whose batch commits first each round.
    a, b = workers()
    evs = events(a, backlog())
    turns: list[tuple[Hub, list[Event]]] = []
    for i in range(0, len(evs), 40):
        part = evs[i:i + 40]
        turns += [(b, part[1::2]), (a, part[0::2])]
    end = drain(turns)
    settle(end + 60.0, a, b)
    assert fires(a, b) == EXPECTED
    assert fires(a, b) == fires(one_worker())


def test_two_workers_end_with_the_same_offset_for_the_device() -> None:
    # Neither shares its cache with the other: the rule gives both est 0 for a device first seen behind.
    a, b = workers()
    evs = events(a, backlog())
    drain([(a, evs[:50]), (b, evs[50:100]), (a, evs[100:150:2]), (b, evs[101:150:2])])
    probe = events(a, [("passage", T0 + 5.0, PASS)], first_seq=10_000)[0]
    assert a.clocks.correct(probe, T0 + 5.1, a.store).t == b.clocks.correct(probe, T0 + 5.1, b.store).t == T0 + 5.0


def test_an_in_order_backlog_is_not_held_but_fed_in_its_batch() -> None:
    # Holding every drained message would rewrite the device's _hold row per message (and two workers would
    # both write it): a backlog in order by time and seq needs no hold, only its batch's order.
    h = Hub()
    evs = events(h, backlog())
    for i in range(0, len(evs), 40):
        h.tick(DRAIN + i)
        plan = h.engine.plan([h.clocks.correct(e, DRAIN + i, h.store) for e in evs[i:i + 40]])
        assert plan and all(e.late for e, _, _ in plan)
        assert not [k for _, r, k in plan if r.id == HOLD]
        h.signals += h.engine.run(plan, h.store)
    assert not [k for r, k in h.store.states if r == HOLD]


def test_a_backlog_out_of_order_is_still_held_and_released_in_device_time_order() -> None:
    # A spool replayed from two files, the newer file first: the older messages come after newer ones.
    h = Hub()
    msgs = backlog()[:30]
    evs = events(h, msgs)
    h.tick(DRAIN)
    h.process(evs[15:], DRAIN)
    h.process(evs[:15], DRAIN + 0.5)
    assert any(r == HOLD for r, _ in h.store.states)
    h.settle(DRAIN + 60.0)
    assert h.released and not fires(h)


def test_a_backlog_followed_at_once_by_live_messages() -> None:
    # The queue drains, then the gate's live traffic follows in the same batch and after: the live messages
    # keep their time, are not late, and a live tailgater fires once at its own time.
    h = Hub()
    msgs = backlog()
    live = [("access_granted", DRAIN + 0.2, _grant(90_000)), ("passage", DRAIN + 0.4, PASS),
            ("passage", DRAIN + 0.6, PASS)]
    evs = events(h, msgs + live)
    h.tick(DRAIN)
    out = [h.clocks.correct(e, DRAIN + 0.8, h.store) for e in evs]
    assert [e.late for e in out[-3:]] == [False] * 3 and [e.t for e in out[-3:]] == [e.t for e in evs[-3:]]
    h.process(evs[:-3], DRAIN + 0.8)
    h.process(evs[-3:], DRAIN + 0.8)
    h.settle(DRAIN + 60.0)
    assert fires(h) == [*EXPECTED, ("tailgating", round(DRAIN + 0.6, 3))]


def test_a_restart_mid_drain_reads_the_offsets_from_the_store() -> None:
    # The first worker writes its offsets back and dies half-way; a fresh one (empty caches) drains the rest.
    h = Hub()
    h.clocks = DeviceClocks(30.0, write_back_s=5.0)
    evs = events(h, backlog())
    half = len(evs) // 2
    end = drain([(h, evs[i:i + 40]) for i in range(0, half, 40)])
    assert h.clocks.write_back(h.store, end, force=True) == 1
    kept = h.store.states[("_clock", GATE)].data
    assert kept["est"] == 0.0 and kept["low"][1] == START  # a backlog: est 0, lagging since its first stamp
    again = Hub()
    again.store, again.signals = h.store, h.signals
    again.clocks = DeviceClocks(30.0, write_back_s=5.0)
    end = drain([(again, evs[i:i + 40]) for i in range(half, len(evs), 40)], end + 2.0)
    again.settle(end + 60.0)
    assert fires(again) == EXPECTED


def test_duplicates_delivered_to_both_workers_count_once() -> None:
    # QoS 1 after a reconnect: both workers get every message. A batch of a community's queue holds a few of
    # one gate's messages (12 here; count_per_grant remembers the last 32 it counted, and the hold, which no
    # longer sees an in-order backlog, dedups only what it holds).
    a, b = workers()
    evs = events(a, backlog())
    turns: list[tuple[Hub, list[Event]]] = []
    for i in range(0, len(evs), 12):
        turns += [(a, evs[i:i + 12]), (b, evs[i:i + 12])]
    end = drain(turns)
    settle(end + 60.0, a, b)
    assert fires(a, b) == EXPECTED


@functools.cache
def _maker() -> Hub:
    return Hub()  # only builds events: its community and rules are read once


def _probe(clocks: DeviceClocks, store: MemoryStates, stamped: float, received: float) -> Event:
    return clocks.correct(_maker().event(env(GATE, "passage", stamped, **PASS)), received, store)


def test_a_clock_set_back_an_hour_at_first_sight_is_relearned_and_alerts_are_not_frozen() -> None:
    # Live traffic from a gate whose clock is an hour behind: first taken for a backlog (its own stamps), then,
    # its stamps keeping real time's pace for relearn_s, corrected to the hub's time.
    clocks, store = DeviceClocks(30.0, relearn_s=120.0), MemoryStates()
    seen = [_probe(clocks, store, T0 - 3600 + s, T0 + s + 0.1) for s in range(0, 300, 10)]
    assert seen[0].t == T0 - 3600 and seen[0].late
    assert seen[-1].t == pytest.approx(T0 + 290.1) and not seen[-1].late
    # The rules still fire on it: a live tailgater after the relearn is raised at the hub's time.
    h = Hub()
    for s in range(0, 300, 60):
        h.deliver(GATE, "access_granted", T0 - 3600 + s, T0 + s + 0.1, **_grant(s))
        h.deliver(GATE, "passage", T0 - 3600 + s + 1, T0 + s + 1.1, **PASS)
    h.deliver(GATE, "access_granted", T0 - 3600 + 400, T0 + 400.1, **_grant(400))
    h.deliver(GATE, "passage", T0 - 3600 + 401, T0 + 401.1, **PASS)
    h.deliver(GATE, "passage", T0 - 3600 + 401.5, T0 + 401.6, **PASS)
    h.settle(T0 + 460)
    assert [(r, t) for r, t in fires(h) if r == "tailgating"] == [("tailgating", pytest.approx(T0 + 401.6, abs=0.2))]


def test_a_clock_set_back_an_hour_mid_life_is_still_relearned() -> None:
    clocks, store = DeviceClocks(30.0, relearn_s=120.0), MemoryStates()
    assert _probe(clocks, store, T0, T0 + 0.1).t == T0
    seen = [_probe(clocks, store, T0 - 3600 + s, T0 + s + 0.1) for s in range(10, 300, 10)]
    assert seen[0].late and seen[0].t == T0 - 3590
    assert seen[-1].t == pytest.approx(T0 + 290.1) and not seen[-1].late


def test_a_clock_far_ahead_at_first_sight_is_corrected_at_once() -> None:
    clocks, store = DeviceClocks(30.0), MemoryStates()
    first = _probe(clocks, store, T0 + 3600, T0 + 0.1)
    assert first.t == pytest.approx(T0 + 0.1) and not first.late
    assert _probe(clocks, store, T0 + 3660, T0 + 60.2).t == pytest.approx(T0 + 60.1)


@pytest.mark.parametrize("ahead", [False, True])
def test_a_first_sight_at_exactly_the_tolerance_is_not_corrected_and_just_beyond_is(ahead: bool) -> None:
    sign = 1.0 if ahead else -1.0
    at = _probe(DeviceClocks(30.0), MemoryStates(), T0 + sign * 30.0, T0)
    assert at.t == T0 + sign * 30.0 and at.late is (not ahead)  # within tolerance: as stamped (30 s > LATE_S)
    beyond = _probe(DeviceClocks(30.0), MemoryStates(), T0 + sign * 30.5, T0)
    # Ahead: a wrong clock, put on the hub's time. Behind: a backlog (or a clock set back), kept as stamped.
    assert beyond.t == pytest.approx(T0 if ahead else T0 - 30.5)
    assert beyond.late is (not ahead)


def test_a_message_at_exactly_late_s_is_not_late_and_just_beyond_is() -> None:
    clocks, store = DeviceClocks(30.0), MemoryStates()
    _probe(clocks, store, T0, T0)
    assert not _probe(clocks, store, T0 + 10.0, T0 + 10.0 + LATE_S).late
    assert _probe(clocks, store, T0 + 11.0, T0 + 11.01 + LATE_S).late


def test_the_drop_rule_keeps_working_through_a_fresh_hydrants_backlog() -> None:
    # A hydrant's hours of steady readings, then a real drop, drained at once: one drop, at the reading's time.
    h = Hub()
    readings = [(START + 60 * i, 0.40) for i in range(150)] + [(START + 9000, 0.33)]
    evs = [h.event(env("hydrant-b1", "hydrant_pressure", t, seq=i + 1, pressure_mpa=v))
           for i, (t, v) in enumerate(readings)]
    end = drain([(h, evs[i:i + 40]) for i in range(0, len(evs), 40)])
    h.settle(end + 60.0)
    drops: list[Signal] = h.fired("hydrant_pressure_drop")
    assert [s.t for s in drops] == [START + 9000]


def test_a_gap_in_a_devices_seqs_holds_it_and_the_rest_of_its_batch() -> None:
    # Another worker took seq 2: this worker's seq 3 and 4 cannot be put in order here, nor may 4 overtake 3.
    h = Hub()
    evs = events(h, backlog()[:4])
    h.process([evs[0]], DRAIN)
    h.tick(DRAIN + 0.1)
    plan = h.engine.plan([h.clocks.correct(e, DRAIN + 0.1, h.store) for e in evs[2:]])
    held = [(e.seq, e.device_id) for e, r, _ in plan if r.id == HOLD]
    assert held == [(3, GATE), (4, GATE)]
    assert not [e for e, r, _ in plan if r.id == "tailgating"]  # nothing reaches an order-sensitive rule


def test_a_gap_on_one_device_holds_every_late_message_for_a_while() -> None:
    # A gap is another worker's share of the queue: a door's other devices go to the hold too, so its grant and
    # its opening (from two devices) stay in one order. SHARED_S later a device whose own seqs never had a gap
    # goes straight in again; the one with the gap stays on the hold (until it is live again).
    h = Hub()
    evs = events(h, backlog()[:6])
    door = [h.event(env("door-b1", "door_opened", START + 5.0 + i, seq=i + 1, door="main")) for i in range(3)]
    h.process([evs[0], door[0]], DRAIN)
    h.engine.ctx.received = DRAIN + 0.1
    plan = h.engine.plan([h.clocks.correct(e, DRAIN + 0.1, h.store) for e in (evs[2], door[1])])
    assert [(e.device_id, e.seq) for e, r, _ in plan if r.id == HOLD] == [(GATE, 3), ("door-b1", 2)]
    h.signals += h.engine.run(plan, h.store)
    h.tick(DRAIN + 0.1)
    h.settle(DRAIN + 45.0)  # released, and SHARED_S over
    assert not [k for r, k in h.store.states if r == HOLD]
    h.engine.ctx.received = DRAIN + 45.0
    plan = h.engine.plan([h.clocks.correct(e, DRAIN + 45.0, h.store) for e in (evs[3], door[2])])
    assert {(e.device_id, e.seq) for e, _, _ in plan} == {(GATE, 4), ("door-b1", 3)} and all(e.late for e, _, _ in plan)
    assert [(e.device_id, e.seq) for e, r, _ in plan if r.id == HOLD] == [(GATE, 4)]


def test_a_device_met_live_first_keeps_the_hold_for_its_late_messages() -> None:
    # After an outage a known device's queue may come redelivered in any order: held and sorted, as before.
    h = Hub()
    h.deliver(GATE, "heartbeat", START - 10.0, START - 9.9, seq=0, uptime_s=1.0)
    evs = events(h, backlog()[:4])
    h.tick(DRAIN)
    h.engine.ctx.received = DRAIN
    plan = h.engine.plan([h.clocks.correct(e, DRAIN, h.store) for e in evs])
    assert [e.seq for e, r, _ in plan if r.id == HOLD] == [1, 2, 3, 4]


def test_a_late_sign_of_life_is_not_kept_in_memory_when_its_deadline_has_passed_on_the_hubs_clock() -> None:
    # A gas detector (offline after three missed minutes) is heard live by two workers, then its agent loses the
    # network for an hour: worker b raises it offline, rightly. Then the agent replays its spool slowly (a message
    # every 2 s, 30 s apart by their own time), every message to worker a, while b ticks the timers and a's
    # timer thread is busy (a long let-go of a held replay), so a writes nothing back. Before, a kept late signs
    # of life in memory whenever the deadline it last knew was far from the message's own time, though on the
    # hub's clock it had passed: the clear waited six messages (12 s), and b raised the device offline again in
    # the middle of its replay, once the replay's 10 s grace ran out on a deadline that only a's memory moved.
    a, b = Hub(), Hub()
    b.store = a.store = MemoryStates()
    for h in (a, b):
        h.engine = Engine(h.pack, h.ctx, write_back_s=5.0)
    a.engine.seed(a.store, T0)
    for h in (a, b):
        h.deliver("gas-b1", "heartbeat", T0, T0, uptime_s=1.0)
    at = T0 + 3600.0
    b.tick(at)
    for k in range(1, 61):
        at += 2.0
        b.tick(at)
        a.process([a.event(env("gas-b1", "heartbeat", T0 + 30 * k, seq=k + 1, uptime_s=1.0 + 30 * k))], at)
        if k == 1:
            assert [s.action for s in a.signals if s.subject == "device:gas-b1"] == ["clear"]
    gas = [s.action for h in (b, a) for s in h.signals if s.subject == "device:gas-b1" and s.rule == "device_offline"]
    assert gas == ["fire", "clear"]  # b raised it at the outage, a's replay cleared it: nothing after
