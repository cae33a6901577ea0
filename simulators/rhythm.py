"""Daily rhythms: local time of day and activity profiles for arrivals in a non-homogeneous Poisson process."""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

# Relative access activity per local hour: quiet nights, a morning peak (07-09) and an evening peak (17-20).
ACCESS_PROFILE: tuple[float, ...] = (
    0.04, 0.02, 0.01, 0.01, 0.02, 0.08, 0.35, 0.95, 1.00, 0.55, 0.35, 0.35,
    0.45, 0.35, 0.30, 0.30, 0.45, 0.85, 0.95, 0.80, 0.55, 0.35, 0.18, 0.08,
)
# Household water use per local hour: showers and breakfast, lunch, cooking and baths in the evening.
WATER_PROFILE: tuple[float, ...] = (
    0.02, 0.01, 0.01, 0.01, 0.02, 0.10, 0.70, 1.00, 0.60, 0.25, 0.20, 0.45,
    0.55, 0.25, 0.15, 0.15, 0.20, 0.50, 0.85, 0.90, 0.75, 0.55, 0.30, 0.08,
)
# E-bike charging load per local hour: mostly overnight and after work.
CHARGING_PROFILE: tuple[float, ...] = (
    0.90, 0.90, 0.85, 0.80, 0.70, 0.50, 0.30, 0.20, 0.10, 0.10, 0.10, 0.15,
    0.20, 0.15, 0.10, 0.10, 0.15, 0.30, 0.60, 0.85, 1.00, 1.00, 0.95, 0.90,
)


class LocalTime:
    """Local hour of day for epoch seconds in the site's zone; the UTC offset is cached per UTC hour."""

    def __init__(self, timezone: str) -> None:
        self.zone = ZoneInfo(timezone)
        self._cache: dict[int, float] = {}

    def offset(self, ts: float) -> float:
        """UTC offset in seconds at ts."""
        key = int(ts // 3600)
        off = self._cache.get(key)
        if off is None:
            delta = datetime.fromtimestamp(key * 3600, UTC).astimezone(self.zone).utcoffset()
            off = delta.total_seconds() if delta is not None else 0.0
            if len(self._cache) > 10000:
                self._cache.clear()
            self._cache[key] = off
        return off

    def hour(self, ts: float) -> float:
        """Local hour of day, 0 <= h < 24, with fractions."""
        return ((ts + self.offset(ts)) % 86400.0) / 3600.0

    def seconds_of_day(self, ts: float) -> float:
        """Local seconds since midnight."""
        return (ts + self.offset(ts)) % 86400.0

    def midnight_before(self, ts: float) -> float:
        """Epoch seconds of the local midnight at or before ts."""
        return ts - self.seconds_of_day(ts)


def profile_at(profile: tuple[float, ...], hour: float) -> float:
    """Linear interpolation of an hourly profile, wrapping at midnight."""
    i = int(hour) % 24
    frac = hour - int(hour)
    return profile[i] * (1.0 - frac) + profile[(i + 1) % 24] * frac


def arrivals(rng: random.Random, start: float, peak_per_hour: float, profile: tuple[float, ...],
             clock: LocalTime) -> Iterator[float]:
    """Arrival times of a Poisson process whose rate follows profile (by thinning); infinite."""
    if peak_per_hour <= 0:
        return
    peak = max(profile)
    rate_s = peak_per_hour * peak / 3600.0
    t = start
    while True:
        t += rng.expovariate(rate_s)
        if rng.random() * peak <= profile_at(profile, clock.hour(t)):
            yield t
