"""Signs of life kept in memory and written back every few seconds give the same alerts as a write per message."""

from __future__ import annotations

from alerts_helpers import RULES, T0, community, env, kind_of

from hub.rules.engine import Engine, MemoryStates
from hub.rules.event import Ctx, Event, Signal
from hub.rules.spec import load_rules


def _engine(write_back_s: float) -> tuple[Engine, MemoryStates, Ctx]:
    c = community()
    ctx = Ctx(c)
    engine = Engine(load_rules(RULES), ctx, write_back_s)
    store = MemoryStates()
    engine.seed(store, T0)
    return engine, store, ctx


def _event(ctx: Ctx, device: str, t: float) -> Event:
    e = env(device, "gas_reading", t, lel_pct=1.0)
    return Event.from_envelope(e, kind_of(ctx.community, device), ctx.place(device), ctx.devices.get(device))


def _offline(signals: list[Signal]) -> list[tuple[str, str, int]]:
    return [(s.action, s.subject, round(s.t)) for s in signals if s.rule == "device_offline"]


def _play(write_back_s: float, sends: list[float], end: float, tick_s: float = 1.0) -> list[Signal]:
    """gas-b1 sends at the given times; the engine ticks (writing back first) as the hub's timer does."""
    engine, store, ctx = _engine(write_back_s)
    out: list[Signal] = []
    pending = sorted(sends)
    t = T0
    while t <= end:
        while pending and pending[0] <= t:
            out += engine.process([_event(ctx, "gas-b1", pending.pop(0))], store)
        out += engine.write_back(store, t)
        out += engine.tick(store, t)
        t += tick_s
    return out


def test_write_back_gives_the_same_offline_alerts() -> None:
    # Every 20 s for 30 min, silent for 10 min (3 intervals of 60 s pass: offline), then back for 5 min.
    sends = [T0 + 5 + 20 * i for i in range(90)] + [T0 + 2400 + 20 * i for i in range(15)]
    direct = _offline(_play(0.0, sends, T0 + 2800))
    deferred = _offline(_play(5.0, sends, T0 + 2800))
    assert direct == deferred
    assert [a for a, *_ in direct if _[0] == "device:gas-b1"] == ["fire", "clear"]


def test_activity_only_in_memory_is_applied_before_its_timer_runs() -> None:
    engine, store, ctx = _engine(5.0)
    for i in range(16):  # every 10 s for 150 s; after the first, only the memory knows (deadline far away)
        engine.process([_event(ctx, "gas-b1", T0 + 10 * i)], store)
    assert ("device_offline", "gas-b1") in engine._touches
    # The timer thread was late (a loaded machine, a clock step): it runs past the stored deadline at once.
    sigs = engine.tick(store, T0 + 200)
    assert not [s for s in sigs if s.rule == "device_offline" and s.subject == "device:gas-b1"]
    assert store.states[("device_offline", "gas-b1")].due == T0 + 150 + 180
    assert ("device_offline", "gas-b1") not in engine._touches


def test_write_back_stores_the_latest_activity_and_waits_its_period() -> None:
    engine, store, ctx = _engine(5.0)
    for i in range(6):
        engine.process([_event(ctx, "gas-b1", T0 + 10 * i)], store)
    before = store.states[("device_offline", "gas-b1")].data["last"]
    engine.write_back(store, T0 + 60)
    assert store.states[("device_offline", "gas-b1")].data["last"] == T0 + 50 > before
    engine.process([_event(ctx, "gas-b1", T0 + 70)], store)
    engine.write_back(store, T0 + 61)  # within write_back_s of the last write: kept in memory
    assert store.states[("device_offline", "gas-b1")].data["last"] == T0 + 50
    engine.write_back(store, T0 + 66)
    assert store.states[("device_offline", "gas-b1")].data["last"] == T0 + 70
    assert engine.pending_write_back == 0


def test_activity_written_back_in_a_transaction_that_rolls_back_is_written_again() -> None:
    # On PostgreSQL the timer's transaction can roll back after write_back (another worker changed a state it
    # writes): the signs of life it took from memory must come back for the retry, not be lost.
    engine, store, ctx = _engine(5.0)
    for i in range(6):
        engine.process([_event(ctx, "gas-b1", T0 + 10 * i)], store)
    stored = store.states[("device_offline", "gas-b1")].data["last"]
    rolled_back = MemoryStates()  # the transaction that will not commit
    rolled_back.states = dict(store.states)
    engine.write_back(rolled_back, T0 + 60)
    assert engine.pending_write_back == 0
    engine.write_back_ended(committed=False)
    assert engine.pending_write_back == 1 and store.states[("device_offline", "gas-b1")].data["last"] == stored
    engine.write_back(store, T0 + 66)  # the retry
    engine.write_back_ended(committed=True)
    assert store.states[("device_offline", "gas-b1")].data["last"] == T0 + 50
    assert engine.pending_write_back == 0
