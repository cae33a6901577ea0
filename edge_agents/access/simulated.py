"""A simulated door controller / face gate / turnstile adapter: plausible event sequences at a set rate."""

from __future__ import annotations

import heapq
import logging
import random
import time
from collections.abc import Callable, Mapping
from typing import Any, Literal

from commhub.wire import (
    AccessDenied,
    AccessGranted,
    DeviceKind,
    DoorClosed,
    DoorOpened,
    Duress,
    ExitRequest,
    Passage,
    ReaderOffline,
    Tamper,
)
from edge_agents.access.hashing import CredentialHasher
from edge_agents.base.adapter import Emit, ThreadedAdapter

log = logging.getLogger(__name__)

# Scenario weights per arrival: most are residents badging in.
_SCENARIOS = (("grant", 0.80), ("deny", 0.09), ("exit", 0.08), ("forced", 0.01), ("duress", 0.003),
              ("tamper", 0.004), ("offline", 0.003))


class SimulatedAccessAdapter(ThreadedAdapter):
    """Emits grant -> opened -> closed sequences, denials, exit requests and rare alarms for each device."""

    thread_name = "access-sim"

    def __init__(self, devices: Mapping[str, DeviceKind], hasher: CredentialHasher, events_per_device_s: float,
                 seed: int | None = None, residents: int = 200) -> None:
        self.devices = dict(devices)
        self.hasher = hasher
        self.rate = events_per_device_s
        self.seed = seed
        self.residents = residents
        super().__init__()

    def _run(self, emit: Emit) -> None:
        rng = random.Random(self.seed)
        heap: list[tuple[float, int, str, Callable[[], Any] | None]] = []
        n = 0
        now = time.monotonic()
        for device_id in sorted(self.devices):
            heap.append((now + rng.expovariate(self.rate), n, device_id, None))
            n += 1
        heapq.heapify(heap)
        while heap and not self._stop.is_set():
            due, _, device_id, make = heap[0]
            wait = due - time.monotonic()
            if wait > 0:
                self._stop.wait(min(wait, 0.5))
                continue
            heapq.heappop(heap)
            if make is None:  # an arrival: pick a scenario, emit its first event, schedule the rest
                for delay, follow in self._scenario(rng, device_id):
                    heapq.heappush(heap, (due + delay, n, device_id, follow))
                    n += 1
                heapq.heappush(heap, (due + rng.expovariate(self.rate), n, device_id, None))
                n += 1
                continue
            try:
                emit(device_id, make())
                self.emitted += 1
            except RuntimeError:
                return  # the agent is stopping
            except ValueError as e:
                log.error("simulated event refused: %s", e)

    def _scenario(self, rng: random.Random, device_id: str) -> list[tuple[float, Callable[[], Any]]]:
        kind = self.devices[device_id]
        face = kind is DeviceKind.FACE_GATE
        method: Literal["card", "face"] = "face" if face else "card"
        door = "main"
        name = rng.choices([s for s, _ in _SCENARIOS], [w for _, w in _SCENARIOS])[0]
        resident = self.hasher.ref("person" if face else "card", f"resident-{rng.randrange(self.residents)}")
        stranger = self.hasher.ref("face" if face else "card", f"stranger-{rng.randrange(10_000)}")
        opened = rng.uniform(0.5, 2.0)
        closed = opened + rng.uniform(2.0, 8.0)
        if name == "grant":
            steps: list[tuple[float, Callable[[], Any]]] = [
                (0.0, lambda: AccessGranted(door=door, credential_ref=resident, method=method))]
            if kind is DeviceKind.TURNSTILE or face:
                count = 2 if rng.random() < 0.03 else 1  # an occasional tailgater
                steps.append((opened, lambda: Passage(door=door, count=count)))
            else:
                steps += [(opened, lambda: DoorOpened(door=door)), (closed, lambda: DoorClosed(door=door))]
            return steps
        if name == "deny":
            reasons: list[Literal["unknown_credential", "expired", "out_of_schedule"]] = [
                "unknown_credential", "expired", "out_of_schedule"]
            reason = rng.choice(reasons)
            ref = stranger if reason == "unknown_credential" else resident
            return [(0.0, lambda: AccessDenied(door=door, credential_ref=ref, method=method, reason=reason))]
        if name == "exit":
            return [(0.0, lambda: ExitRequest(door=door)), (opened, lambda: DoorOpened(door=door)),
                    (closed, lambda: DoorClosed(door=door))]
        if name == "forced":
            return [(0.0, lambda: DoorOpened(door=door)), (closed + 20.0, lambda: DoorClosed(door=door))]
        if name == "duress":
            return [(0.0, lambda: Duress(door=door))]
        if name == "tamper":
            return [(0.0, lambda: Tamper(kind="reader", active=True)),
                    (60.0, lambda: Tamper(kind="reader", active=False))]
        return [(0.0, lambda: ReaderOffline(door=door))]
