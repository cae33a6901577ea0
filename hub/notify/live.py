"""The in-process live feed of alert notices, for the API's SSE/WebSocket stream."""

from __future__ import annotations

import logging
import queue
import threading
from collections import deque

from commhub.wire import AlertNotice

log = logging.getLogger(__name__)


class Subscription:
    """One reader's queue; a reader that falls behind loses the oldest notices, never blocks the hub."""

    def __init__(self, feed: LiveFeed, maxsize: int) -> None:
        self._feed = feed
        self._q: queue.Queue[AlertNotice] = queue.Queue(maxsize)
        self.dropped = 0

    def put(self, n: AlertNotice) -> None:
        """Called by the feed."""
        while True:
            try:
                self._q.put_nowait(n)
                return
            except queue.Full:
                try:
                    self._q.get_nowait()
                    self.dropped += 1
                except queue.Empty:
                    pass

    def get(self, timeout: float | None = None) -> AlertNotice | None:
        """The next notice, or None after the timeout."""
        try:
            return self._q.get(timeout=timeout)
        except queue.Empty:
            return None

    def close(self) -> None:
        """Stop receiving."""
        self._feed.unsubscribe(self)


class LiveFeed:
    """Fan-out of notices to subscribers, with the last `size` kept for readers who join late."""

    def __init__(self, size: int = 1000) -> None:
        self.size = size
        self._recent: deque[AlertNotice] = deque(maxlen=size)
        self._subs: list[Subscription] = []
        self._lock = threading.Lock()

    def publish(self, notices: list[AlertNotice]) -> None:
        """Hand notices to every subscriber."""
        with self._lock:
            self._recent.extend(notices)
            subs = list(self._subs)
        for s in subs:
            for n in notices:
                s.put(n)

    def subscribe(self, maxsize: int = 1000) -> Subscription:
        """A new reader."""
        s = Subscription(self, maxsize)
        with self._lock:
            self._subs.append(s)
        return s

    def unsubscribe(self, s: Subscription) -> None:
        """Remove a reader."""
        with self._lock:
            if s in self._subs:
                self._subs.remove(s)

    def recent(self, after_notice_id: int = -1) -> list[AlertNotice]:
        """Kept notices newer than a notice id (for a reader resuming)."""
        with self._lock:
            return [n for n in self._recent if n.notice_id > after_notice_id]
