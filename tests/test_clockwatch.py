"""The host's clock set back or forward is told from time passing, and the alerting sink says so (hub.clockwatch).

The hub's timers are times on its clock: set back an hour, every alarm comes an hour late. The hub does not move
them yet; it warns and counts, so the operator knows.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from alerts_helpers import make_config

from hub.alerting import AlertingSink
from hub.clockwatch import STEP_S, ClockWatch
from hub.metrics import HubMetrics


class Clocks:
    """A wall clock and a steady clock, moved by hand."""

    def __init__(self) -> None:
        self.wall = 1_780_000_000.0
        self.steady = 5_000.0

    def run(self, s: float) -> None:
        """Time passes: both advance."""
        self.wall += s
        self.steady += s


def _watch(c: Clocks) -> ClockWatch:
    return ClockWatch(wall=lambda: c.wall, steady=lambda: c.steady)


def test_time_passing_is_no_step_and_a_set_clock_is_one_either_way() -> None:
    c = Clocks()
    w = _watch(c)
    assert w.look() == 0.0  # the first look has nothing to compare with
    c.run(3600.0)  # an hour passes (a suspended machine counts: CLOCK_BOOTTIME runs through a sleep)
    assert w.look() == 0.0
    c.wall -= 3600.0  # set back an hour
    c.run(1.0)
    assert w.look() == pytest.approx(-3600.0)
    c.wall += 600.0  # set forward ten minutes
    assert w.look() == pytest.approx(600.0)
    assert (w.back, w.back_s, w.forward, w.forward_s) == (1, pytest.approx(3600.0), 1, pytest.approx(600.0))


def test_drift_and_slewing_under_the_threshold_are_not_steps_and_the_threshold_is() -> None:
    c = Clocks()
    w = _watch(c)
    w.look()
    for _ in range(100):  # NTP slewing at its 500 ppm limit, a second between looks
        c.run(1.0)
        c.wall -= 0.0005
        assert w.look() == 0.0
    c.wall -= STEP_S - 0.01
    assert w.look() == 0.0
    c.wall -= STEP_S
    assert w.look() == pytest.approx(-STEP_S)
    assert w.back == 1 and w.forward == 0


def test_a_wall_clock_that_stands_still_while_time_passes_is_set_back() -> None:
    # What a clock set back continuously looks like to the timers: it is counted, in steps of what it lost.
    c = Clocks()
    w = _watch(c)
    w.look()
    c.steady += 30.0
    assert w.look() == pytest.approx(-30.0)


@pytest.fixture
def sink(tmp_path: Path) -> Iterator[AlertingSink]:
    s = AlertingSink(make_config(tmp_path, tick_s=60), mqtt=False)  # the real clock: the watch is on
    try:
        yield s
    finally:
        s.db.dispose()


def test_the_sink_watches_only_the_real_clock(sink: AlertingSink, tmp_path: Path) -> None:
    assert sink.clock_watch is not None
    injected = AlertingSink(make_config(tmp_path / "other", tick_s=60), clock=lambda: time.time() + 5, mqtt=False)
    try:
        assert injected.clock_watch is None  # a test's or a scenario's clock jumps on purpose
        assert injected.look_at_clock() == 0.0
    finally:
        injected.db.dispose()


def test_the_sink_warns_of_a_set_clock_and_counts_it_on_its_metrics(sink: AlertingSink,
                                                                    caplog: pytest.LogCaptureFixture) -> None:
    c = Clocks()
    sink.clock_watch = _watch(c)
    metrics = HubMetrics("w1")
    sink.register_metrics(metrics)
    caplog.set_level(logging.WARNING, logger="hub.alerting")
    assert sink.look_at_clock() == 0.0
    c.run(10.0)
    assert sink.look_at_clock() == 0.0 and not caplog.records
    c.wall -= 3600.0
    assert sink.look_at_clock() == pytest.approx(-3600.0)
    c.wall += 120.0
    assert sink.look_at_clock() == pytest.approx(120.0)
    text = " ".join(r.getMessage() for r in caplog.records)
    assert "set back 3600 s" in text and "set forward 120 s" in text
    got = {name: metrics.registry.get_sample_value(name, {"worker": "w1"})
           for name in ("commhub_clock_set_back_total", "commhub_clock_set_back_seconds_total",
                        "commhub_clock_set_forward_total", "commhub_clock_set_forward_seconds_total")}
    assert got == {"commhub_clock_set_back_total": 1.0, "commhub_clock_set_back_seconds_total": pytest.approx(3600.0),
                   "commhub_clock_set_forward_total": 1.0,
                   "commhub_clock_set_forward_seconds_total": pytest.approx(120.0)}
