"""Notice the host's clock being set (stepped) rather than running.

Rule timers, escalation deadlines and absence deadlines are times on the hub's clock (time.time). When that clock
is set back, every one of them comes that much later in real time: a door held open raises its alarm an hour
late after a one-hour step back. When it is set forward, every timer due in the skipped span falls due at once
(the devices silent for it are raised offline). The hub does not move its stored timers (that needs one shift,
once, across every worker); it says so: a warning and a counter per step, so the operator knows.

A step is told from time passing by a clock that runs through everything but a step: CLOCK_BOOTTIME (it counts
a suspended machine's sleep, as the wall clock does; CLOCK_MONOTONIC would not), or time.monotonic where there
is none. Between two looks, the wall clock's advance minus that clock's advance is the step; under STEP_S it is
drift and slewing (NTP slews at most 0.5 ms a second), not a step.
"""

from __future__ import annotations

import time
from collections.abc import Callable

STEP_S = 5.0


def _steady() -> float:
    try:
        return time.clock_gettime(time.CLOCK_BOOTTIME)
    except (AttributeError, OSError):  # not Linux
        return time.monotonic()


class ClockWatch:
    """Compares the wall clock's advance with a steady clock's between looks."""

    def __init__(self, wall: Callable[[], float] = time.time, steady: Callable[[], float] = _steady,
                 step_s: float = STEP_S) -> None:
        self.wall = wall
        self.steady = steady
        self.step_s = step_s
        self._last: tuple[float, float] | None = None
        self.back = 0  # steps seen, by direction
        self.forward = 0
        self.back_s = 0.0  # seconds, summed
        self.forward_s = 0.0

    def look(self) -> float:
        """The step since the last look (negative: set back), or 0.0 when the clock only ran."""
        now = (self.wall(), self.steady())
        last, self._last = self._last, now
        if last is None:
            return 0.0
        step = (now[0] - last[0]) - (now[1] - last[1])
        if abs(step) < self.step_s:
            return 0.0
        if step < 0:
            self.back += 1
            self.back_s -= step
        else:
            self.forward += 1
            self.forward_s += step
        return step
