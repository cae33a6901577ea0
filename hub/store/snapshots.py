"""Camera snapshots (JPEG) arriving on `.../snap/<id>`, stored as files the API can serve to police.

Snapshots are evidence: every topic level is checked against the identifier pattern before it becomes part
of a path, a stored snapshot is never replaced, and the store has a size limit with an alarm before it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import threading
import uuid
from pathlib import Path

from commhub.topics import TopicParts
from hub.store.spool import disk_size

log = logging.getLogger(__name__)

_JPEG_MAGIC = b"\xff\xd8\xff"
# The wire's identifier pattern (commhub.wire.Ident): no '/', no leading '.', so never '..'.
_IDENT = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}")


class SnapshotStore:
    """Writes each snapshot to <dir>/<site>/<device_id>/<snapshot_id>.jpg, once."""

    def __init__(self, directory: Path, max_bytes: int, max_total_bytes: int = 0,
                 alarm_fraction: float = 0.8) -> None:
        self.directory = Path(directory)
        self.max_bytes = max_bytes
        self.max_total_bytes = max_total_bytes
        self.alarm_fraction = alarm_fraction
        self._used = 0
        self._alarmed = False
        self._lock = threading.Lock()

    def open(self) -> None:
        """Create the folder and measure what it holds (the limit counts snapshots of earlier runs)."""
        self.directory.mkdir(parents=True, exist_ok=True)
        for tmp in self.directory.glob("*/*/*.tmp"):
            tmp.unlink()
        self._used = sum(disk_size(p.stat()) for p in self.directory.glob("*/*/*.jpg"))
        self._check_alarm()

    def path(self, site: str, device_id: str, snapshot_id: str) -> Path:
        """Where one snapshot lives."""
        return self.directory / site / device_id / f"{snapshot_id}.jpg"

    def save(self, parts: TopicParts, payload: bytes) -> str | None:
        """Store a snapshot; returns None, or the reason it was refused."""
        for name, value in (("site", parts.site), ("device_id", parts.device_id), ("snapshot id", parts.extra)):
            if _IDENT.fullmatch(value) is None:
                return f"{name} is not an identifier (letters, digits, '_.:-', at most 64)"
        if len(payload) > self.max_bytes:
            return f"snapshot of {len(payload)} bytes is over the {self.max_bytes}-byte limit"
        if not payload.startswith(_JPEG_MAGIC):
            return "snapshot is not a JPEG"
        with self._lock:
            if self.max_total_bytes and self._used + len(payload) > self.max_total_bytes:
                return f"snapshot store is full ({self._used} of {self.max_total_bytes} bytes)"
        path = self.path(parts.site, parts.device_id, parts.extra)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.parent / f".{uuid.uuid4().hex}.tmp"
        try:
            tmp.write_bytes(payload)
            try:
                os.link(tmp, path)  # unlike a rename, never replaces an existing file
            except FileExistsError:
                if path.read_bytes() == payload:
                    return None  # a redelivery of the snapshot we already have
                return "a different snapshot with this id is already stored (kept; evidence is never replaced)"
            size = disk_size(path.stat())
        finally:
            with contextlib.suppress(OSError):
                tmp.unlink()
        with self._lock:
            self._used += size
            self._check_alarm()
        return None

    def _check_alarm(self) -> None:
        if not self.max_total_bytes:
            return
        over = self._used >= self.alarm_fraction * self.max_total_bytes
        if over and not self._alarmed:
            log.warning("snapshot store alarm: %d of %d bytes in use; new snapshots are refused at the limit",
                        self._used, self.max_total_bytes)
        self._alarmed = over

    @property
    def used_bytes(self) -> int:
        """Bytes the stored snapshots occupy on disk."""
        return self._used

    @property
    def alarm(self) -> bool:
        """True above the alarm level."""
        return self._alarmed
