"""Alerts and silences for a principal: every read and act is limited to its jurisdiction in the SQL itself."""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import ColumnElement, Engine, Table, and_, case, or_, select, update

from api.services.errors import Conflict, Forbidden, Invalid, NotFound
from api.services.scope import Principal
from commhub.wire import AlertNotice
from hub.alerts.models import Alert, Outbox, Silence, Transition
from hub.alerts.store import AckRefused, AlertError, AlertStore
from hub.routing.spec import Window

log = logging.getLogger(__name__)

A = cast(Table, Alert.__table__)
T = cast(Table, Transition.__table__)
SI = cast(Table, Silence.__table__)
OB = cast(Table, Outbox.__table__)

# API action -> the store's transition name
STORE_ACTION = {"acknowledge": "acknowledged", "resolve": "resolved", "false_alarm": "false_alarm",
                "comment": "commented", "assign": "assigned", "escalate": "escalated"}
SORTS = ("id", "opened_at", "updated_at", "severity")
SEVERITY_RANK = {"low": 0, "medium": 1, "high": 2, "critical": 3}
_RANK = case(SEVERITY_RANK, value=A.c.severity, else_=-1)


@dataclass(frozen=True)
class AlertFilter:
    """List filters; every list field matches any of its values."""

    grid: Sequence[str] = ()
    building: Sequence[str] = ()
    layer: Sequence[str] = ()
    code: Sequence[str] = ()
    severity: Sequence[str] = ()
    state: Sequence[str] = ()
    since: float | None = None
    until: float | None = None


def _sort_col(sort: str) -> ColumnElement[Any]:
    return _RANK if sort == "severity" else A.c[sort]


def encode_cursor(sort: str, desc: bool, value: Any, last_id: int) -> str:
    """An opaque cursor: the sort key and id of the last row of a page."""
    raw = json.dumps([sort, desc, value, last_id], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str, sort: str, desc: bool) -> tuple[Any, int]:
    """The (value, id) of a cursor made for the same sort, or Invalid."""
    try:
        s, d, value, last_id = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        if s != sort or d != desc or not isinstance(last_id, int) or not isinstance(value, (int, float)):
            raise ValueError
    except (ValueError, TypeError):
        raise Invalid("cursor is not valid for this sort order; start again without it") from None
    return value, last_id


