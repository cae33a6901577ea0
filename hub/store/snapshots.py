"""Camera snapshots (JPEG) arriving on `.../snap/<id>`, stored as files the API can serve to police."""

from __future__ import annotations

import os
from pathlib import Path

from commhub.topics import TopicParts

_JPEG_MAGIC = b"\xff\xd8\xff"


class SnapshotStore:
    """Writes each snapshot to <dir>/<site>/<device_id>/<snapshot_id>.jpg, atomically."""

    def __init__(self, directory: Path, max_bytes: int) -> None:
        self.directory = Path(directory)
        self.max_bytes = max_bytes

    def path(self, site: str, device_id: str, snapshot_id: str) -> Path:
        """Where one snapshot lives."""
        return self.directory / site / device_id / f"{snapshot_id}.jpg"

    def save(self, parts: TopicParts, payload: bytes) -> str | None:
        """Store a snapshot; returns None, or the reason it was refused."""
        if len(payload) > self.max_bytes:
            return f"snapshot of {len(payload)} bytes is over the {self.max_bytes}-byte limit"
        if not payload.startswith(_JPEG_MAGIC):
            return "snapshot is not a JPEG"
        path = self.path(parts.site, parts.device_id, parts.extra)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(payload)
        os.replace(tmp, path)
        return None
