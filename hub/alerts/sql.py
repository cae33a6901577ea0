"""Dialect helpers: INSERT ... ON CONFLICT for SQLite and PostgreSQL, row locks where they exist, and
PostgreSQL's statements for a batch's rule state."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import orjson
from sqlalchemy import Connection, Select, Table, text
from sqlalchemy.dialects import postgresql, sqlite


def insert(conn: Connection, table: Table) -> Any:
    """A dialect insert that has on_conflict_do_nothing / on_conflict_do_update."""
    if conn.dialect.name == "postgresql":
        return postgresql.insert(table)
    if conn.dialect.name == "sqlite":
        return sqlite.insert(table)
    raise RuntimeError(f"the alert store supports sqlite and postgresql, not {conn.dialect.name}")


def locked(conn: Connection, stmt: Select[Any], skip: bool = False) -> Select[Any]:
    """FOR UPDATE on PostgreSQL; SQLite needs none because every transaction is BEGIN IMMEDIATE."""
    if conn.dialect.name == "postgresql":
        return stmt.with_for_update(skip_locked=skip)
    return stmt


# PostgreSQL's statements for a batch's rule state, their text the same for every batch, so compiled once: a Core
# IN list of a batch's keys, built and compiled per batch, cost more than the queries (half the CPU of a one-worker
# drain's batches, docs/performance.md, round 8). The keys go as two arrays (unnest). The upsert's rows go as one
# JSON text (json_to_recordset), written by orjson: as arrays, psycopg built the literal element by element in
# Python, and every state's JSON needed quoting and a regex substitution to escape it, over a quarter of a drain's
# batch thread (round 9). Row locks are taken in byte order (COLLATE "C"), the order of Python's sorted(), as the
# callers sort the keys.
_KEYS = 'unnest(CAST(:rules AS varchar[]), CAST(:keys AS varchar[])) AS k(rule, key)'
_JOIN = f"rule_state s JOIN {_KEYS} ON s.rule = k.rule AND s.key = k.key"
_ORDER = 'ORDER BY {0}.rule COLLATE "C", {0}.key COLLATE "C"'  # the lock order, for a table alias
PG_STATES = text(f"SELECT s.rule, s.key, s.data, s.due, s.xmin::text FROM {_JOIN}")
PG_PLACEHOLDERS = text(f"INSERT INTO rule_state (rule, key, data, due) SELECT k.rule, k.key, '{{}}', NULL FROM {_KEYS} "
                       f"{_ORDER.format('k')} ON CONFLICT (rule, key) DO NOTHING RETURNING rule, key")
PG_LOCK_STATES = text(f"SELECT s.rule, s.key, s.data, s.due FROM {_JOIN} {_ORDER.format('s')} FOR UPDATE OF s")
PG_LOCK_VERSIONS = text(f"SELECT s.rule, s.key, s.xmin::text FROM {_JOIN} {_ORDER.format('s')} FOR UPDATE OF s")
PG_DELETE = text(f"DELETE FROM rule_state s USING {_KEYS} WHERE s.rule = k.rule AND s.key = k.key")
PG_UPSERT = text("INSERT INTO rule_state (rule, key, data, due) SELECT r.rule, r.key, r.data, r.due "
                 "FROM json_to_recordset(CAST(:rows AS json)) AS r(rule varchar, key varchar, data text, due float8) "
                 "ON CONFLICT (rule, key) DO UPDATE SET data = excluded.data, due = excluded.due")


def pg_keys(pairs: Sequence[tuple[str, str]]) -> dict[str, list[str]]:
    """The parameters of PostgreSQL's rule-state statements for these (rule, key) pairs."""
    return {"rules": [p[0] for p in pairs], "keys": [p[1] for p in pairs]}


def pg_rows(rows: Sequence[Mapping[str, Any]]) -> dict[str, str]:
    """The parameter of PG_UPSERT for these rows (rule, key, data: the state's JSON text, due: float or None)."""
    return {"rows": orjson.dumps(rows).decode()}
