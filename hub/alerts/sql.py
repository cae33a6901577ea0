"""Dialect helpers: INSERT ... ON CONFLICT for SQLite and PostgreSQL, and row locks where they exist."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, Select, Table
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
