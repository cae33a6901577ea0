"""A replay's holds are released together: one door's hold must not go in while another device's replay still
comes, since the rules relate devices (a credential's entry at one gate and its exit at another).

Seen in `commhub bench scale` with two workers (docs/scaling.md, sixth pass): every late message is held, and
each gate's hold was released once that gate alone had been quiet for a moment. A gate whose share of the queue
ended first went to the rules while the exit at the other gate was still held, and `anti_passback` took the
credential's two entries for a pass-back.
"""

from __future__ import annotations

import copy
import json
import random
from typing import Any

import pytest
from alerts_helpers import T0, env
from test_rules_late import Hub

import hub.rules.engine as engine_mod
from hub.rules.clock import DeviceClocks
from hub.rules.event import Event, State
from hub.rules.reorder import HOLD, HOLD_MAX_S, SETTLE_S, pack, unpack

X = "00000000000000aa"  # the credential that goes in at gate g1 and out at gate g2, in turn
OUTAGE = T0 + 3600.0  # the replay is received from here on


def _grant(ref: str, direction: str) -> dict[str, Any]:
    return {"door": "d1", "credential_ref": ref, "method": "card", "direction": direction}


def _replay(h: Hub, tail_s: float, exit_last: bool = True) -> float:
    """Both gates heard live, then an outage's replay: g1's part at once, g2's over `tail_s` (its share still
    coming), X's exit at g2 last when `exit_last`. Returns the receive time of g2's last batch."""
    for gate in ("gate-g1", "gate-g2"):
        h.deliver(gate, "heartbeat", T0, T0, uptime_s=1.0)
    seq = {"gate-g1": 100, "gate-g2": 100}

    def ev(gate: str, t: float, ref: str, direction: str) -> Event:
        seq[gate] += 1
        return h.event(env(gate, "access_granted", t, seq=seq[gate], **_grant(ref, direction)))

    at = OUTAGE
    h.tick(at)
    first = [ev("gate-g1", T0 + 100, X, "in"), ev("gate-g1", T0 + 300, X, "in")]
    if not exit_last:
        first.append(ev("gate-g2", T0 + 200, X, "out"))
    h.process(first, at)
    k = 0
    while at < OUTAGE + tail_s:  # g2's other credentials, each once, a batch every half second
        at += 0.5
        h.tick(at)
        h.process([ev("gate-g2", T0 + 400 + k, f"{k:016x}", "in")], at)
        k += 1
    if exit_last:
        at += 0.5
        h.tick(at)
        h.process([ev("gate-g2", T0 + 200, X, "out")], at)
    return at


def test_a_gate_whose_replay_ended_first_waits_for_the_other_gates_exit() -> None:
    # Before: g1's hold went in ~5 s after its last message, and its two entries fired anti_passback 3 s later,
    # while X's exit at g2 was still held behind g2's replay.
    h = Hub()
    end = _replay(h, tail_s=3 * SETTLE_S)
    h.settle(end + 2 * HOLD_MAX_S)
    assert h.fired("anti_passback") == []
    assert {d for d, *_ in h.released} == {"gate-g1", "gate-g2"}


def test_a_real_pass_back_in_a_replay_still_fires() -> None:
    # Two entries at g1 with no exit between them (the exit at g2 is stamped after both): a pass-back.
    h = Hub()
    for gate in ("gate-g1", "gate-g2"):
        h.deliver(gate, "heartbeat", T0, T0, uptime_s=1.0)
    evs = [h.event(env("gate-g1", "access_granted", T0 + 100, seq=201, **_grant(X, "in"))),
           h.event(env("gate-g1", "access_granted", T0 + 300, seq=202, **_grant(X, "in"))),
           h.event(env("gate-g2", "access_granted", T0 + 500, seq=201, **_grant(X, "out")))]
    h.tick(OUTAGE)
    h.process(evs, OUTAGE)
    h.settle(OUTAGE + 2 * HOLD_MAX_S)
    fired = h.fired("anti_passback")
    assert len(fired) == 1 and fired[0].t >= T0 + 300


def test_a_replay_that_never_goes_quiet_is_still_released_within_the_hold_bound() -> None:
    # The global wait is bounded as each hold is: a device's messages wait at most HOLD_MAX_S (plus a settle)
    # from the first look, however long another device's replay keeps coming.
    h = Hub()
    _replay(h, tail_s=3 * HOLD_MAX_S, exit_last=False)
    g1 = [r for r in h.released if r[0] == "gate-g1"]
    assert g1, "gate g1's hold was never released while g2's replay went on"
    _, when, n, since = g1[0]
    assert n == 2 and when - since <= HOLD_MAX_S + 2 * SETTLE_S + 1.0


