"""Device time for the rules: a bounded per-device clock correction that tells a backlog from a wrong clock.

A message can never arrive before it was sent, so for every message `ts - received <= offset`, where offset is
how far the device's clock is ahead of the hub's. The largest `ts - received` seen (`est`) is therefore the
device's offset, once one message came through promptly. A backlog (a hub outage, a broker queue) arrives with
`ts - received` far below `est`: its messages keep their own time, so windows see them as they happened. A
clock that was stepped back looks the same at first, but its stamps then advance at the pace of real time
while a backlog's advance much faster; after `relearn_s` of that, `est` follows the new offset. A device first
seen far behind starts in that state (`est` 0): a fresh hub draining a queue keeps the queue's stamps, and
every worker gives the device the same offset without sharing it. Only a first sight far ahead is a wrong clock
at once.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from hub.rules.event import Event, State

if TYPE_CHECKING:
    from hub.rules.engine import StateStore

RULE = "_clock"  # the pseudo-rule under which device offsets are kept with the rule state (survives restarts)
_WRITE_STEP_S = 1.0  # an offset change smaller than this is not worth a write
# A message lagging its device's usual offset by more than this is a late delivery (a spool replay, a broker
# backlog): far beyond network jitter, well under any hold time a replayed backlog could cut in two.
LATE_S = 20.0
_OWN = ("birth", "state")  # the agent's session messages: ordered by session, never late


class DeviceClocks:
    """Per-device offsets, cached in memory and kept in the StateStore when they change.

    With write_back_s > 0 an offset that grew (or a lagging stretch that began or ended) is only marked, and
    write_back() stores the marked devices at most write_back_s later, instead of a row per batch while a
    backlog drains. A crash then loses at most write_back_s of growth: the restarted hub's estimate is a little
    low, so its corrected times run a little ahead (never back), and the next prompt message raises it again.
    An estimate that fell (a clock stepped back, relearned) is stored at once: a restart on the older, higher
    one would put the device's time back and take its messages for a backlog again for relearn_s.
    """

    def __init__(self, tolerance_s: float, bound_s: float = 86400.0, relearn_s: float = 120.0,
                 write_back_s: float = 0.0) -> None:
        self.tolerance_s = tolerance_s  # offsets within this are not corrected at all
        self.bound_s = bound_s  # a clock further off than this is not corrected but replaced by the hub's
        self.relearn_s = relearn_s
        self.write_back_s = write_back_s
        self._cache: dict[str, State] = {}
        self._dirty: set[str] = set()  # devices whose offset changed since it was last stored
        self._unconfirmed: set[str] = set()  # written back, transaction not yet committed
        self._lock = threading.Lock()  # correct() runs on the worker, write_back() on the timer thread
        self._last_write_back = 0.0

    def prefetch(self, events: list[Event], store: StateStore) -> set[tuple[str, str]]:
        """The state keys of devices not cached yet (to load with the batch's rule state)."""
        return {(RULE, ev.device_id) for ev in events if ev.device_id not in self._cache}

    def correct(self, ev: Event, received: float, store: StateStore) -> Event:
        """The event on the corrected device time (or unchanged)."""
        st = self._cache.get(ev.device_id)
        if st is None:
            st = store.load(RULE, ev.device_id) or State()
            self._cache[ev.device_id] = st
        d = st.data
        est0 = est = d.get("est")
        low0 = low = d.get("low")
        o = ev.t - received
        if ev.historical:
            pass  # produced offline and replayed: its lag is not the clock's
        elif est is None:
            if o < -self.tolerance_s:
                # First sight far behind: a message cannot arrive before it was sent, so this is a backlog of a
                # device never seen (a fresh hub draining a queue) or a clock set back. Both start as a known
                # device lagging would: own stamps, est 0, and relearn_s tells a clock set back (stamps at real
                # time's pace) from a backlog (far faster). Taken for the offset, a backlog was put on its
                # batches' receive times, and two workers each put one device on its own clock.
                d["est"] = est = 0.0
                d["low"] = low = [received, ev.t]
            else:
                # First sight far ahead: no delivery explains it, the clock is wrong.
                d["est"] = est = o if o > self.tolerance_s else 0.0
        elif o >= est - self.tolerance_s:
            if o > est:
                d["est"] = est = o
            if low is not None:
                del d["low"]
                low = None
        elif low is None:
            d["low"] = low = [received, ev.t]
        elif received - low[0] >= self.relearn_s and ev.t - low[1] <= 1.5 * (received - low[0]):
            d["est"] = est = o  # stamps kept the pace of real time while lagging: the clock was stepped back
            del d["low"]
            low = None
        # Plain locals, not before/after tuples read back from the dict: this runs once per message.
        if (est != est0 or low != low0) and (est0 is None or low != low0
                                             or abs(float(est or 0.0) - float(est0 or 0.0)) >= _WRITE_STEP_S):
            if self.write_back_s <= 0 or (est0 is not None and float(est or 0.0) < float(est0)):
                store.save(RULE, ev.device_id, State(dict(d)))
                if self._dirty:
                    with self._lock:
                        self._dirty.discard(ev.device_id)
            elif ev.device_id not in self._dirty:
                # Marked already: no lock. write_back() swaps the set before it copies the dicts, so a mark
                # seen in the set it then takes is copied after this change.
                with self._lock:
                    self._dirty.add(ev.device_id)
        if ev.kind == "agent" and ev.type == "state" and ev.get("status") == "offline" and not ev.get("clean"):
            # A will is stamped when its session connected; the broker sends it when the agent dies: it is
            # news of now, and an alert on it counts from when it came.
            return ev.at(max(ev.t, received))
        offset = float(est or 0.0)
        late = ev.late or (ev.type not in _OWN and (ev.historical or o < offset - LATE_S))
        if -self.tolerance_s <= offset <= self.tolerance_s:
            t = ev.t
            if late == ev.late:
                return ev
        elif abs(offset) > self.bound_s:
            t = received
        else:
            t = ev.t - offset
        return ev.at(t, late)  # one new Event at most: nothing changes one once built

    def write_back(self, store: StateStore, now: float, force: bool = False) -> int:
        """Store the offsets that changed (every write_back_s, and at stop); returns how many."""
        if not self._dirty or (not force and now - self._last_write_back < self.write_back_s):
            return 0
        with self._lock:
            dirty, self._dirty = self._dirty, set()
            # dict() copies in one step under the GIL; a copy taken between two of correct()'s changes is
            # completed later, since correct() marks its device after it changed the dict.
            states = [(dev, State(dict(self._cache[dev].data))) for dev in dirty if dev in self._cache]
        for dev, st in states:
            store.save(RULE, dev, st)
        self._last_write_back = now
        self._unconfirmed = dirty
        return len(states)

    def write_back_ended(self, committed: bool) -> None:
        """The transaction of the last write_back ended: on a rollback its devices are marked again."""
        dirty, self._unconfirmed = self._unconfirmed, set()
        if not committed and dirty:
            with self._lock:
                self._dirty |= dirty

    def write_back_at(self) -> float:
        """When the offsets kept in memory are next due to be written (inf: none is)."""
        return self._last_write_back + self.write_back_s if self._dirty else float("inf")

    @property
    def pending_write_back(self) -> int:
        """Devices whose latest offset is only in memory."""
        return len(self._dirty)