class AlertService:
    """Reads and actions on alerts for one principal at a time."""

    def __init__(self, store: AlertStore, reader: Engine | None = None) -> None:
        self.store = store
        self.engine = store.engine
        self.reader = reader or store.engine

    def search(self, who: Principal, f: AlertFilter, sort: str = "id", desc: bool = True, limit: int = 50,
             cursor: str | None = None) -> tuple[list[dict[str, Any]], str | None]:
        """One page of alerts in the caller's jurisdiction."""
        if sort not in SORTS:
            raise Invalid(f"unknown sort {sort!r}; use one of {', '.join(SORTS)}")
        cond = who.where(A)
        for col, values in (("grid", f.grid), ("building", f.building), ("layer", f.layer), ("code", f.code),
                            ("severity", f.severity), ("state", f.state)):
            if values:
                cond.append(A.c[col].in_(list(values)))
        if f.since is not None:
            cond.append(A.c.opened_at >= f.since)
        if f.until is not None:
            cond.append(A.c.opened_at < f.until)
        if sort == "severity":
            return self._by_severity(cond, desc, limit, cursor)
        key = _sort_col(sort)
        if cursor:
            value, last_id = decode_cursor(cursor, sort, desc)
            if sort == "id":
                cond.append(A.c.id < last_id if desc else A.c.id > last_id)
            elif desc:
                cond.append(or_(key < value, and_(key == value, A.c.id < last_id)))
            else:
                cond.append(or_(key > value, and_(key == value, A.c.id > last_id)))
        order = [key.desc(), A.c.id.desc()] if desc else [key.asc(), A.c.id.asc()]
        if sort == "id":
            order = order[1:]
        stmt = select(A, _RANK.label("rank")).where(*cond).order_by(*order).limit(limit + 1)
        with self.reader.connect() as conn:
            rows = [dict(r) for r in conn.execute(stmt).mappings()]
        nxt = None
        if len(rows) > limit:
            rows = rows[:limit]
            last = rows[-1]
            nxt = encode_cursor(sort, desc, last["rank"] if sort == "severity" else last[sort], int(last["id"]))
        return rows, nxt

    def _by_severity(self, cond: list[ColumnElement[bool]], desc: bool, limit: int,
                     cursor: str | None) -> tuple[list[dict[str, Any]], str | None]:
        # One indexed (severity, id) scan per level instead of sorting every match by a CASE expression.
        start: tuple[Any, int] | None = decode_cursor(cursor, "severity", desc) if cursor else None
        levels = sorted(SEVERITY_RANK, key=SEVERITY_RANK.__getitem__, reverse=desc)
        rows: list[dict[str, Any]] = []
        with self.reader.connect() as conn:
            for sev in levels:
                rank = SEVERITY_RANK[sev]
                extra: list[ColumnElement[bool]] = []
                if start is not None:
                    if (desc and rank > start[0]) or (not desc and rank < start[0]):
                        continue
                    if rank == start[0]:
                        extra.append(A.c.id < start[1] if desc else A.c.id > start[1])
                stmt = (select(A).where(*cond, A.c.severity == sev, *extra)
                        .order_by(A.c.id.desc() if desc else A.c.id.asc()).limit(limit + 1 - len(rows)))
                rows += [{**dict(r), "rank": rank} for r in conn.execute(stmt).mappings()]
                if len(rows) > limit:
                    break
        nxt = None
        if len(rows) > limit:
            rows = rows[:limit]
            nxt = encode_cursor("severity", desc, rows[-1]["rank"], int(rows[-1]["id"]))
        return rows, nxt

    def get(self, who: Principal, alert_id: int) -> dict[str, Any]:
        """One alert in the caller's jurisdiction with its timeline; NotFound otherwise (never Forbidden)."""
        with self.reader.connect() as conn:
            row = conn.execute(select(A).where(A.c.id == alert_id, *who.where(A))).mappings().first()
            if row is None:
                raise NotFound(f"no alert {alert_id}")
            timeline = [dict(r) for r in conn.execute(select(T).where(T.c.alert_id == alert_id).order_by(T.c.id))
                        .mappings()]
        return {**dict(row), "timeline": timeline}

    def act(self, who: Principal, alert_id: int, action: str, note: str = "",
            assignee: str | None = None) -> AlertNotice:
        """Apply an action through AlertStore.act, recording who; the reason is in the error when refused."""
        if action not in STORE_ACTION:
            raise Invalid(f"unknown action {action!r}; use one of {', '.join(STORE_ACTION)}")
        self.get(who, alert_id)  # 404 outside the jurisdiction, before saying anything about the role
        if not who.may(action):
            raise Forbidden(f"role {who.role} may not {action.replace('_', ' ')} alerts")
        if action == "assign" and not assignee:
            raise Invalid("assign needs an assignee")
        try:
            return self.store.act(alert_id, STORE_ACTION[action], who.username, note,
                                  assignee if action == "assign" else None)
        except AckRefused as e:
            raise Conflict(f"{e}: clear the condition first (e.g. close the door), then try again") from None
        except AlertError as e:
            raise Conflict(str(e)) from None

    def notices_after(self, who: Principal, after: int, limit: int = 1000) -> list[AlertNotice]:
        """Notices with id > after in the caller's jurisdiction, oldest first, exactly as sent on MQTT."""
        stmt = (select(OB.c.notice_id, OB.c.payload).join(T, T.c.id == OB.c.notice_id).join(A, A.c.id == T.c.alert_id)
                .where(OB.c.channel == "mqtt", OB.c.notice_id > after, *who.where(A))
                .order_by(OB.c.notice_id).limit(limit))
        with self.reader.connect() as conn:
            return [AlertNotice.model_validate_json(r[1]) for r in conn.execute(stmt)]

    # ---- silences -----------------------------------------------------------------------------------

    def add_silence(self, who: Principal, matchers: dict[str, str], starts_at: float | None, ends_at: float,
                    comment: str = "", kind: str = "silence") -> dict[str, Any]:
        """Create a silence or maintenance window."""
        now = self.store.clock()
        start = now if starts_at is None else starts_at
        if ends_at <= start:
            raise Invalid("ends_at must be after starts_at")
        try:
            Window(id="x", matchers=dict(matchers))
        except ValueError as e:
            raise Invalid(f"matchers: {e}".splitlines()[0]) from None
        sid = self.store.add_silence(matchers, start, ends_at, who.username, comment, kind)
        return self.silence(sid)

    def silence(self, silence_id: int) -> dict[str, Any]:
        """One silence."""
        with self.reader.connect() as conn:
            row = conn.execute(select(SI).where(SI.c.id == silence_id)).mappings().first()
        if row is None:
            raise NotFound(f"no silence {silence_id}")
        return self._public(dict(row))

    def silences(self, active_only: bool = False) -> list[dict[str, Any]]:
        """Silences, newest first."""
        stmt = select(SI).order_by(SI.c.id.desc())
        if active_only:
            stmt = stmt.where(SI.c.ends_at > self.store.clock())
        with self.reader.connect() as conn:
            return [self._public(dict(r)) for r in conn.execute(stmt).mappings()]

    def expire_silence(self, silence_id: int) -> dict[str, Any]:
        """End a silence now (it stays listed)."""
        now = self.store.clock()
        with self.engine.begin() as conn:
            row = conn.execute(select(SI).where(SI.c.id == silence_id)).mappings().first()
            if row is None:
                raise NotFound(f"no silence {silence_id}")
            if row["ends_at"] <= now:
                raise Conflict(f"silence {silence_id} has already ended")
            conn.execute(update(SI).where(SI.c.id == silence_id).values(ends_at=max(now, row["starts_at"])))
        return self.silence(silence_id)

    def _public(self, row: dict[str, Any]) -> dict[str, Any]:
        now = self.store.clock()
        return {**row, "active": row["starts_at"] <= now < row["ends_at"]}