def test_two_workers_release_their_holds_together() -> None:
    # Two workers share the rule state (as on PostgreSQL) and one queue. Worker a got g1's part of the replay and
    # went quiet; worker b still receives g2's share, X's exit last. Before, a judged "the replay is quiet" by its
    # own messages alone, released g1's hold ~5 s after its last message, and anti_passback took X's two entries
    # for a pass-back: b's hold of the exit went in more than the rule's settle later.
    a, b = Hub(), Hub()
    b.store = a.store
    for gate in ("gate-g1", "gate-g2"):
        for h in (a, b):
            h.deliver(gate, "heartbeat", T0, T0, uptime_s=1.0)
    seq = {"gate-g1": 100, "gate-g2": 100}

    def ev(h: Hub, gate: str, t: float, ref: str, direction: str) -> Event:
        seq[gate] += 1
        return h.event(env(gate, "access_granted", t, seq=seq[gate], **_grant(ref, direction)))

    at = OUTAGE
    for h in (a, b):
        h.tick(at)
    # A gap in each worker's seqs of g2 (the other's share), so both hold every late message, as in a drain.
    b.process([ev(b, "gate-g2", T0 + 50, "00000000000000bb", "in")], at)
    seq["gate-g2"] += 1
    a.process([ev(a, "gate-g1", T0 + 100, X, "in"), ev(a, "gate-g1", T0 + 300, X, "in"),
               ev(a, "gate-g2", T0 + 60, "00000000000000cc", "in")], at)
    k = 0
    while at < OUTAGE + 4 * SETTLE_S:  # b's share of g2 goes on; both workers' timers tick
        at += 0.5
        for h in (a, b):
            h.tick(at)
        b.process([ev(b, "gate-g2", T0 + 400 + k, f"{k:016x}", "in")], at)
        k += 1
    at += 0.5
    a.tick(at)
    b.tick(at)
    b.process([ev(b, "gate-g2", T0 + 200, X, "out")], at)
    while at < OUTAGE + 2 * HOLD_MAX_S:
        at += 1.0
        a.tick(at)
        b.tick(at)
    assert a.fired("anti_passback") + b.fired("anti_passback") == []
    assert a.store.load(HOLD, "gate-g1") is None and a.store.load(HOLD, "gate-g2") is None


def test_a_full_hold_is_let_go_at_the_next_timer_pass_whether_due_or_not(monkeypatch: pytest.MonkeyPatch) -> None:
    # The hold is read back all at once: past HOLD_MAX_N messages held here, the next pass lets it go (the
    # sink's timer thread is woken for it) rather than waiting for the replay to be quiet.
    monkeypatch.setattr(engine_mod, "HOLD_MAX_N", 3)
    h = Hub()
    h.deliver("gate-g1", "heartbeat", T0, T0, uptime_s=1.0)
    evs = [h.event(env("gate-g1", "access_granted", T0 + 10 + i, seq=300 + 2 * i, **_grant(f"{i:016x}", "in")))
           for i in range(3)]
    h.process(evs[:2], OUTAGE)
    assert not h.engine.hold_full and h.held("gate-g1") == 2
    h.tick(OUTAGE + 0.5)  # not due: the replay came on under SETTLE_S ago
    assert h.held("gate-g1") == 2
    h.process(evs, OUTAGE + 0.6)  # a redelivery is kept and counted again (the let-go feeds it once)
    assert h.engine.hold_full and h.held("gate-g1") == 3
    h.tick(OUTAGE + 0.7)
    assert h.held("gate-g1") == 0 and not h.engine.hold_full
    assert [d for d, _, n, _ in h.released] == ["gate-g1"]


def _fed(h: Hub) -> list[list[Event]]:
    """Spy on the hub's engine: the events of each batch of steps it runs from now on (one list per call)."""
    fed: list[list[Event]] = []
    real = h.engine.run

    def spy(work: list[Any], store: Any) -> Any:
        fed.append([ev for ev, _, _ in work])
        return real(work, store)

    h.engine.run = spy  # type: ignore[method-assign]
    return fed


def test_a_hold_row_of_an_older_hub_one_device_per_row_is_let_go_with_the_rest() -> None:
    # Rows written before the hold was one per batch: keyed by device, entries without it, a "since" of their
    # own. Read after an upgrade, they go to the rules at the first pass, nothing lost or failing.
    h = Hub()
    h.deliver("gate-g1", "heartbeat", T0, T0, uptime_s=1.0)
    old = h.event(env("gate-g1", "access_granted", T0 + 100, seq=7, **_grant(X, "in")))
    h.store.save(HOLD, "gate-g1", State({"held": [[old.t, old.seq, old.kind, False, old.body.model_dump_json()]],
                                         "since": OUTAGE}, OUTAGE))
    fed = _fed(h)
    h.tick(OUTAGE + 1.0)
    assert h.store.load(HOLD, "gate-g1") is None
    assert {(ev.device_id, ev.seq) for page in fed for ev in page} == {("gate-g1", 7)}  # to each rule that takes it


