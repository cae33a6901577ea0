"""The engine's per (device kind, body type) routes and the clock's one-Event correction, against a hostile world."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
from alerts_helpers import community, run_in_batches

from bench import feed as feeds
from commhub.config import Config, load
from hub.ingest.message import Accepted
from hub.ingest.validate import Validator
from hub.rules.clock import DeviceClocks
from hub.rules.engine import Engine, MemoryStates
from hub.rules.event import Ctx, Event, Place
from hub.rules.kinds.absence import Absence
from hub.rules.spec import load_rules

REPO = Path(__file__).resolve().parents[1]
RULES = REPO / "configs" / "rules.yaml"
END_AT = 1_790_000_000.0  # a fixed "now" for the feed: the same events on every run
T0 = 1_790_000_000.0


@pytest.fixture(scope="module")
def cfg() -> Config:
    return load(REPO / "configs" / "commhub.yaml")


@pytest.fixture(scope="module")
def events(cfg: Config) -> list[Event]:
    """3,000 messages of normal life with every access grant an entry (anti-passback fires), as Events."""
    v = Validator(cfg.mqtt.root, cfg.community.device_index(), "w", cfg.community.site.id)
    ctx = Ctx(cfg.community)
    out = []
    for topic, payload in feeds.storm(feeds.simulate(cfg, 3000, end_at=END_AT)).messages:
        a = v.check(topic, payload, END_AT)
        assert isinstance(a, Accepted)
        out.append(Event.from_envelope(a.envelope, a.topic.device_kind, ctx.place(a.envelope.device_id), a.device))
    return out


def _unpruned(engine: Engine, events: list[Event]) -> Engine:
    """The engine with every rule of a body type offered every event of it, unfiltered (no takes(), no cares())."""
    for kind, body_type in {(ev.kind, ev.type) for ev in events}:
        engine._routes.setdefault(kind, {})[body_type] = tuple(
            (rule, False, bool(engine.write_back_s) and isinstance(rule, Absence))
            for rule in (*engine.by_type.get(body_type, ()), *engine.any_type))
    return engine


def test_devices_changing_kind_and_unknown_types_get_what_every_rule_would_make_of_them(
        cfg: Config, events: list[Event]) -> None:
    # A community reloaded mid-feed: half the devices of each kind now report as another kind (a door
    # controller re-registered as a face gate, a camera as an intrusion sensor, ...); and body types no rule
    # and no route has seen before arrive in between.
    kinds = sorted({ev.kind for ev in events})
    swap = dict(zip(kinds, kinds[1:] + kinds[:1], strict=True))
    devices = sorted({ev.device_id for ev in events})[::2]
    half = len(events) // 2
    hostile: list[Event] = []
    for i, ev in enumerate(events):
        if i >= half and ev.device_id in devices:
            ev = Event(ev.device_id, swap[ev.kind], ev.type, ev.t, ev.seq, ev.body, ev.place, ev.device)
        hostile.append(ev)
        if i % 500 == 7:
            body = SimpleNamespace(type=f"never_seen_{i}", door="d1", open=True)
            hostile.append(Event(ev.device_id, ev.kind, body.type, ev.t, ev.seq + 1, body, ev.place, ev.device))
    ctx = Ctx(cfg.community)
    pack = load_rules(RULES)
    got, got_states, got_steps = run_in_batches(Engine(pack, ctx, cfg.alerts.state_write_back_s), hostile)
    want, want_states, want_steps = run_in_batches(_unpruned(Engine(pack, ctx, cfg.alerts.state_write_back_s), hostile),
                                         hostile)
    assert got == want
    assert {k: (s.data, s.due) for k, s in got_states.states.items()} == \
        {k: (s.data, s.due) for k, s in want_states.states.items()}
    assert any(a == "fire" for a, *_ in got)  # the comparison has teeth
    assert got_steps < want_steps


def test_a_route_is_the_messages_own_kind_not_the_one_seen_before() -> None:
    # perimeter_beam fires on door_opened from an intrusion sensor only; the same device re-registered as a
    # door contact (a community reload) must not reach it through the intrusion route, nor the reverse.
    ctx = Ctx(community())  # the test community the rule tests use
    engine = Engine(load_rules(RULES), ctx)
    place = Place("s1", "g1")

    def opened(kind: str, seq: int) -> Event:
        return Event("beam-1", kind, "door_opened", T0 + seq, seq, SimpleNamespace(type="door_opened", door="d1"),
                     place)

    def rules(kind: str, seq: int) -> set[str]:
        return {rule.id for _, rule, _ in engine.plan([opened(kind, seq)])}

    assert "perimeter_beam" in rules("intrusion", 1)
    assert "perimeter_beam" not in rules("door_contact", 2)
    assert "perimeter_beam" in rules("intrusion", 3)
    # A reloaded pack is a new engine: one without the rule routes nothing to it.
    pack = load_rules(RULES)
    trimmed = pack.model_copy(update={"rules": [r for r in pack.rules if r.id != "perimeter_beam"]})
    assert not [s for s in Engine(trimmed, ctx).plan([opened("intrusion", 4)]) if s[1].id == "perimeter_beam"]
    # device_offline watching door contacts only: a camera's birth still names its agent, whose key it touches.
    narrowed = pack.model_copy(update={"rules": [r.model_copy(update={"kinds": ("door_contact",)})
                                                 if r.id == "device_offline" else r for r in pack.rules]})
    birth = Event("cam-1", "camera", "birth", T0, 0, SimpleNamespace(type="birth", agent="agent-1", session=1,
                                                                     interval_s=60.0), place)
    assert ("device_offline", "agent/agent-1") in {(r.id, k) for _, r, k in Engine(narrowed, ctx).plan([birth])}


def _ev(ts: float, seq: int, kind: str = "door_contact", body_type: str = "door_contact") -> Event:
    return Event("dc-1", kind, body_type, ts, seq, SimpleNamespace(type=body_type, open=True), Place("s1", "g1"))


@pytest.mark.parametrize("ahead", [0.0, 300.0])
def test_a_clock_jumping_back_an_hour_mid_batch(ahead: float) -> None:
    # A device (on time, or 5 min ahead) whose clock jumps back an hour mid-batch: the messages after the
    # jump look an hour old, so they are late, kept at their own time corrected by the offset already learned,
    # each one a new Event; the events handed in are left as they were.
    clocks = DeviceClocks(tolerance_s=5.0, write_back_s=5.0)
    store = MemoryStates()
    batch = [_ev(T0 + ahead - 1 + i, i) for i in range(5)] + [_ev(T0 + ahead - 3600 + i, 5 + i) for i in range(5)]
    out = [clocks.correct(ev, T0, store) for ev in batch]
    assert [e.late for e in out] == [False] * 5 + [True] * 5
    assert not any(ev.late for ev in batch)  # nothing changes an Event once built
    est = ahead + 3  # the largest lag of the prompt messages
    if ahead:
        assert [e.t for e in out[:5]] == pytest.approx([T0 + ahead - 1 + i - (ahead - 1 + i) for i in range(5)])
    else:
        assert all(e is ev for e, ev in zip(out[:5], batch[:5], strict=True))  # within tolerance: the same objects
    for e, ev in zip(out[5:], batch[5:], strict=True):
        assert e is not ev and e.seq == ev.seq and e.type == ev.type
        assert e.t == pytest.approx(ev.t - est if ahead else ev.t)
    # The estimate is not moved by the jump (one batch is no proof of a stepped clock) and the device is marked
    # for the write-back once, however many of its messages moved it.
    assert clocks.pending_write_back == 1
    assert clocks.write_back(store, T0, force=True) == 1
    kept = store.states[("_clock", "dc-1")].data
    assert kept["est"] == pytest.approx(est) and kept["low"] == [T0, T0 + ahead - 3600]
