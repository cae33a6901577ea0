"""The alert store: applies rule signals and human actions to alerts in one SQL transaction each.

Rule state, alert rows, the audit trail and the notice outbox change together, so a crash at any point
leaves either all of a change or none of it. Alert identity is (rule, subject): the unique `active_key`
column with INSERT ... ON CONFLICT makes a re-trigger update the open alert even when workers race.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, cast

import orjson
from sqlalchemy import (
    Connection,
    Engine,
    Table,
    delete,
    func,
    or_,
    select,
    text,
    update,
)

from commhub.config import WebhookConfig
from commhub.wire import AlertNotice
from hub.alerts import notice as notices
from hub.alerts.cache import VERSION_KEY, StateCache
from hub.alerts.db import migrate
from hub.alerts.models import Alert, HeldRun, Outbox, RuleState, Silence, Transition
from hub.alerts.sql import (
    PG_DELETE,
    PG_LOCK_STATES,
    PG_LOCK_VERSIONS,
    PG_PLACEHOLDERS,
    PG_STATES,
    PG_UPSERT,
    insert,
    locked,
    pg_keys,
    pg_rows,
)
from hub.routing.router import Decision, Router, matches
from hub.routing.spec import Window
from hub.rules.clock import RULE as CLOCK_RULE
from hub.rules.event import MAX_REFS, Signal, State
from hub.rules.reorder import HOLD, Held, merge, pack, unpack

log = logging.getLogger(__name__)

# The standard library's encoder, for what orjson refuses (a non-string key, an int past 64 bits).
_JSON_ENCODE = json.JSONEncoder(separators=(",", ":"), sort_keys=True).encode
_SORT_KEYS = orjson.OPT_SORT_KEYS


def _encode(data: dict[str, Any]) -> str:
    """A state's JSON text, keys sorted (the same text for the same state, so an unchanged one is not written)."""
    # orjson: 2.7 µs for a typical state against 23 µs for json's encoder (docs/performance.md, round 4);
    # the same text as json's for every state of the realistic feed.
    try:
        return orjson.dumps(data, option=_SORT_KEYS).decode()
    except TypeError:
        return _JSON_ENCODE(data)


def _decode(text: str) -> Any:
    """A state from its JSON text (orjson; json's for NaN or Infinity, which older versions wrote)."""
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return json.loads(text)


def _sqlite_keys_in(pairs: list[tuple[str, str]]) -> tuple[str, tuple[str, ...]]:
    """(rule, key) IN pairs as SQLite text and parameters, as `rule = ? AND key IN (...)` per rule: SQLite scans
    the whole table for a row-value IN list, and searches the primary key for this (a 10,000-device soak's CPU
    per message rose with the table). Text: building and compiling a Core expression cost more than the query."""
    by_rule: dict[str, list[str]] = {}
    for rule, key in pairs:
        by_rule.setdefault(rule, []).append(key)
    params: list[str] = []
    terms = []
    for rule, keys in by_rule.items():
        terms.append(f"(rule = ? AND key IN ({','.join('?' * len(keys))}))")
        params.append(rule)
        params.extend(keys)
    return " OR ".join(terms), tuple(params)


# SQLite's statements for the rule state of a batch, sent to the driver as they are (see _sqlite_keys_in).
_SQLITE_SELECT = "SELECT rule, key, data, due FROM rule_state WHERE "
_SQLITE_DELETE = "DELETE FROM rule_state WHERE "
_SQLITE_VERSION = "SELECT data FROM rule_state WHERE rule = ? AND key = ?"
_SQLITE_UPSERT = ("INSERT INTO rule_state (rule, key, data, due) VALUES (?, ?, ?, ?) "
                  "ON CONFLICT (rule, key) DO UPDATE SET data = excluded.data, due = excluded.due")
# The timer pass's look at what is due next, as text on both dialects (no parameters): compiling the Core
# expression cost more than the query (docs/performance.md, round 5).
_DUE_TIMES = ("SELECT (SELECT min(due) FROM rule_state), "
              "(SELECT min(escalate_at) FROM alerts WHERE state IN ('open', 'escalated')), "
              "(SELECT min(resolved_at) FROM alerts WHERE state = 'resolved')")
_SQLITE_KEEP = "INSERT INTO rule_held (hold, run, part, lines) VALUES (?, ?, ?, ?)"
# The next part of a held run (one statement, built once: a let-go reads thousands of parts).
_NEXT_PART = "SELECT part, lines FROM rule_held WHERE hold = {} AND run = {} AND part > {} ORDER BY part LIMIT 1"
_SQLITE_PART = _NEXT_PART.format("?", "?", "?")
_PART = text(_NEXT_PART.format(":h", ":r", ":p"))

A = cast(Table, Alert.__table__)
T = cast(Table, Transition.__table__)
RS = cast(Table, RuleState.__table__)
HR = cast(Table, HeldRun.__table__)
_UNCACHED = frozenset({CLOCK_RULE, HOLD})  # rule state rows never kept in the state cache (see committed)
OB = cast(Table, Outbox.__table__)
SI = cast(Table, Silence.__table__)
# The advisory lock space of alert identities (hub.alerts.db.migrate uses the single-key lock 732100).
_ALERT_LOCKS = 732101

