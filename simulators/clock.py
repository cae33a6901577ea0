"""A simulated clock: simulated time runs `speed` times faster than the wall clock from a fixed start."""

from __future__ import annotations

import math
import time
from collections.abc import Callable


class SimClock:
    """Maps wall time to simulated time; speed <= 0 or inf means 'as fast as possible' (no pacing)."""

    def __init__(self, start: float, speed: float = 1.0, monotonic: Callable[[], float] = time.monotonic) -> None:
        self.start_ts = start
        self.speed = speed
        self._monotonic = monotonic
        self._wall0: float | None = None

    @property
    def paced(self) -> bool:
        """Whether simulated time follows the wall clock at all."""
        return 0 < self.speed < math.inf

    def begin(self) -> None:
        """Pin simulated `start` to the wall clock's now."""
        self._wall0 = self._monotonic()

    def now(self) -> float:
        """The current simulated time (epoch seconds); unpaced clocks never get ahead of events."""
        if self._wall0 is None:
            raise RuntimeError("SimClock.begin() was not called")
        if not self.paced:
            return math.inf
        return self.start_ts + (self._monotonic() - self._wall0) * self.speed

    def current(self) -> float:
        """Simulated now for outside readers (e.g. a hub's alert timers): start before begin(), then now()."""
        if self._wall0 is None or not self.paced:
            return self.start_ts
        return self.now()

    def sim_at(self, wall_monotonic: float) -> float:
        """The simulated time at a given monotonic wall reading."""
        if self._wall0 is None or not self.paced:
            return math.nan
        return self.start_ts + (wall_monotonic - self._wall0) * self.speed

    def wall_delay(self, sim_ts: float) -> float:
        """Wall seconds until simulated time reaches sim_ts (0 if already there or unpaced)."""
        if not self.paced:
            return 0.0
        return max(0.0, (sim_ts - self.now()) / self.speed)
