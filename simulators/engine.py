"""The simulation loop: merge every device's life (plus injected incidents) in time order and publish it."""

from __future__ import annotations

import heapq
import logging
import math
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Protocol

from commhub.community import Device
from commhub.wire import Heartbeat, _Body
from simulators.clock import SimClock
from simulators.models import MODELS, ModelContext, stream

log = logging.getLogger(__name__)

# How long the paced loop sleeps at most before looking again (keeps stop() and progress responsive).
MAX_SLEEP_S = 0.05


class Publisher(Protocol):
    """Where simulated messages go; the real one is the edge agents' BaseAgent."""

    def publish(self, device_id: str, body: _Body, *, ts: datetime | None = None) -> int:
        """Publish one body for a device at (simulated) time ts; returns the seq."""
        ...


@dataclass(frozen=True, slots=True)
class Injection:
    """One message a scenario adds on top of normal life."""

    ts: float
    device_id: str
    body: _Body


# An override rewrites (or drops, by returning None) a device's normal-life body during a window.
Rewrite = Callable[[float, _Body], _Body | None]


@dataclass(frozen=True, slots=True)
class Override:
    """A scenario's change to one device's normal life in [start, end)."""

    device_id: str
    start: float
    end: float
    rewrite: Rewrite


@dataclass
class Stats:
    """What the loop has done so far."""

    devices: int = 0
    published: int = 0
    injected: int = 0
    dropped: int = 0
    sim_ts: float = math.nan
    last_ts: float = math.nan  # simulated time of the last message published
    wall_s: float = 0.0
    by_type: dict[str, int] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        """Messages per wall second."""
        return self.published / self.wall_s if self.wall_s > 0 else 0.0


def supported(devices: Sequence[Device]) -> list[Device]:
    """The devices that have a behaviour model (the agent's own pseudo-device has none)."""
    return [d for d in devices if d.kind in MODELS]


class Simulation:
    """Publishes a community's normal life, and a scenario's incidents, between start and end (simulated)."""

    def __init__(self, devices: Sequence[Device], publisher: Publisher, clock: SimClock, ctx: ModelContext,
                 seed: int, end: float = math.inf, injections: Sequence[Injection] = (),
                 overrides: Sequence[Override] = (), progress: Callable[[Stats], None] | None = None,
                 progress_every_s: float = 1.0, announce: bool = False) -> None:
        self.devices = supported(devices)
        self.publisher = publisher
        self.clock = clock
        self.ctx = ctx
        self.seed = seed
        self.end = end
        # announce: every device says it is alive at the start, so a hub's liveness clock starts there.
        hello = [Injection(clock.start_ts, d.id, Heartbeat(uptime_s=0.0)) for d in self.devices] if announce else []
        self.injections = sorted([*hello, *injections], key=lambda i: i.ts)
        self.overrides = overrides
        self.progress = progress
        self.progress_every_s = progress_every_s
        self.stats = Stats(devices=len(self.devices))
        self._stop = threading.Event()

    def stop(self) -> None:
        """Ask a running loop to return after the current message."""
        self._stop.set()

    def _injected(self) -> Iterator[tuple[float, _Body, str]]:
        for inj in self.injections:
            yield inj.ts, inj.body, inj.device_id

    def run(self) -> Stats:
        """Run until end (simulated) or stop(); blocks, returns the statistics."""
        start = self.clock.start_ts
        ids = [d.id for d in self.devices]
        gens: list[Iterator[tuple[float, _Body]]] = [stream(d, self.seed, start, self.ctx) for d in self.devices]
        inj = self._injected()
        rewrites: dict[str, list[Override]] = {}
        for o in self.overrides:
            rewrites.setdefault(o.device_id, []).append(o)
        # Heap of (ts, tie, source, body); source -1 is the scenario's injections, else a device index.
        heap: list[tuple[float, int, int, _Body]] = []
        tie = 0
        for i, g in enumerate(gens):
            ts, body = next(g)
            heap.append((ts, tie, i, body))
            tie += 1
        inj_dev: dict[int, str] = {}
        first = next(inj, None)
        if first is not None:
            heap.append((first[0], tie, -1, first[1]))
            inj_dev[tie] = first[2]
            tie += 1
        heapq.heapify(heap)
        stats = self.stats
        self.clock.begin()
        wall0 = time.monotonic()
        next_report = wall0 + self.progress_every_s
        paced = self.clock.paced
        publish = self.publisher.publish
        by_type = stats.by_type
        while heap and not self._stop.is_set():
            ts, t_tie, src, body = heap[0]
            if ts >= self.end:
                break
            now = time.monotonic()
            if now >= next_report:
                self._report(wall0, now)
                next_report = now + self.progress_every_s
            if paced:
                wait = self.clock.wall_delay(ts)
                if wait > 0:
                    self._stop.wait(min(wait, MAX_SLEEP_S))
                    continue
            heapq.heappop(heap)
            out: _Body | None = body
            if src >= 0:
                device_id = ids[src]
                nts, nbody = next(gens[src])
                heapq.heappush(heap, (nts, tie, src, nbody))
                tie += 1
                if device_id in rewrites:
                    out = _rewrite(rewrites[device_id], ts, body)
                    if out is None:
                        stats.dropped += 1
                        continue
            else:
                device_id = inj_dev.pop(t_tie)
                nxt = next(inj, None)
                if nxt is not None:
                    heapq.heappush(heap, (nxt[0], tie, -1, nxt[1]))
                    inj_dev[tie] = nxt[2]
                    tie += 1
                stats.injected += 1
            assert out is not None
            publish(device_id, out, ts=datetime.fromtimestamp(ts, UTC))
            stats.published += 1
            stats.sim_ts = stats.last_ts = ts
            kind = out.type  # type: ignore[attr-defined]
            by_type[kind] = by_type.get(kind, 0) + 1
        if not math.isinf(self.end) and not self._stop.is_set():
            stats.sim_ts = self.end
        self._report(wall0, time.monotonic())
        return stats

    def _report(self, wall0: float, now: float) -> None:
        self.stats.wall_s = now - wall0
        if self.progress is not None:
            self.progress(self.stats)


def _rewrite(overrides: list[Override], ts: float, body: _Body) -> _Body | None:
    out: _Body = body
    for o in overrides:
        if o.start <= ts < o.end:
            rewritten = o.rewrite(ts, out)
            if rewritten is None:
                return None
            out = rewritten
    return out
