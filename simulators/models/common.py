"""What every behaviour model shares: the event type, the context, periodic ticks and ordered episodes."""

from __future__ import annotations

import hashlib
import heapq
import random
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

from commhub.community import Device
from commhub.wire import Heartbeat, _Body
from simulators.recordings import Recordings
from simulators.rhythm import LocalTime

# One simulated message: (simulated epoch seconds, body). Models yield them in non-decreasing time order.
Event = tuple[float, _Body]
Model = Callable[[Device, random.Random, float, "ModelContext"], Iterator[Event]]


@dataclass(frozen=True)
class Tuning:
    """Knobs of normal life; defaults give a plausible mid-size residential community."""

    door_peak_per_hour: float = 24.0
    gate_peak_per_hour: float = 60.0
    camera_peak_per_hour: float = 40.0
    household_litres_per_day: float = 300.0
    door_contact_peak_per_hour: float = 1.2
    denial_share: float = 0.02
    visitor_share: float = 0.08


@dataclass(frozen=True)
class ModelContext:
    """Shared, read-only inputs of every model."""

    site: str
    local: LocalTime
    recordings: Recordings | None = None
    tuning: Tuning = field(default_factory=Tuning)


def ref(*parts: str) -> str:
    """An opaque credential/person reference (hex), never a name or a card number."""
    return hashlib.sha256("/".join(parts).encode()).hexdigest()[:16]


def periodic(dev: Device, rng: random.Random, start: float, make: Callable[[float, int], _Body]) -> Iterator[Event]:
    """A tick every interval, never later than the interval (liveness), at a random phase per device."""
    t = start + rng.random() * dev.interval_s
    n = 0
    while True:
        yield t, make(t, n)
        n += 1
        t += dev.interval_s * (1.0 - 0.02 * rng.random())


def heartbeats(dev: Device, rng: random.Random, start: float) -> Iterator[Event]:
    """Liveness ticks for devices whose normal life is mostly silence."""
    return periodic(dev, rng, start, lambda t, _n: Heartbeat(uptime_s=round(t - start, 3)))


def episodes(source: Iterable[tuple[float, list[Event]]]) -> Iterator[Event]:
    """Flatten episodes (start time, events at or after it) that may overlap into one time-ordered stream."""
    pending: list[tuple[float, int, _Body]] = []
    n = 0
    for t0, events in source:
        while pending and pending[0][0] <= t0:
            ts, _, body = heapq.heappop(pending)
            yield ts, body
        for ts, body in events:
            heapq.heappush(pending, (ts, n, body))
            n += 1
    while pending:
        ts, _, body = heapq.heappop(pending)
        yield ts, body


def merge(*streams: Iterator[Event]) -> Iterator[Event]:
    """Merge time-ordered streams into one."""
    return heapq.merge(*streams, key=lambda e: e[0])
