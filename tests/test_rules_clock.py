"""Issue 13 item 5: rules keep device time; a backlog is not a wrong clock; a repeated (device, seq) counts once."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from alerts_helpers import T0, FakeClock, Rig, community, env, kind_of

from hub.rules.clock import DeviceClocks
from hub.rules.engine import MemoryStates
from hub.rules.event import Ctx, Event

DENIAL = {"door": "t1", "credential_ref": "f" * 16, "method": "face", "reason": "unknown_credential"}


def _ev(ctx: Ctx, device: str, t: float, historical: bool = False) -> Event:
    e = env(device, "heartbeat", t)
    e = e.model_copy(update={"historical": historical})
    return Event.from_envelope(e, kind_of(ctx.community, device), ctx.place(device), ctx.devices.get(device))


def test_a_backlog_keeps_its_time_and_a_wrong_clock_is_corrected() -> None:
    ctx = Ctx(community())
    clocks, store = DeviceClocks(30.0), MemoryStates()
    # gas-b1 keeps good time; then the hub is down for 10 min and its messages arrive together.
    assert clocks.correct(_ev(ctx, "gas-b1", T0 - 0.2), T0, store).t == T0 - 0.2
    for k in range(10):
        ev = _ev(ctx, "gas-b1", T0 + 60 * k)
        assert clocks.correct(ev, T0 + 601, store).t == ev.t, "a backlog must keep the device's own time"
    # A device two hours behind, seen for the first time: a backlog or a clock set back, kept on its own time
    # until relearn_s tells which (tests/test_rules_backlog_clock.py).
    behind = clocks.correct(_ev(ctx, "gas-b2", T0 - 7200), T0, store)
    assert behind.t == T0 - 7200 and behind.late
    # A device two hours ahead, seen for the first time: no delivery explains it, put on the hub's time.
    ahead = clocks.correct(_ev(ctx, "gas-b3", T0 + 7200), T0, store)
    assert ahead.t == pytest.approx(T0)
    # The offset survives a hub restart (it is rule state): a fresh cache reads it back.
    again = DeviceClocks(30.0)
    assert again.correct(_ev(ctx, "gas-b3", T0 + 60 + 7200), T0 + 60.5, store).t == pytest.approx(T0 + 60)


def test_a_clock_stepped_back_is_relearned_but_a_long_backlog_is_not() -> None:
    ctx = Ctx(community())
    clocks, store = DeviceClocks(30.0, relearn_s=120.0), MemoryStates()
    clocks.correct(_ev(ctx, "gas-b1", T0), T0, store)
    # NTP steps the device's clock back 300 s: its stamps lag, but advance at the pace of real time.
    t = [clocks.correct(_ev(ctx, "gas-b1", T0 - 300 + s), T0 + s, store).t for s in range(10, 400, 10)]
    assert t[-1] == pytest.approx(T0 + 390)  # corrected once the lag held for relearn_s
    # A day of backlog drained over 10 minutes advances 144x faster than real time: it stays a backlog.
    clocks2 = DeviceClocks(30.0, relearn_s=120.0)
    clocks2.correct(_ev(ctx, "gas-b2", T0), T0, store)
    start = T0 + 86400
    for i in range(600):
        ev = _ev(ctx, "gas-b2", T0 + 144 * i)
        assert clocks2.correct(ev, start + i, store).t == ev.t


def _denial(rig: Rig, t: float, seq: int) -> Any:
    return env("fgate-b1", "access_denied", t, seq, **DENIAL)


def _bursts(rig: Rig) -> list[dict[str, Any]]:
    return rig.sink.store.alerts(rule="invalid_credential_burst")


@pytest.mark.broker
def test_backlog_after_a_hub_outage_raises_what_live_would_and_repeats_count_once(
        tmp_path: Path, mosquitto: Any, unique_site: str) -> None:
    rig = Rig(tmp_path, mosquitto, unique_site, FakeClock(T0)).start()
    bound = 120.0  # a generous bound for a loaded machine; the verdicts do not depend on it
    try:
        rig.publish(env("fgate-b1", "heartbeat", T0 - 0.5), wait=False)  # its clock is good
        rig.wait_handled(1, bound)
        rig.stop_workers()
        # Three denials spread over 6 minutes while the hub is down; delivered after a 10-minute outage.
        for k, seq in enumerate((10, 11, 12)):
            rig.publish(_denial(rig, T0 + 30 + 170 * k, seq), wait=False)
        rig.clock.t = T0 + 16 * 60
        rig.start_workers()
        rig.wait_handled(3, bound)
        time.sleep(0.3)
        assert _bursts(rig) == [], "a backlog was squeezed into one window"
        # Two denials 5 s apart, each delivered twice (a reconnect before the ack), then again after a restart.
        now = rig.clock()
        first, second = _denial(rig, now, 20), _denial(rig, now + 5, 21)
        rig.clock.t = now + 6
        for e in (first, second, first, second):
            rig.publish(e, wait=False)
        rig.wait_handled(2, bound)
        rig.stop_workers()
        rig.start_workers()
        for e in (first, second):
            rig.publish(e, wait=False)
        rig.wait_handled(2, bound)
        time.sleep(0.5)
        assert _bursts(rig) == [], "a repeated (device, seq) was counted twice"
        # A third, new denial within the minute is a real burst: the rule still works.
        rig.clock.t = now + 10
        rig.publish(_denial(rig, now + 10, 22), wait=False)
        deadline = time.monotonic() + bound
        while not _bursts(rig) and time.monotonic() < deadline:
            time.sleep(0.05)
        (burst,) = _bursts(rig)
        assert burst["thresholds"]["observed"] == 3
    finally:
        rig.stop()


def _stored_offset(sink: Any, device: str) -> float | None:
    """The device's offset as stored in the rule state table (None: no row)."""
    import json

    from sqlalchemy import text
    with sink.db.connect() as conn:
        data = conn.execute(text("SELECT data FROM rule_state WHERE rule = '_clock' AND key = :k"),
                            {"k": device}).scalar()
    return None if data is None else float(json.loads(data)["est"])