# How often an alert kept quiet by a silence or maintenance window is looked at again: its delivery when the
# window ends is at most this late.
_RECHECK_SUPPRESSED_S = 30.0
LIVE = ("open", "acknowledged", "escalated")
ACTIVE = (*LIVE, "resolved")  # a re-trigger of these updates the same alert
ALLOWED = {
    "acknowledged": ("open", "escalated"),
    "resolved": ("open", "escalated", "acknowledged"),
    "closed": ("acknowledged", "resolved"),
    "false_alarm": ("open", "escalated", "acknowledged", "resolved"),
    # A person may also escalate by hand, assign the alert, or comment on it in any state.
    "escalated": ("open", "acknowledged", "escalated"),
    "assigned": (*ACTIVE,),
    "commented": (*ACTIVE, "closed", "false_alarm"),
}


class AlertError(Exception):
    """A human action that cannot be applied (unknown alert, wrong state)."""


class AckRefused(AlertError):
    """The alert's condition must clear first (e.g. a forced door that is still open)."""


class StateConflict(Exception):
    """Another worker changed rule states this transaction read and changed (`stale`, locked by us now)."""

    def __init__(self, stale: set[tuple[str, str]]) -> None:
        super().__init__(f"{len(stale)} rule state(s) changed by another worker, e.g. {min(stale)}")
        self.stale = stale


