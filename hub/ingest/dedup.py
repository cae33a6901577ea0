"""Drop repeats of (device_id, seq): QoS 1 redelivery and agent replays both produce them.

Per device we keep the highest seq seen (the high-water mark) and a bitmap of the seqs *missing* in the
`window` below it. A device that sends in order has an empty bitmap, so it costs one small int; a gap or a
reordering sets a few bits until the late seqs arrive. A seq is called a repeat only when it was really seen:
one older than the window, or from a device we no longer track, is accepted (InfluxDB overwrites an identical
point in place, while dropping a message we cannot prove we have seen would lose it).
"""

from __future__ import annotations

import sys


class Deduplicator:
    """High-water mark plus a missing-seq bitmap per device, with a bound on the devices tracked."""

    def __init__(self, window: int = 4096, max_devices: int = 100_000) -> None:
        self.window = window
        self.max_devices = max_devices
        self._mask = (1 << window) - 1
        self._hwm: dict[str, int] = {}
        self._missing: dict[str, int] = {}  # only devices with a gap or a late seq; bit d = seq hwm - d
        # The first seq of a device seen lately: nothing below it was seen by us, whatever the bitmap says.
        self._floor: dict[str, int] = {}
        self.evicted = 0

    def __len__(self) -> int:
        return len(self._hwm)

    def first_time(self, device_id: str, seq: int, restart: bool = False) -> bool:
        """True the first time (device_id, seq) is offered, False for a repeat.

        restart: the message opens a session (a birth). A birth whose seq is nearer 0 than the mark means the
        device numbers from scratch again (it lost its counter in a reboot): start over from it, or everything
        it sends until it passes its old mark would be dropped. (A redelivered recent birth is near the mark.)
        """
        hwm = self._hwm.get(device_id)
        if hwm is None:
            if len(self._hwm) >= self.max_devices:
                self._evict()
            self._hwm[device_id] = seq
            if seq:
                self._floor[device_id] = seq
            return True
        if seq > hwm:
            self._hwm[device_id] = seq
            shift = seq - hwm
            missing = self._missing.get(device_id, 0)
            if missing or shift > 1:
                # Old bits move up by `shift`; the seqs skipped over (hwm+1 .. seq-1) are now missing.
                gap = (1 << min(shift, self.window)) - 2
                missing = ((missing << shift) | gap) & self._mask
                if missing:
                    self._missing[device_id] = missing
                else:
                    self._missing.pop(device_id, None)
            return True
        d = hwm - seq
        if restart and seq < d:
            self._hwm[device_id] = seq
            self._missing.pop(device_id, None)
            self._floor.pop(device_id, None)
            return True
        if d >= self.window:
            return True  # too old to know: accept (an identical point overwrites itself in InfluxDB)
        floor = self._floor.get(device_id)
        if floor is not None:
            if hwm - floor >= self.window:
                del self._floor[device_id]  # the bitmap covers the whole window by now
            elif seq < floor:
                return True  # from before we started tracking the device
        missing = self._missing.get(device_id, 0)
        bit = 1 << d
        if not missing & bit:
            return False
        missing &= ~bit
        if missing:
            self._missing[device_id] = missing
        else:
            del self._missing[device_id]
        return True

    def forget(self, device_id: str, seq: int) -> None:
        """Un-remember a seq whose message was not stored after all (so a redelivery is accepted)."""
        hwm = self._hwm.get(device_id)
        if hwm is None or seq > hwm:
            return
        d = hwm - seq
        if d < self.window:
            self._missing[device_id] = self._missing.get(device_id, 0) | (1 << d)

    def _evict(self) -> None:
        """Drop the oldest-tracked quarter of the devices (a flood of new ids must not grow memory)."""
        drop = max(1, len(self._hwm) // 4)
        for device_id in list(self._hwm)[:drop]:
            del self._hwm[device_id]
            self._missing.pop(device_id, None)
            self._floor.pop(device_id, None)
        self.evicted += drop

    def approx_bytes(self) -> int:
        """A close estimate of the memory held (keys, ints and both tables)."""
        n = sys.getsizeof(self._hwm) + sys.getsizeof(self._missing) + sys.getsizeof(self._floor)
        n += sum(sys.getsizeof(k) + sys.getsizeof(v) for k, v in self._hwm.items())
        n += sum(sys.getsizeof(v) for v in (*self._missing.values(), *self._floor.values()))
        return n