def test_a_held_body_that_no_longer_validates_costs_only_itself(caplog: pytest.LogCaptureFixture) -> None:
    # A poison entry among good ones in a hold row (a hub upgraded meanwhile reads a body otherwise): it is
    # logged and dropped; the good messages around it reach the rules, and the row is gone.
    h = Hub()
    h.deliver("gate-g1", "heartbeat", T0, T0, uptime_s=1.0)
    good = [h.event(env("gate-g1", "access_granted", T0 + 100 + i, seq=40 + i, **_grant(f"{i:016x}", "in")))
            for i in range(2)]
    rows: list[Any] = [[ev.device_id, ev.t, ev.seq, ev.kind, False, ev.body.model_dump_json()] for ev in good]
    rows.insert(1, ["gate-g1", T0 + 100.5, 99, good[0].kind, False, '{"type": "access_granted", "door": 7}'])
    rows.insert(2, ["gate-g1", "not a time", 98])  # and an entry that does not read at all
    key = h.engine.hold.key(OUTAGE)
    h.store.save(HOLD, key, State({"held": rows}, OUTAGE))
    fed = _fed(h)
    h.tick(OUTAGE + 1.0)
    assert h.store.load(HOLD, key) is None
    assert sorted({ev.seq for page in fed for ev in page}) == [40, 41]
    assert "dropping held gate-g1 seq 99" in caplog.text


def test_a_batch_rolled_back_after_planning_holds_its_late_messages_again_when_retried() -> None:
    # A deadlock or a conflict rolls the batch's transaction back and the sink plans it again. Before, the
    # engine remembered the messages as held already, and the retry dropped them from the hold: lost to the rules.
    h = Hub()
    h.deliver("gate-g1", "heartbeat", T0, T0, uptime_s=1.0)
    evs = [h.event(env("gate-g1", "access_granted", T0 + 10 + i, seq=300 + 2 * i, **_grant(f"{i:016x}", "in")))
           for i in range(3)]
    h.engine.process(evs, copy.deepcopy(h.store), OUTAGE, DeviceClocks(30.0))  # its transaction rolled back
    assert h.held("gate-g1") == 0
    h.process(evs, OUTAGE)  # the retry
    assert h.held("gate-g1") == 3
    h.settle(OUTAGE + 4 * SETTLE_S)
    assert h.held("gate-g1") == 0 and [(d, n) for d, _, n, _ in h.released] == [("gate-g1", 3)]


def test_a_hold_of_many_pages_reaches_the_rules_in_device_time_order_each_message_once(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # Read back a page at a time (here 3 messages): shuffled, with redeliveries, across two batches; every
    # message reaches the rules once, in its device's time order, and no page holds more than one page's worth.
    monkeypatch.setattr(engine_mod, "RELEASE_CHUNK", 3)
    h = Hub()
    h.deliver("gate-g1", "heartbeat", T0, T0, uptime_s=1.0)
    evs = [h.event(env("gate-g1", "access_granted", T0 + 10 + i, seq=300 + i, **_grant(f"{i:016x}", "in")))
           for i in range(10)]
    order = [*evs, evs[4], evs[5], evs[9]]
    random.Random(5).shuffle(order)
    h.process(order[:7], OUTAGE)
    h.process(order[7:], OUTAGE + 1.0)
    fed = _fed(h)
    h.settle(OUTAGE + 4 * SETTLE_S)
    pages = [sorted({ev.seq for ev in page}, key=[e.seq for e in evs].index) for page in fed]
    assert all(len(p) <= 3 for p in pages)
    seen = [seq for p in pages for seq in p]
    assert seen == [e.seq for e in evs]


def test_a_stored_run_gives_back_every_field_exactly_whatever_its_text_holds() -> None:
    # The run format is a line per message, tab-separated: a body whose strings hold tabs, newlines, a line
    # separator or quotes, and times that need every digit, come back unchanged.
    note = 'a\tb\nc\u2028d "e" \\f 单元'
    held = [("cam-b1-entrance", T0 + 0.1 + i * 1e-6, 2**40 + i, "camera", i % 2 == 1,
             json.dumps({"type": "heartbeat", "note": note, "i": i}, ensure_ascii=False)) for i in range(5)]
    back = [h for part in pack(list(reversed(held))) for h in unpack(part)]
    assert back == held
    assert json.loads(back[0][5])["note"] == note
