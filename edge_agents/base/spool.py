"""The agent's on-disk outbox: messages not yet acknowledged by the broker, and the last seq per device.

One SQLite file in WAL mode, used by one thread (the agent's pump). Rows are kept in id order, which is
the order publish() accepted them in, so a replay keeps that order.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS spool (
    id INTEGER PRIMARY KEY,
    topic TEXT NOT NULL,
    payload BLOB NOT NULL,
    retain INTEGER NOT NULL,
    session INTEGER NOT NULL,  -- > 0: a state/birth message that only makes sense in that MQTT session
    created REAL NOT NULL,     -- unix time when publish() accepted it
    size INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS seqs (device_id TEXT PRIMARY KEY, seq INTEGER NOT NULL);
"""


@dataclass(slots=True)
class Row:
    """One spooled message."""

    id: int
    topic: str
    payload: bytes
    retain: bool
    session: int
    created: float

    @property
    def size(self) -> int:
        """Bytes counted against the spool bound."""
        return len(self.payload) + len(self.topic)


class Spool:
    """SQLite outbox; every method runs in one transaction and is called from one thread at a time."""

    def __init__(self, path: Path, fsync: bool = True) -> None:
        self.path = Path(path)
        self.fsync = fsync
        self._db: sqlite3.Connection | None = None
        self.next_id = 1
        self.bytes = 0
        self.count = 0

    def open(self) -> None:
        """Open (or create) the file and load the counters."""
        db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        db.execute("PRAGMA journal_mode=WAL")
        # FULL: each commit is fsynced (power-cut safe); NORMAL: safe against a crash of the process only.
        db.execute(f"PRAGMA synchronous={'FULL' if self.fsync else 'NORMAL'}")
        db.executescript(_SCHEMA)
        max_id, total, count = db.execute("SELECT max(id), coalesce(sum(size), 0), count(*) FROM spool").fetchone()
        self.next_id = (max_id or 0) + 1
        self.bytes, self.count = int(total), int(count)
        self._db = db
        if count:
            log.info("spool %s holds %d messages (%d bytes) from before", self.path, count, total)

    @property
    def db(self) -> sqlite3.Connection:
        """The open connection."""
        if self._db is None:
            raise RuntimeError("spool is not open")
        return self._db

    def close(self) -> None:
        """Close the file; everything committed stays."""
        if self._db is not None:
            self._db.close()
            self._db = None

    def load_seqs(self) -> dict[str, int]:
        """The last seq stored per device."""
        return {d: int(s) for d, s in self.db.execute("SELECT device_id, seq FROM seqs")}

    def commit(self, rows: list[Row], acked: list[tuple[int, int]], seqs: dict[str, int]) -> None:
        """In one transaction: add rows, delete acknowledged (id, size) pairs, store the latest seqs."""
        if not rows and not acked and not seqs:
            return
        db = self.db
        db.execute("BEGIN")
        try:
            if rows:
                db.executemany("INSERT INTO spool VALUES (?, ?, ?, ?, ?, ?, ?)",
                               [(r.id, r.topic, r.payload, r.retain, r.session, r.created, r.size) for r in rows])
            if acked:
                db.executemany("DELETE FROM spool WHERE id BETWEEN ? AND ?", _ranges(i for i, _ in acked))
            if seqs:
                db.executemany("INSERT INTO seqs VALUES (?, ?) ON CONFLICT(device_id) DO UPDATE SET seq = excluded.seq",
                               list(seqs.items()))
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        self.bytes += sum(r.size for r in rows) - sum(s for _, s in acked)
        self.count += len(rows) - len(acked)

    def read_after(self, cursor: int, limit: int) -> list[Row]:
        """Up to `limit` rows with id > cursor, in id order."""
        return [Row(i, t, p, bool(r), s, c) for i, t, p, r, s, c in self.db.execute(
            "SELECT id, topic, payload, retain, session, created FROM spool WHERE id > ? ORDER BY id LIMIT ?",
            (cursor, limit))]

    def _delete(self, victims: list[tuple[int, int]]) -> None:
        if not victims:
            return
        self.db.execute("BEGIN")
        self.db.executemany("DELETE FROM spool WHERE id BETWEEN ? AND ?", _ranges(i for i, _ in victims))
        self.db.execute("COMMIT")
        self.bytes -= sum(s for _, s in victims)
        self.count -= len(victims)

    def drop_stale_sessions(self, session: int) -> list[int]:
        """Delete unsent state/birth messages of sessions before `session`; returns their ids."""
        victims = [(int(i), int(s)) for i, s in self.db.execute(
            "SELECT id, size FROM spool WHERE session > 0 AND session < ?", (session,))]
        self._delete(victims)
        return [i for i, _ in victims]

    def trim(self, max_bytes: int, max_age_s: float, now: float) -> list[int]:
        """Drop the oldest rows beyond the size bound or older than max_age_s; returns their ids."""
        dropped: list[int] = []
        cutoff = now - max_age_s
        while self.count:
            over = self.bytes - max_bytes
            victims: list[tuple[int, int]] = []
            # Ids grow with time, so the oldest rows by age are also the first by id.
            for i, s, created in self.db.execute(
                    "SELECT id, size, created FROM spool ORDER BY id LIMIT 1000"):
                if over > 0:
                    over -= s
                elif created >= cutoff:
                    break
                victims.append((int(i), int(s)))
            if not victims:
                break
            self._delete(victims)
            dropped.extend(i for i, _ in victims)
        return dropped


def _ranges(ids: Iterable[int]) -> list[tuple[int, int]]:
    """Collapse ids into (first, last) runs: acknowledgements mostly arrive in order, so few deletes."""
    out: list[tuple[int, int]] = []
    for i in sorted(ids):
        if out and out[-1][1] == i - 1:
            out[-1] = (out[-1][0], i)
        else:
            out.append((i, i))
    return out
