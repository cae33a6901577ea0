"""A durable on-disk spool of line-protocol batches: one file per batch, written atomically.

A batch is written to a temporary file, fsynced, then renamed into place, so a crash leaves either the
whole batch or nothing. The drainer deletes a file only after InfluxDB accepted it; a batch InfluxDB
refuses as malformed is moved to `rejected/` rather than deleted, so nothing is silently lost.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

_SUFFIX = ".lp"


@dataclass(frozen=True, slots=True)
class Segment:
    """One spooled batch."""

    path: Path
    points: int
    size: int
    created: float


class Spool:
    """Append batches; hand them out oldest first; forget them once written."""

    def __init__(self, directory: Path, fsync: bool = True) -> None:
        self.directory = Path(directory)
        self.fsync = fsync
        self._pending: deque[Segment] = deque()
        self._next = 0
        self._lock = threading.Condition()
        self._bytes = 0
        self._points = 0

    def open(self) -> None:
        """Create the directory, drop half-written temp files, and queue what a previous run left."""
        self.directory.mkdir(parents=True, exist_ok=True)
        (self.directory / "rejected").mkdir(exist_ok=True)
        for tmp in self.directory.glob("*.tmp"):
            tmp.unlink()
        found = sorted(self.directory.glob(f"*{_SUFFIX}"))
        with self._lock:
            for path in found:
                data = path.read_bytes()
                st = path.stat()
                self._add(Segment(path, data.count(b"\n"), st.st_size, st.st_mtime))
            if found:
                self._next = int(found[-1].stem) + 1
        if found:
            log.info("spool: %d batches (%d points) left from a previous run", len(found), self._points)

    def _add(self, seg: Segment) -> None:
        self._pending.append(seg)
        self._bytes += seg.size
        self._points += seg.points

    def append(self, lines: list[str]) -> Segment:
        """Durably store one batch of lines; returns once it is on disk."""
        data = ("\n".join(lines) + "\n").encode()
        with self._lock:
            seq = self._next
            self._next += 1
        path = self.directory / f"{seq:016d}{_SUFFIX}"
        tmp = path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o640)
        try:
            os.write(fd, data)
            if self.fsync:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
        seg = Segment(path, len(lines), len(data), time.time())
        with self._lock:
            self._add(seg)
            self._lock.notify_all()
        return seg

    def take(self, max_points: int, timeout: float) -> list[Segment]:
        """The oldest segments up to about max_points (at least one), waiting up to timeout for any."""
        with self._lock:
            if not self._pending:
                self._lock.wait(timeout)
            out: list[Segment] = []
            total = 0
            for seg in self._pending:
                if out and total + seg.points > max_points:
                    break
                out.append(seg)
                total += seg.points
            return out

    def done(self, segments: list[Segment]) -> None:
        """Forget segments that InfluxDB has accepted."""
        self._forget(segments, None)

    def reject(self, segments: list[Segment]) -> None:
        """Set aside segments that InfluxDB refused as malformed."""
        self._forget(segments, self.directory / "rejected")

    def _forget(self, segments: list[Segment], move_to: Path | None) -> None:
        for seg in segments:
            if move_to is None:
                seg.path.unlink(missing_ok=True)
            else:
                os.replace(seg.path, move_to / seg.path.name)
        with self._lock:
            for seg in segments:
                self._pending.remove(seg)
                self._bytes -= seg.size
                self._points -= seg.points
            self._lock.notify_all()

    def wait_empty(self, timeout: float) -> bool:
        """Block until everything is written, or the timeout passes."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while self._pending:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._lock.wait(left)
            return True

    def wake(self) -> None:
        """Wake a waiting take()."""
        with self._lock:
            self._lock.notify_all()

    @property
    def depth(self) -> tuple[int, int, int]:
        """(segments, points, bytes) waiting."""
        with self._lock:
            return len(self._pending), self._points, self._bytes

    @property
    def oldest_age(self) -> float:
        """Seconds since the oldest waiting segment was written (0 when empty)."""
        with self._lock:
            return time.time() - self._pending[0].created if self._pending else 0.0