def test_offsets_are_written_back_and_a_hub_restarted_on_a_stale_one_keeps_time_forward(tmp_path: Path) -> None:
    from alerts_helpers import accepted, make_config

    from hub.alerting import AlertingSink
    clock = FakeClock(T0)
    cfg = make_config(tmp_path, state_write_back_s=5.0)
    dev = "gas-b1"  # its clock runs 600 s ahead of the hub's

    def send(sink: AlertingSink, stamped: float, seq: int) -> None:
        sink.handle([accepted(cfg, env(dev, "gas_reading", stamped, seq, lel_pct=1.0))])

    def correct(sink: AlertingSink, stamped: float, received: float) -> Event:
        ctx = sink.ctx
        ev = Event.from_envelope(env(dev, "gas_reading", stamped, lel_pct=1.0), "gas", ctx.place(dev),
                                 ctx.devices[dev])
        with sink.store.tx() as tx:
            return sink.clocks.correct(ev, received, tx)

    sink = AlertingSink(cfg, clock=clock, mqtt=False)
    sink.open()
    send(sink, T0 + 600, 1)
    assert _stored_offset(sink, dev) is None, "an offset is kept in memory, not written per batch"
    clock.t = T0 + 6
    sink.tick()
    assert _stored_offset(sink, dev) == pytest.approx(600)
    clock.t = T0 + 7
    send(sink, T0 + 7 + 603, 2)  # the offset grows by 3 s: in memory until the next write-back
    assert _stored_offset(sink, dev) == pytest.approx(600) and sink.clocks.pending_write_back == 1
    last_corrected = T0 + 7  # what the hub made of the last message before the crash
    sink.db.dispose()  # a crash: no stop(), the grown offset is lost

    again = AlertingSink(cfg, clock=clock, mqtt=False)
    again.open()
    clock.t = T0 + 8
    # On the stale (lower) offset the device's time runs ahead a little, never back, and is learned again.
    first = correct(again, T0 + 8 + 603, T0 + 8)
    assert first.t >= last_corrected and first.t == pytest.approx(T0 + 8) and not first.late
    # A replay of messages from 100 s ago is still told apart from live traffic.
    replay = correct(again, T0 - 92 + 603, T0 + 9)
    assert replay.late and replay.t == pytest.approx(T0 - 92)
    # A clean stop writes back what is in memory.
    again.stop()
    assert _stored_offset(again, dev) == pytest.approx(603)


def test_an_offset_that_fell_is_stored_at_once_so_a_restart_never_puts_the_clock_back() -> None:
    ctx = Ctx(community())
    clocks, store = DeviceClocks(30.0, relearn_s=120.0, write_back_s=5.0), MemoryStates()
    clocks.correct(_ev(ctx, "gas-b1", T0 + 600), T0, store)
    assert clocks.write_back(store, T0 + 6) == 1
    # NTP steps the device's clock back to the hub's: relearned after relearn_s of lagging at real time's pace.
    seen = [clocks.correct(_ev(ctx, "gas-b1", T0 + s), T0 + s, store).t for s in range(10, 200, 10)]
    assert seen[-1] == pytest.approx(T0 + 190)
    restarted = DeviceClocks(30.0, relearn_s=120.0, write_back_s=5.0)  # a crash before any write-back
    nxt = restarted.correct(_ev(ctx, "gas-b1", T0 + 200), T0 + 200, store)
    assert nxt.t == pytest.approx(T0 + 200) and nxt.t >= seen[-1] and not nxt.late