class AlertStore:
    """SQL-backed alerts; every public method is one transaction."""

    def __init__(self, engine: Engine, router: Router, rules: Mapping[str, Any], site: str,
                 webhooks: Sequence[WebhookConfig], clock: Callable[[], float], worker_id: str,
                 auto_close_s: float = 86400.0, lease_s: float = 30.0) -> None:
        self.engine = engine
        self.router = router
        self.rules = dict(rules)
        self.site = site
        self.webhooks = list(webhooks)
        self.clock = clock
        self.worker_id = worker_id
        self.auto_close_s = auto_close_s
        self.lease_s = lease_s
        self.on_notices: Callable[[list[AlertNotice]], None] = lambda _n: None
        # Told, after each commit, the earliest timer the transaction set (rule state, escalation, auto-close).
        self.on_due: Callable[[float], None] = lambda _t: None
        # The hub sets this: it publishes its own MQTT notices right after the commit, so it leases them at once.
        self.lease_own_mqtt = False
        self.cache = StateCache()  # rule states kept decoded between transactions (SQLite; hub.alerts.cache)
        # The batch thread's connection, kept between its transactions (batch_tx): a pool checkout and return
        # a batch cost more than a small batch's SQL. Dropped after any failure; the next batch takes a new one.
        self._batch_conn: Connection | None = None

    def start(self) -> None:
        """Create or upgrade the schema, and take back notices this worker was sending when it stopped."""
        migrate(self.engine)
        with self.engine.begin() as conn:
            conn.execute(update(OB).where(OB.c.lease_owner == self.worker_id, OB.c.delivered_at.is_(None))
                         .values(lease_owner=None, lease_until=None))

    @contextmanager
    def tx(self, optimistic: bool = False) -> Iterator[Tx]:
        """One transaction; its notices are handed to on_notices after the commit.

        optimistic (PostgreSQL): rule state is read without row locks and only the rows that changed are
        locked, at the end, checked against what was read (StateConflict if another worker changed them).
        """
        with self.engine.begin() as conn:
            tx = Tx(self, conn, self.clock(), optimistic)
            yield tx
            tx.flush()
        self._after(tx)

    @contextmanager
    def batch_tx(self, optimistic: bool = False) -> Iterator[Tx]:
        """tx() on the connection the batch thread (only) keeps between its transactions."""
        # A transaction that fails leaves nothing behind: it is rolled back, the connection is closed (it may be
        # the broken one), and the next batch starts on a fresh one from the pool.
        conn = self._batch_conn
        if conn is None or conn.closed or conn.invalidated:
            conn = self._batch_conn = self.engine.connect()
        try:
            with conn.begin():
                tx = Tx(self, conn, self.clock(), optimistic)
                yield tx
                tx.flush()
        except BaseException:
            self._batch_conn = None
            with contextlib.suppress(Exception):
                conn.close()
            raise
        self._after(tx)

    def close(self) -> None:
        """Give the batch thread's connection back (stop, before the engine is disposed)."""
        conn, self._batch_conn = self._batch_conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.close()

    def _after(self, tx: Tx) -> None:
        tx.committed()
        if tx.min_due is not None:
            self.on_due(tx.min_due)
        if tx.notices:
            self.on_notices(tx.notices)

    # ---- human actions ---------------------------------------------------------------------------

    def act(self, alert_id: int, action: str, by: str, note: str = "", assignee: str | None = None) -> AlertNotice:
        """acknowledged / resolved / closed / false_alarm / escalated / assigned / commented, by a person."""
        with self.tx() as tx:
            return tx.act(alert_id, action, by, note, assignee)

    def acknowledge(self, alert_id: int, by: str, note: str = "") -> AlertNotice:
        """Acknowledge (refused while an ack-requires-clear condition is still active)."""
        return self.act(alert_id, "acknowledged", by, note)

    def open_report(self, category: str, grid: str, by: str, building: str | None = None,
                    unit: str | None = None, note: str = "") -> AlertNotice:
        """A resident report becomes a ticket (an alert of the resident_report rule)."""
        spec = self.rules.get("resident_report")
        if spec is None:
            raise AlertError("no resident_report rule in the rule pack")
        severity = spec.categories.get(category, spec.severity)
        subject = f"report:{uuid.uuid4().hex[:16]}"
        with self.tx() as tx:
            return tx.open_alert(spec, subject, severity, {"site": self.site, "grid": grid, "building": building,
                                                           "unit": unit, "device": None},
                                 [], {"category": category}, None, by=by, note=note)

    def add_silence(self, matchers: Mapping[str, Any], starts_at: float, ends_at: float, by: str,
                    comment: str = "", kind: str = "silence") -> int:
        """Add a silence or maintenance window at run time."""
        Window(id="x", matchers=dict(matchers))  # validates the labels
        with self.engine.begin() as conn:
            return int(conn.execute(insert(conn, SI).values(kind=kind, matchers=dict(matchers), starts_at=starts_at,
                                                            ends_at=ends_at, created_by=by, comment=comment)
                                    .returning(SI.c.id)).scalar_one())

    # ---- reads -----------------------------------------------------------------------------------

    def get(self, alert_id: int) -> dict[str, Any] | None:
        """One alert row."""
        with self.engine.connect() as conn:
            row = conn.execute(select(A).where(A.c.id == alert_id)).mappings().first()
            return dict(row) if row else None

    def alerts(self, **where: Any) -> list[dict[str, Any]]:
        """Alert rows matching column equalities, oldest first."""
        stmt = select(A).where(*[A.c[k] == v for k, v in where.items()]).order_by(A.c.id)
        with self.engine.connect() as conn:
            return [dict(r) for r in conn.execute(stmt).mappings()]

    def transitions(self, alert_id: int) -> list[dict[str, Any]]:
        """The audit trail of one alert."""
        with self.engine.connect() as conn:
            return [dict(r) for r in conn.execute(select(T).where(T.c.alert_id == alert_id).order_by(T.c.id))
                    .mappings()]

    # ---- timers ----------------------------------------------------------------------------------

    def due_times(self) -> tuple[float | None, float | None]:
        """The earliest committed timers: (a rule state's due time, an escalation or auto-close); None: none."""
        with self.engine.connect() as conn:
            row = conn.exec_driver_sql(_DUE_TIMES).one()
        alerts = [float(row[1])] if row[1] is not None else []
        if row[2] is not None:
            alerts.append(float(row[2]) + self.auto_close_s)
        return (None if row[0] is None else float(row[0])), min(alerts, default=None)

    def escalate_due(self) -> int:
        """Escalate alerts past their deadline; close resolved alerts past auto_close_s. Returns changes."""
        with self.tx() as tx:
            return tx.escalate_due() + tx.auto_close()

    # ---- outbox ----------------------------------------------------------------------------------

    def claim(self, channel: str, limit: int = 200) -> list[tuple[int, str, int]]:
        """Lease pending notices of one channel: (outbox id, payload, attempts so far)."""
        now = self.clock()
        with self.engine.begin() as conn:
            stmt = (select(OB.c.id).where(OB.c.channel == channel, OB.c.delivered_at.is_(None),
                                          OB.c.failed_at.is_(None), OB.c.next_at <= now,
                                          or_(OB.c.lease_until.is_(None), OB.c.lease_until < now))
                    .order_by(OB.c.id).limit(limit))
            ids = list(conn.execute(locked(conn, stmt, skip=True)).scalars())
            if not ids:
                return []
            conn.execute(update(OB).where(OB.c.id.in_(ids)).values(lease_owner=self.worker_id,
                                                                    lease_until=now + self.lease_s))
            rows = conn.execute(select(OB.c.id, OB.c.payload, OB.c.attempts).where(OB.c.id.in_(ids))
                                .order_by(OB.c.id)).all()
            return [(int(r[0]), str(r[1]), int(r[2])) for r in rows]

    def delivered(self, ids: Sequence[int]) -> None:
        """Mark notices as delivered."""
        if ids:
            with self.engine.begin() as conn:
                conn.execute(update(OB).where(OB.c.id.in_(list(ids))).values(
                    delivered_at=self.clock(), lease_owner=None, lease_until=None))

    def delivered_notices(self, channel: str, notice_ids: Sequence[int]) -> None:
        """Mark one channel's rows of these notices as delivered."""
        if notice_ids:
            with self.engine.begin() as conn:
                conn.execute(update(OB).where(OB.c.channel == channel, OB.c.notice_id.in_(list(notice_ids)))
                             .values(delivered_at=self.clock(), lease_owner=None, lease_until=None))

    def retry_later(self, outbox_id: int, error: str, delay_s: float | None) -> None:
        """Record a failed attempt; delay_s None gives the notice up (it stays in SQL with its error)."""
        now = self.clock()
        values: dict[str, Any] = {"attempts": OB.c.attempts + 1, "last_error": error[:2000], "lease_owner": None,
                                  "lease_until": None}
        if delay_s is None:
            values["failed_at"] = now
        else:
            values["next_at"] = now + delay_s
        with self.engine.begin() as conn:
            conn.execute(update(OB).where(OB.c.id == outbox_id).values(**values))

    def pending(self, channel: str | None = None) -> int:
        """Notices not yet delivered nor given up."""
        stmt = select(OB.c.id).where(OB.c.delivered_at.is_(None), OB.c.failed_at.is_(None))
        if channel:
            stmt = stmt.where(OB.c.channel == channel)
        with self.engine.connect() as conn:
            return len(conn.execute(stmt).all())

    def purge(self, older_than_s: float) -> int:
        """Delete delivered notices older than this."""
        with self.engine.begin() as conn:
            res = conn.execute(delete(OB).where(OB.c.delivered_at < self.clock() - older_than_s))
            return int(res.rowcount or 0)


