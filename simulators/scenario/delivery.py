"""Late (historical) deliveries: a device's messages held back for a while, then delivered together.

An agent that loses its broker link spools what its devices say and replays it on reconnect: the hub then
gets minutes-old messages, stamped with their own time, after newer messages of other devices. A
`delivery.late` window of a scenario does that to one device, in order or shuffled (a replay over several
reconnects). Both the offline rules loop and the hub run put their publisher behind a LateDelivery.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from commhub.wire import Heartbeat, _Body
from simulators.scenario.spec import Late

# deliver(device_id, body, stamped, delivered): publish a body stamped with its own time, at a delivery time.
Deliver = Callable[[str, _Body, datetime, float], Any]
# deliver_batch([(device_id, body, stamped)], delivered): a replay's messages together, as a hub reads a burst.
DeliverBatch = Callable[[list[tuple[str, _Body, datetime]], float], Any]


class LateDelivery:
    """A publisher that holds each late window's messages and delivers them when the window ends."""

    def __init__(self, deliver: Deliver, windows: Sequence[Late], start: float, seed: int,
                 deliver_batch: DeliverBatch | None = None) -> None:
        self.deliver = deliver
        self.deliver_batch = deliver_batch
        self.windows = sorted(((start + w.at, start + w.at + w.lasts, w) for w in windows), key=lambda x: x[1])
        self.held: dict[int, list[tuple[str, _Body, datetime]]] = {}
        self.late = 0  # messages delivered late
        self._rng = random.Random(seed)

    def publish(self, device_id: str, body: _Body, *, ts: datetime | None = None) -> int:
        """Hold the message if its device is in a late window, after delivering every window that ended."""
        assert ts is not None
        t = ts.timestamp()
        self.release(t)
        for i, (t0, t1, w) in enumerate(self.windows):
            if w.device == device_id and t0 <= t < t1 and not (w.heartbeats and isinstance(body, Heartbeat)):
                self.held.setdefault(i, []).append((device_id, body, ts))
                return 0
        self.deliver(device_id, body, ts, t)
        return 0

    def release(self, now: float) -> None:
        """Deliver the held messages of every window that ended by now (all of them with now=inf)."""
        for i, (_t0, t1, w) in enumerate(self.windows):
            if t1 > now or i not in self.held:
                continue
            msgs = self.held.pop(i)
            if w.order == "shuffled":
                self._rng.shuffle(msgs)
            self.late += len(msgs)
            if self.deliver_batch is not None:
                self.deliver_batch(msgs, t1)
                continue
            for device_id, body, ts in msgs:
                self.deliver(device_id, body, ts, t1)
