"""A durable on-disk spool of line-protocol batches: one file per batch, written atomically.

A batch is written to a temporary file, fsynced, renamed into place, and the directory fsynced, so a crash
leaves either the whole batch or nothing, and an acknowledged batch survives a power cut. A write is complete
or an error (`SpoolError`): a short write on a full disk is never taken for success. The drainer deletes a
file only after InfluxDB accepted it; a batch InfluxDB refuses as malformed is moved to `rejected/` under a
name never used before, so nothing is silently lost or overwritten.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

_SUFFIX = ".lp"
_REJECTED = "rejected"


class SpoolError(Exception):
    """A batch could not be stored completely (disk full, I/O error, over the configured limit)."""


@dataclass(frozen=True, slots=True)
class Segment:
    """One spooled batch; `size` is what it occupies on disk (allocated blocks), not its length."""

    path: Path
    points: int
    size: int
    created: float


def disk_size(st: os.stat_result) -> int:
    """Bytes a file occupies on disk: a 100-byte file still takes a whole block."""
    return max(st.st_blocks * 512, st.st_size)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        if n <= 0:
            raise OSError(f"write returned {n} with {len(view)} bytes left")
        view = view[n:]


class Spool:
    """Append batches; hand them out oldest first; forget them once written."""

    def __init__(self, directory: Path, fsync: bool = True, max_bytes: int = 0, alarm_fraction: float = 0.8) -> None:
        self.directory = Path(directory)
        self.fsync = fsync
        self.max_bytes = max_bytes
        self.alarm_fraction = alarm_fraction
        self._pending: deque[Segment] = deque()
        self._next = 0
        self._lock = threading.Condition()
        self._bytes = 0
        self._points = 0
        self._alarmed = False
        self._wakes = 0  # wake() calls: a lingering take() returns at once

    def open(self) -> None:
        """Create the directory, drop half-written temp files, and queue what a previous run left."""
        self.directory.mkdir(parents=True, exist_ok=True)
        rejected = self.directory / _REJECTED
        rejected.mkdir(exist_ok=True)
        for tmp in self.directory.glob("*.tmp"):
            tmp.unlink()
        found = sorted(self.directory.glob(f"*{_SUFFIX}"))
        with self._lock:
            for path in found:
                data = path.read_bytes()
                self._add(Segment(path, data.count(b"\n"), disk_size(path.stat()), path.stat().st_mtime))
            # Numbers never restart: an empty spool next to old rejected files must not reuse their names.
            used = [_number(p) for p in (*found, *rejected.iterdir())]
            self._next = max((n for n in used if n is not None), default=-1) + 1
        if found:
            log.info("spool: %d batches (%d points) left from a previous run", len(found), self._points)

    def _add(self, seg: Segment) -> None:
        self._pending.append(seg)
        self._bytes += seg.size
        self._points += seg.points

    def append(self, lines: list[str]) -> Segment:
        """Durably store one batch of lines; returns once it is on disk, else raises SpoolError."""
        data = ("\n".join(lines) + "\n").encode()
        with self._lock:
            if self.max_bytes and self._bytes + len(data) > self.max_bytes:
                raise SpoolError(f"spool limit reached: {self._bytes} of {self.max_bytes} bytes in use")
            seq = self._next
            self._next += 1
        path = self.directory / f"{seq:016d}{_SUFFIX}"
        tmp = path.with_suffix(".tmp")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o640)
            try:
                _write_all(fd, data)
                if self.fsync:
                    os.fsync(fd)
                size = disk_size(os.fstat(fd))
            finally:
                os.close(fd)
            os.replace(tmp, path)
            if self.fsync:
                # The rename is durable only once the directory is: without this a power cut after the
                # ack can lose the batch.
                _fsync_dir(self.directory)
        except OSError as e:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise SpoolError(f"cannot store a batch of {len(lines)} points: {e}") from e
        seg = Segment(path, len(lines), size, time.time())
        with self._lock:
            self._add(seg)
            self._check_alarm()
            self._lock.notify_all()
        return seg

    def _check_alarm(self) -> None:
        if not self.max_bytes:
            return
        over = self._bytes >= self.alarm_fraction * self.max_bytes
        if over and not self._alarmed:
            log.warning("spool alarm: %d of %d bytes in use (alarm at %.0f%%); InfluxDB is not keeping up",
                        self._bytes, self.max_bytes, 100 * self.alarm_fraction)
        elif self._alarmed and not over:
            log.info("spool below its alarm level again (%d of %d bytes)", self._bytes, self.max_bytes)
        self._alarmed = over

    def take(self, max_points: int, timeout: float, linger: float = 0.0) -> list[Segment]:
        """The oldest segments up to about max_points (at least one); waits up to timeout for any, then linger."""
        # linger: up to that long after the oldest was spooled, for max_points or a wake().
        with self._lock:
            if not self._pending:
                self._lock.wait(timeout)
            # A live feed spools a small batch every few milliseconds; one write per batch cost the hub's drain
            # thread 93 µs a message at 2,000 msg/s (docs/performance.md, round 5). Acknowledgements do not wait
            # for this: a batch is durable once spooled.
            wakes = self._wakes
            while self._pending and self._points < max_points and self._wakes == wakes:
                left = min(linger, self._pending[0].created + linger - time.time())  # a clock set back: linger
                if left <= 0:
                    break
                self._lock.wait(left)
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
        for seg in segments:
            seg.path.unlink(missing_ok=True)
        self._forget(segments)

    def reject(self, segments: list[Segment]) -> None:
        """Set aside segments that InfluxDB refused as malformed; an existing rejected file is never replaced."""
        rejected = self.directory / _REJECTED
        for seg in segments:
            target = rejected / seg.path.name
            n = 0
            while True:
                try:
                    os.link(seg.path, target)  # fails if the name is taken, unlike rename
                    break
                except FileExistsError:
                    n += 1
                    target = rejected / f"{seg.path.stem}.{n}{_SUFFIX}"
            seg.path.unlink()
        self._forget(segments)

    def _forget(self, segments: list[Segment]) -> None:
        with self._lock:
            for seg in segments:
                self._pending.remove(seg)
                self._bytes -= seg.size
                self._points -= seg.points
            self._check_alarm()
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
        """Wake a waiting take(), lingering or not."""
        with self._lock:
            self._wakes += 1
            self._lock.notify_all()

    @property
    def depth(self) -> tuple[int, int, int]:
        """(segments, points, bytes on disk) waiting."""
        with self._lock:
            return len(self._pending), self._points, self._bytes

    @property
    def alarm(self) -> bool:
        """True while the spool is above its alarm level (a fraction of max_bytes)."""
        with self._lock:
            return self._alarmed

    @property
    def oldest_age(self) -> float:
        """Seconds since the oldest waiting segment was written (0 when empty)."""
        with self._lock:
            return time.time() - self._pending[0].created if self._pending else 0.0


def _number(path: Path) -> int | None:
    head = path.name.split(".", 1)[0]
    return int(head) if head.isdigit() else None