class Tx:
    """One transaction: the rules' StateStore plus alert changes; collects the notices it produced.

    Locked (the default): every key a transaction reads is locked as it is read (FOR UPDATE on PostgreSQL, in
    sorted order), so a racing worker waits. Optimistic (PostgreSQL only): keys are read without locks with
    their row version (xmin); at flush only the changed rows are locked, in sorted order, and a row another
    transaction changed since it was read raises StateConflict before anything of it is written. Two workers
    fed the same devices then hold row locks only for the few milliseconds between flush and commit.
    """

    def __init__(self, store: AlertStore, conn: Connection, now: float, optimistic: bool = False) -> None:
        self.s = store
        self.conn = conn
        self.now = now
        self.optimistic = optimistic and conn.dialect.name == "postgresql"
        # Optimistic: the row version (xmin) each key had when read (None: no row); keys this transaction has
        # written (their rows are locked by us from then on, so later writes need no check).
        self._versions: dict[tuple[str, str], str | None] = {}
        self._mine: set[tuple[str, str]] = set()
        self._alert_locks: set[int] = set()  # advisory lock ids of alert identities held by this transaction
        self.notices: list[AlertNotice] = []
        # As read from SQL (or last written): the JSON text (None = no row) and the due time.
        self._states: dict[tuple[str, str], tuple[str | None, float | None]] = {}
        # Decoded states handed to the rules, and which of them were saved since: one decode and one encode
        # per key and transaction, however many events of the batch touch the key.
        self._objs: dict[tuple[str, str], State] = {}
        self._dirty: set[tuple[str, str]] = set()
        self._kept: dict[str, list[Held]] = {}  # held messages to write, by hold marker
        self._runs: dict[str, int] = {}  # per hold marker, the last run this transaction wrote
        self._silences: list[Window] | None = None
        self.min_due: float | None = None  # the earliest timer this transaction set (for the timer thread)
        # SQLite: the state cache, the rule-state version read at this transaction's start (None: not yet),
        # whether it wrote rule state (then it sets the version to _base + 1), whether the cache must be emptied.
        self._cache = store.cache if conn.dialect.name == "sqlite" else None
        # SQLite: the driver's own connection, for the statements every batch sends (the version row, the
        # rule-state SELECT and upsert): SQLAlchemy's execution path cost 30-50 µs a statement, the query a few.
        self._raw: Any = conn.connection.driver_connection if self._cache is not None else None
        self._base: int | None = None
        self._wrote = False
        self._reset = False

    # ---- StateStore --------------------------------------------------------------------------------

    def prefetch(self, pairs: set[tuple[str, str]]) -> None:
        """Load (and on PostgreSQL lock) every key a batch will touch, in sorted order to avoid deadlocks."""
        todo = sorted(p for p in pairs if p not in self._states)
        if not todo:
            return
        conn = self.conn
        for i in range(0, len(todo), 400):
            chunk = todo[i:i + 400]
            if self.optimistic:
                for r, k in chunk:
                    self._states[(r, k)] = (None, None)
                    self._versions[(r, k)] = None
                for row in conn.execute(PG_STATES, pg_keys(chunk)):
                    self._states[(row[0], row[1])] = (row[2], row[3])
                    self._versions[(row[0], row[1])] = row[4]
                continue
            if conn.dialect.name != "postgresql":
                # Committed by this process and unchanged since (the version says so): no query, no decode.
                for pair, (obj, text, due) in self._cached().take(chunk).items():
                    self._states[pair] = (text, due)
                    if obj is not None:
                        self._objs[pair] = obj
                chunk = [pair for pair in chunk if pair not in self._states]
                if not chunk:
                    continue
                where, params = _sqlite_keys_in(chunk)
                for r, k in chunk:
                    self._states[(r, k)] = (None, None)
                for row in self._raw.execute(_SQLITE_SELECT + where, params):
                    self._states[(row[0], row[1])] = (row[2], row[3])
                continue
            for r, k in chunk:
                self._states[(r, k)] = (None, None)
            for row in self._lock(chunk, versions=False)[1]:
                self._states[(row[0], row[1])] = (row[2], row[3])

    def load(self, rule: str, key: str) -> State | None:
        """One key's state (prefetched, or read now), locked for this transaction."""
        k = (rule, key)
        obj = self._objs.get(k)
        if obj is not None:
            return obj
        if k not in self._states:
            self.prefetch({k})
        text, due = self._states[k]
        if text is None:
            return None
        obj = State(_decode(text), due)
        self._objs[k] = obj
        if rule == HOLD:
            # Read once, to let it go: its text (an older hub's row kept its held messages inline) need not stay
            # beside the decoded copy until the commit. Not None, so the row is still known to exist (and is
            # deleted once emptied).
            self._states[k] = ("", due)
        return obj

    def save(self, rule: str, key: str, state: State) -> None:
        """Remember a changed state; encoded and written in bulk before the commit (flush)."""
        k = (rule, key)
        self._objs[k] = state
        self._dirty.add(k)

    def discard(self, rule: str, key: str) -> None:
        """Drop a state a failed rule may have half changed; the next load decodes the stored one again."""
        k = (rule, key)
        self._objs.pop(k, None)
        self._dirty.discard(k)

    def keep(self, hold: str, held: Held) -> None:
        """Keep a late message under a hold marker; written with the transaction's states (flush), as a run."""
        self._kept.setdefault(hold, []).append(held)

    def kept(self, holds: Sequence[str]) -> Iterator[Held]:
        """Every message kept under these markers, in (time, seq, device) order, each once: the runs merged,
        one part of each read at a time."""
        self._write_kept()
        runs: list[tuple[str, int]] = []
        for i in range(0, len(holds), 400):
            stmt = select(HR.c.hold, HR.c.run).where(HR.c.hold.in_(holds[i:i + 400])).distinct()
            runs.extend((r[0], r[1]) for r in self.conn.execute(stmt))
        return merge(self._run(*r) for r in sorted(runs))

    def _run(self, hold: str, run: int) -> Iterator[Held]:
        """One run's messages, a part at a time (the parts there are, in order)."""
        part = -1
        while True:
            if self._raw is not None:
                rows = self._raw.execute(_SQLITE_PART, (hold, run, part)).fetchall()
            else:
                rows = self.conn.execute(_PART, {"h": hold, "r": run, "p": part}).all()
            if not rows:
                return
            part = rows[0][0]
            yield from unpack(rows[0][1])

    def unkeep(self, holds: Sequence[str]) -> None:
        """Delete the messages kept under these markers."""
        self._write_kept()
        for i in range(0, len(holds), 400):
            self.conn.execute(delete(HR).where(HR.c.hold.in_(holds[i:i + 400])))

    def _write_kept(self) -> None:
        kept, self._kept = self._kept, {}
        rows: list[tuple[str, int, int, str]] = []
        for hold, held in kept.items():
            run = self._runs[hold] = self._runs.get(hold, -1) + 1
            rows.extend((hold, run, i, lines) for i, lines in enumerate(pack(held)))
        if not rows:
            return
        if self._raw is not None:
            self._raw.executemany(_SQLITE_KEEP, rows)
        else:
            self.conn.execute(HR.insert(), [dict(zip(("hold", "run", "part", "lines"), r, strict=True)) for r in rows])

    def flush(self) -> None:
        """Write changed states: one upsert and one delete for the whole transaction, in key order; then the
        messages kept.

        Optimistic: StateConflict (naming the stale keys, now locked by us) before anything is written; the
        changes stay pending, so the caller may redo the stale keys' steps and flush again.
        """
        self._flush_states()
        self._write_kept()

    def _flush_states(self) -> None:
        if not self._dirty:
            return
        gone: list[tuple[str, str]] = []
        rows: list[dict[str, Any]] = []
        # Sorted: two transactions writing overlapping keys take their row locks in the same order.
        for k in sorted(self._dirty):
            state = self._objs[k]
            before = self._states.get(k, (None, None))
            if not state.data and state.due is None:
                if before[0] is not None:
                    gone.append(k)
                continue
            text = _encode(state.data) if state.data else "{}"
            if before == (text, state.due):
                continue
            rows.append({"rule": k[0], "key": k[1], "data": text, "due": state.due})
        conn = self.conn
        if self.optimistic and (gone or rows):
            self._claim(gone, rows)
        self._dirty.clear()
        for k in gone:
            self._states[k] = (None, None)
        for r in rows:
            self._states[(r["rule"], r["key"])] = (r["data"], r["due"])
            if r["due"] is not None:
                self._due(r["due"])
        if conn.dialect.name == "sqlite":
            if gone or rows:
                self._cached()
                self._wrote = True
                rows.append({"rule": VERSION_KEY[0], "key": VERSION_KEY[1], "data": str(self._version()), "due": None})
            for i in range(0, len(gone), 400):
                where, params = _sqlite_keys_in(gone[i:i + 400])
                self._raw.execute(_SQLITE_DELETE + where, params)
            if rows:
                self._raw.executemany(_SQLITE_UPSERT, [(r["rule"], r["key"], r["data"], r["due"]) for r in rows])
            return
        if gone:
            conn.execute(PG_DELETE, pg_keys(gone))
        if rows:
            conn.execute(PG_UPSERT, pg_rows(rows))

    def _cached(self) -> StateCache:
        """The state cache (SQLite), valid at the version this transaction read at its first use of it."""
        assert self._cache is not None
        if self._base is None:
            rows = self._raw.execute(_SQLITE_VERSION, VERSION_KEY).fetchall()  # all: no statement left open
            self._base = int(rows[0][0]) if rows else 0
            self._cache.begin(self._base)
        return self._cache

    def _version(self) -> int:
        """The rule-state version this transaction commits (SQLite): the one it read, plus one if it wrote."""
        assert self._base is not None
        return self._base + 1 if self._wrote else self._base

    def committed(self) -> None:
        """After the commit: the keys this transaction read or wrote go (back) to the state cache."""
        cache = self._cache
        if cache is None or self._base is None:
            return
        if self._reset:
            cache.reset()
            return
        objs = self._objs
        # Not the device clocks' rows: hub.rules.clock keeps the State it loaded and changes it in later batches.
        # Nor the hold's: each is written once and read once, when the hold is let go (a replay's worth of
        # messages kept decoded in memory meanwhile).
        cache.committed(self._base, self._version(),
                        {k: (objs.get(k) if text is not None else None, text, due)
                         for k, (text, due) in self._states.items() if k[0] not in _UNCACHED})

    def forget(self, keys: set[tuple[str, str]]) -> None:
        """Drop what this transaction read or changed of these keys: the next load reads them again."""
        for k in keys:
            self._states.pop(k, None)
            self._objs.pop(k, None)
            self._versions.pop(k, None)
            self._dirty.discard(k)

    def _lock(self, keys: list[tuple[str, str]], versions: bool) -> tuple[set[tuple[str, str]], list[Any]]:
        """Lock the rule state rows of these keys (sorted; PostgreSQL), 400 at a time: the keys whose row we
        inserted (as placeholders) and the rows (rule, key, version) or (rule, key, data, due).

        One way for every locking read, so every transaction takes rule state locks in one order: per chunk,
        placeholders for missing keys, then FOR UPDATE on all of them, both in key order. A placeholder makes a
        racing worker wait on our lock instead of losing an update; a racing insert of the same key makes ours
        wait for it, then do nothing. SQLite needs neither (BEGIN IMMEDIATE).
        """
        conn = self.conn
        added: set[tuple[str, str]] = set()
        rows: list[Any] = []
        for i in range(0, len(keys), 400):
            params = pg_keys(keys[i:i + 400])
            added.update((r[0], r[1]) for r in conn.execute(PG_PLACEHOLDERS, params))
            rows.extend(conn.execute(PG_LOCK_VERSIONS if versions else PG_LOCK_STATES, params))
        return added, rows

    def _claim(self, gone: list[tuple[str, str]], rows: list[dict[str, Any]]) -> None:
        """Lock the rows about to be written (as a locked read does); StateConflict if one changed since it was
        read.

        Device clock offsets are not checked: each worker keeps its own estimate in memory and stores it only
        for a restart, so the last writer's is as good as any (in a backlog drain they change every batch).
        """
        keys = sorted({*gone, *((r["rule"], r["key"]) for r in rows)} - self._mine)
        if not keys:
            return
        added, locked_rows = self._lock(keys, versions=True)
        current: dict[tuple[str, str], str] = {(r[0], r[1]): r[2] for r in locked_rows}
        stale = [k for k in keys if k in self._versions and k[0] != CLOCK_RULE
                 and ((k in added) != (self._versions[k] is None)
                      or (k not in added and current.get(k) != self._versions[k]))]
        self._mine.update(keys)  # locked by us now, stale or not: a redo under these locks needs no check
        if stale:
            raise StateConflict(set(stale))

    def postpone(self, rule: str, until: float) -> int:
        """Move a rule's timers due before `until` to `until`."""
        self.flush()
        self._due(until)
        res = self.conn.execute(update(RS).where(RS.c.rule == rule, RS.c.due < until).values(due=until))
        if self._cache is not None and res.rowcount and rule not in _UNCACHED:
            # Rows this transaction did not read changed: other workers' caches must see a new version, ours
            # starts again empty.
            self._cached()
            self._wrote = self._reset = True
            self._raw.execute(_SQLITE_UPSERT, (*VERSION_KEY, str(self._version()), None))
        return int(res.rowcount or 0)

    def due(self, now: float) -> list[tuple[str, str]]:
        """Keys whose timer is due (skipping rows another worker holds)."""
        self.flush()
        stmt = select(RS.c.rule, RS.c.key).where(RS.c.due <= now).order_by(RS.c.due).limit(1000)
        return [(r[0], r[1]) for r in self.conn.execute(locked(self.conn, stmt, skip=True))]

    def span(self, rule: str) -> tuple[int, float | None]:
        """How many keys of a rule have a timer (every worker's, as committed), and the latest of them."""
        self.flush()
        n, latest = self.conn.execute(select(func.count(RS.c.due), func.max(RS.c.due)).where(RS.c.rule == rule)).one()
        return int(n), latest

    def known(self, rule: str) -> set[str]:
        """Keys with state under a rule."""
        self.flush()
        return set(self.conn.execute(select(RS.c.key).where(RS.c.rule == rule)).scalars())

    # ---- signals -----------------------------------------------------------------------------------

    def apply(self, signals: Sequence[Signal]) -> None:
        """Turn rule signals into alert changes."""
        self._lock_alerts(signals)
        for sig in signals:
            spec = self.s.rules.get(sig.rule)
            if spec is None:
                log.warning("signal from unknown rule %s ignored", sig.rule)
                continue
            if sig.action == "fire":
                self._fire(sig, spec)
            else:
                self._clear(sig, spec)

    def _lock_alerts(self, signals: Sequence[Signal]) -> None:
        """On PostgreSQL, take every alert identity the signals touch, in one global order, before any row.

        Alert rows are locked as signals are applied, in event order; two workers applying the same alerts in
        two orders would deadlock. A transaction-scoped advisory lock per identity, all taken at once in
        sorted order, also covers identities whose row does not exist yet (two workers opening it at once).
        """
        if self.conn.dialect.name != "postgresql" or not signals:
            return
        keys = {f"{sig.rule}|{sig.subject}" for sig in signals}
        keys.update(f"{rule}|{subject}" for sig in signals for rule, subject in sig.members)
        todo = sorted({_lock_id(k) for k in keys} - self._alert_locks)
        if todo:
            # unnest emits the array in order, and each row's lock is taken before the next row is read.
            self.conn.execute(text("SELECT pg_advisory_xact_lock(:space, k) FROM unnest(CAST(:ks AS integer[])) AS k"),
                              {"space": _ALERT_LOCKS, "ks": todo})
            self._alert_locks.update(todo)

    def _get(self, key: str) -> dict[str, Any] | None:
        row = self.conn.execute(locked(self.conn, select(A).where(A.c.active_key == key))).mappings().first()
        return dict(row) if row else None

    def _fire(self, sig: Signal, spec: Any) -> None:
        key = f"{sig.rule}|{sig.subject}"
        refs = [notices.event_ref(r) for r in sig.refs]
        row = self._get(key)
        if row is None:
            row = self.open_alert(spec, sig.subject, sig.severity, sig.place.to_dict(), refs, sig.thresholds,
                                  sig.incident, insert_only=True)
            if row is not None:
                self._merge(sig)
                return
            row = self._get(key)  # another worker opened it between our read and our insert
            if row is None:
                return
        changes: dict[str, Any] = {"count": row["count"] + 1, "last_fired_at": self.now, "updated_at": self.now,
                                   "condition_active": True, "events": _merge_refs(row["events"], refs),
                                   "thresholds": {**(row["thresholds"] or {}), **sig.thresholds}}
        if sig.incident:
            changes["incident"] = sig.incident
        transition = None
        if row["state"] == "resolved":
            transition = "reopened"
            changes.update(state="open", resolved_at=None)
        if notices.SEVERITY_RANK[sig.severity] > notices.SEVERITY_RANK[row["severity"]]:
            transition = transition or "severity_raised"
            changes["severity"] = sig.severity
        if transition:
            row.update(changes)
            d = self._decide(row, row["tier"])
            changes.update(route=d.to_dict(), escalate_at=self._deadline(row, d))
        self._update(row, changes)
        if transition:
            self._record(row, transition, row["state"] if transition != "reopened" else "resolved", "system", "")
        self._merge(sig)

    def _merge(self, sig: Signal) -> None:
        # A correlation signal names the member alerts that are now part of its incident.
        for rule, subject in sig.members:
            member = self._get(f"{rule}|{subject}")
            if member is not None and member["incident"] != sig.incident:
                self._update(member, {"incident": sig.incident, "updated_at": self.now})
                self._record(member, "merged", member["state"], "system", f"part of incident {sig.incident}")

    def _clear(self, sig: Signal, spec: Any) -> None:
        row = self._get(f"{sig.rule}|{sig.subject}")
        if row is None:
            return
        changes: dict[str, Any] = {"condition_active": False, "updated_at": self.now}
        if row["auto_resolve"] and row["state"] in LIVE:
            changes.update(state="resolved", resolved_at=self.now, escalate_at=None)
            self._update(row, changes)
            self._record(row, "resolved", None, "system", "condition cleared")
        else:
            self._update(row, changes)

    def open_alert(self, spec: Any, subject: str, severity: str, place: Mapping[str, Any],
                   refs: list[dict[str, Any]], thresholds: Mapping[str, Any], incident: str | None,
                   by: str = "system", note: str = "", insert_only: bool = False) -> Any:
        """Insert a new open alert with its route; None (insert_only) when one is already active."""
        row: dict[str, Any] = {
            "active_key": f"{spec.id}|{subject}", "rule": spec.id, "code": spec.code, "subject": subject,
            "severity": severity, "layer": str(spec.layer), "site": place["site"], "grid": place["grid"],
            "building": place.get("building"), "unit": place.get("unit"), "device_id": place.get("device"),
            "state": "open", "condition_active": True, "ack_requires_clear": spec.ack_requires_clear,
            "auto_resolve": spec.auto_resolve, "count": 1, "incident": incident, "events": refs[-MAX_REFS:],
            "thresholds": dict(thresholds), "tier": 0, "opened_at": self.now, "updated_at": self.now,
            "last_fired_at": self.now, "acked_at": None, "resolved_at": None, "closed_at": None,
        }
        d = self._decide(row, 0)
        row["tier"] = d.tier  # tiers that resolve to nobody were skipped
        row["route"] = d.to_dict()
        row["escalate_at"] = self._deadline(row, d)
        if row["escalate_at"] is not None:
            self._due(row["escalate_at"])
        stmt = insert(self.conn, A).values(**row).on_conflict_do_nothing(index_elements=["active_key"])
        new_id = self.conn.execute(stmt.returning(A.c.id)).scalar()
        if new_id is None:
            if insert_only:
                return None
            raise AlertError(f"alert {row['active_key']} is already active")
        row["id"] = int(new_id)
        n = self._record(row, "opened", None, by, note)
        return row if insert_only else n

    # ---- human actions and timers -------------------------------------------------------------------

    def act(self, alert_id: int, action: str, by: str, note: str, assignee: str | None = None) -> AlertNotice:
        """Apply a person's transition, or raise AlertError / AckRefused."""
        if action not in ALLOWED:
            raise AlertError(f"unknown action {action!r}; use one of {', '.join(ALLOWED)}")
        row = self.conn.execute(locked(self.conn, select(A).where(A.c.id == alert_id))).mappings().first()
        if row is None:
            raise AlertError(f"no alert {alert_id}")
        a = dict(row)
        if a["state"] not in ALLOWED[action]:
            raise AlertError(f"alert {alert_id} is {a['state']}; cannot go to {action}")
        if action in ("acknowledged", "resolved") and a["ack_requires_clear"] and a["condition_active"]:
            raise AckRefused(f"alert {alert_id} ({a['code']}) cannot be {action} while its condition is active")
        before = a["state"]
        if action == "commented":
            self._update(a, {"updated_at": self.now})
            return self._record(a, "commented", before, by, note)
        if action == "assigned":
            if not assignee:
                raise AlertError("assigning needs an assignee")
            self._update(a, {"assignee": assignee, "updated_at": self.now})
            return self._record(a, "assigned", before, by, f"to {assignee}" + (f": {note}" if note else ""))
        if action == "escalated":
            d = self._decide(a, a["tier"] + 1)
            self._update(a, {"state": "escalated", "tier": d.tier, "route": d.to_dict(), "updated_at": self.now,
                             "escalate_at": self._deadline(a, d)})
            return self._record(a, "escalated", before, by, note or f"escalated by hand; now tier {d.tier}")
        changes: dict[str, Any] = {"state": action, "updated_at": self.now, "escalate_at": None}
        if action == "acknowledged":
            changes["acked_at"] = self.now
        elif action == "resolved":
            changes["resolved_at"] = self.now
        else:
            changes.update(closed_at=self.now, active_key=None)  # the identity is free for a new alert
        self._update(a, changes)
        return self._record(a, action, before, by, note)

    def escalate_due(self) -> int:
        """Escalate open alerts nobody acknowledged in time."""
        stmt = (select(A).where(A.c.escalate_at <= self.now, A.c.state.in_(("open", "escalated")))
                .order_by(A.c.escalate_at).limit(200))
        n = 0
        for row in self.conn.execute(locked(self.conn, stmt, skip=True)).mappings().all():
            a = dict(row)
            current = self._decide(a, a["tier"])
            if current.suppressed:  # silenced or inhibited: look again soon, tell nobody new
                self._update(a, {"escalate_at": self.now + min(current.deadline_s or 60.0, _RECHECK_SUPPRESSED_S)})
                continue
            if (a["route"] or {}).get("suppressed"):
                # The silence or maintenance window is over and nobody was told: deliver to the current tier
                # with a fresh deadline (escalating now would skip a tier that never had its chance).
                quiet = a["route"]["suppressed"]
                self._update(a, {"tier": current.tier, "route": current.to_dict(), "updated_at": self.now,
                                 "escalate_at": self._deadline(a, current)})
                self._record(a, "delivered", a["state"], "system", f"{quiet} is over; delivered to tier {current.tier}")
                n += 1
                continue
            if current.last_tier:
                self._update(a, {"escalate_at": None})
                continue
            d = self._decide(a, a["tier"] + 1)
            before = a["state"]
            self._update(a, {"state": "escalated", "tier": d.tier, "route": d.to_dict(), "updated_at": self.now,
                             "escalate_at": self._deadline(a, d)})
            self._record(a, "escalated", before, "system", f"not acknowledged in time; now tier {d.tier}")
            n += 1
        return n

    def auto_close(self) -> int:
        """Close alerts that have been resolved for auto_close_s."""
        stmt = select(A).where(A.c.state == "resolved", A.c.resolved_at <= self.now - self.s.auto_close_s).limit(200)
        rows = [dict(r) for r in self.conn.execute(locked(self.conn, stmt, skip=True)).mappings().all()]
        for a in rows:
            self._update(a, {"state": "closed", "closed_at": self.now, "active_key": None, "updated_at": self.now})
            self._record(a, "closed", "resolved", "system", "resolved long enough")
        return len(rows)

    # ---- helpers -----------------------------------------------------------------------------------

    def _due(self, t: float) -> None:
        if self.min_due is None or t < self.min_due:
            self.min_due = t

    def _update(self, row: dict[str, Any], changes: Mapping[str, Any]) -> None:
        if changes.get("escalate_at") is not None:
            self._due(changes["escalate_at"])
        if changes.get("state") == "resolved":
            self._due(self.now + self.s.auto_close_s)
        row.update(changes)
        self.conn.execute(update(A).where(A.c.id == row["id"]).values(**changes))

    def _labels(self, row: Mapping[str, Any]) -> dict[str, Any]:
        return {"code": row["code"], "rule": row["rule"], "layer": row["layer"], "severity": row["severity"],
                "site": row["site"], "grid": row["grid"], "building": row["building"], "unit": row["unit"],
                "device": row["device_id"], "subject": row["subject"]}

    def _decide(self, row: Mapping[str, Any], tier: int) -> Decision:
        labels = self._labels(row)
        active: list[dict[str, Any]] = []
        if any(matches(i.target, labels) for i in self.s.router.inhibitors()):
            stmt = select(A).where(A.c.state.in_(LIVE), A.c.site == row["site"], A.c.grid == row["grid"])
            active = [self._labels(dict(r)) for r in self.conn.execute(stmt).mappings()]
        return self.s.router.decide(labels, row["subject"], tier, self.now, self._active_silences(), active)

    def _deadline(self, row: Mapping[str, Any], d: Decision) -> float | None:
        if d.last_tier and not d.suppressed:
            return None
        return self.now + (d.deadline_s or 60.0)

    def _active_silences(self) -> list[Window]:
        if self._silences is None:
            rows = self.conn.execute(select(SI).where(SI.c.starts_at <= self.now, SI.c.ends_at > self.now)).all()
            self._silences = [Window(id=f"{r.kind}-{r.id}", matchers=r.matchers, starts_at=r.starts_at,
                                     ends_at=r.ends_at, comment=r.comment) for r in rows]
        return self._silences

    def _record(self, row: dict[str, Any], transition: str, before: str | None, by: str, note: str) -> AlertNotice:
        tid = self.conn.execute(insert(self.conn, T).values(
            alert_id=row["id"], transition=transition, from_state=before, to_state=row["state"], by=by, note=note,
            at=self.now).returning(T.c.id)).scalar_one()
        n = notices.build(row, int(tid), transition, by, note, self.now)
        payload = n.model_dump_json()
        outbox = [{"channel": "mqtt", "notice_id": tid, "payload": payload, "created_at": self.now, "attempts": 0,
                   "next_at": self.now, "lease_owner": None, "lease_until": None}]
        roles = {r.role for r in n.route.recipients}
        if not n.route.suppressed:
            for w in self.s.webhooks:
                if not w.roles or roles & set(w.roles):
                    outbox.append({**outbox[0], "channel": f"webhook:{w.name}"})
        if self.s.lease_own_mqtt:
            outbox[0] = {**outbox[0], "lease_owner": self.s.worker_id, "lease_until": self.now + self.s.lease_s}
        self.conn.execute(insert(self.conn, OB), outbox)
        self.notices.append(n)
        return n


def _lock_id(key: str) -> int:
    """A stable signed 32-bit id of an alert identity (a collision only makes two identities share a lock)."""
    return int.from_bytes(hashlib.blake2b(key.encode(), digest_size=4).digest(), "big", signed=True)


def _merge_refs(old: list[dict[str, Any]] | None, new: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = list(old or [])
    seen = {(r["device_id"], r["seq"]) for r in out}
    out.extend(r for r in new if (r["device_id"], r["seq"]) not in seen)
    if len(out) > MAX_REFS:
        out = [out[0], *out[-(MAX_REFS - 1):]]
    return out

