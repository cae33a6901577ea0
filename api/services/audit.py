"""The audit log: append-only, each row carrying the SHA-256 of the previous one, and its verification."""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, cast

from sqlalchemy import Engine, Table, select, update

from hub.alerts.models import AuditHead, AuditRow
from hub.alerts.sql import insert, locked

log = logging.getLogger(__name__)

AU = cast(Table, AuditRow.__table__)
AH = cast(Table, AuditHead.__table__)
GENESIS = "0" * 64
_FIELDS = ("seq", "at", "actor", "role", "action", "target", "result", "address", "prev_hash")


def row_hash(row: dict[str, Any]) -> str:
    """SHA-256 over the row's fields and the previous row's hash."""
    data = json.dumps([row[k] for k in _FIELDS], separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(data.encode()).hexdigest()


@dataclass
class Verdict:
    """The result of `verify`."""

    rows: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """No edit, deletion or insertion was found."""
        return not self.problems


class AuditLog:
    """Appends audit rows (one transaction each, serialized) and checks the chain."""

    def __init__(self, engine: Engine, clock: Callable[[], float] = time.time, reader: Engine | None = None) -> None:
        self.engine = engine
        self.reader = reader or engine
        self.clock = clock
        self.written = 0
        self.on_write: Callable[[], None] = lambda: None

    def append(self, actor: str, role: str, action: str, target: str, result: str, address: str) -> int:
        """Append one row and return its seq."""
        with self.engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                conn.exec_driver_sql("SELECT pg_advisory_xact_lock(732101)")  # one appender at a time
            head = conn.execute(locked(conn, select(AH.c.seq, AH.c.hash).where(AH.c.id == 1))).first()
            seq, prev = (int(head[0]) + 1, str(head[1])) if head else (1, GENESIS)
            row: dict[str, Any] = {"seq": seq, "at": float(self.clock()), "actor": actor[:80], "role": role[:20],
                                   "action": action[:80], "target": target[:300], "result": result[:300],
                                   "address": address[:64], "prev_hash": prev}
            row["hash"] = row_hash(row)
            conn.execute(insert(conn, AU).values(**row))
            if head:
                conn.execute(update(AH).where(AH.c.id == 1).values(seq=seq, hash=row["hash"]))
            else:
                conn.execute(insert(conn, AH).values(id=1, seq=seq, hash=row["hash"]))
        self.written += 1
        self.on_write()
        return seq

    def page(self, before: int | None = None, limit: int = 100, actor: str | None = None,
             action: str | None = None) -> list[dict[str, Any]]:
        """Rows newest first."""
        stmt = select(AU).order_by(AU.c.seq.desc()).limit(limit)
        if before is not None:
            stmt = stmt.where(AU.c.seq < before)
        if actor:
            stmt = stmt.where(AU.c.actor == actor)
        if action:
            stmt = stmt.where(AU.c.action == action)
        with self.reader.connect() as conn:
            return [dict(r) for r in conn.execute(stmt).mappings()]

    def count(self) -> int:
        """Rows in the log."""
        with self.reader.connect() as conn:
            return len(conn.execute(select(AU.c.seq)).all())

    def verify(self) -> Verdict:
        """Walk the chain: every seq present, every hash right, every link to the previous row, head at the end."""
        v = Verdict()
        prev_hash, expect = GENESIS, 1
        with self.reader.connect() as conn:
            for r in conn.execute(select(AU).order_by(AU.c.seq)).mappings():
                row = dict(r)
                v.rows += 1
                if row["seq"] != expect:
                    v.problems.append(f"rows {expect}..{row['seq'] - 1} are missing (deleted?)")
                if row["prev_hash"] != prev_hash:
                    v.problems.append(f"row {row['seq']}: does not link to the row before it")
                if row_hash(row) != row["hash"]:
                    v.problems.append(f"row {row['seq']}: contents do not match its hash (edited?)")
                prev_hash, expect = row["hash"], row["seq"] + 1
            head = conn.execute(select(AH.c.seq, AH.c.hash).where(AH.c.id == 1)).first()
        if head is None:
            if v.rows:
                v.problems.append("the head record is missing")
        elif int(head[0]) != expect - 1 or head[1] != prev_hash:
            v.problems.append(f"the log ends at row {expect - 1} but the head says {head[0]} "
                              "(rows deleted at the end?)")
        return v
