"""Drop repeats of (device_id, seq): QoS 1 redelivery and agent replays both produce them."""

from __future__ import annotations

from collections import deque


class Deduplicator:
    """Remembers the last `window` seqs of each device."""

    def __init__(self, window: int = 4096, max_devices: int = 1_000_000) -> None:
        self.window = window
        self.max_devices = max_devices
        self._seen: dict[str, tuple[set[int], deque[int]]] = {}

    def first_time(self, device_id: str, seq: int) -> bool:
        """True the first time (device_id, seq) is offered, False for a repeat within the window."""
        entry = self._seen.get(device_id)
        if entry is None:
            if len(self._seen) >= self.max_devices:
                self._seen.clear()
            entry = (set(), deque())
            self._seen[device_id] = entry
        seen, order = entry
        if seq in seen:
            return False
        seen.add(seq)
        order.append(seq)
        if len(order) > self.window:
            seen.discard(order.popleft())
        return True

    def forget(self, device_id: str, seq: int) -> None:
        """Un-remember a seq whose message was not stored after all (so a redelivery is accepted)."""
        entry = self._seen.get(device_id)
        if entry is not None:
            entry[0].discard(seq)
