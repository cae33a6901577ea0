"""Building InfluxQL safely: every identifier and value that reaches /query passes through here.

Identifiers are checked against what the wire contract defines and are double-quoted; values are
single-quoted with InfluxQL's escapes (backslash, quote, newline); times are integer nanoseconds. No
regular expressions are ever built from input.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta

from api.services.errors import Invalid
from api.services.scope import Principal

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_STR_ESC = str.maketrans({"\\": "\\\\", "'": "\\'", "\n": "\\n"})
_ID_ESC = str.maketrans({"\\": "\\\\", '"': '\\"', "\n": "\\n"})
INTERVALS: dict[str, int] = {"1m": 60, "5m": 300, "15m": 900, "1h": 3600, "6h": 21600, "1d": 86400}
AGGREGATES = ("count", "mean", "min", "max", "sum", "last")


class QueryError(Invalid):
    """A request cannot become a safe query; the message says which part and why (400)."""


def ident(name: str) -> str:
    """A double-quoted identifier; only plain names (letters, digits, underscore) are accepted."""
    if not _IDENT.match(name):
        raise QueryError(f"not a valid identifier: {name[:40]!r}")
    return '"' + name.translate(_ID_ESC) + '"'


def string(value: str) -> str:
    """A single-quoted string literal with InfluxQL's escapes."""
    if "\x00" in value:
        raise QueryError("NUL in a string value")
    return "'" + value.translate(_STR_ESC) + "'"


def ns(ts: datetime) -> str:
    """A time literal: integer nanoseconds since the epoch (no string parsing on the server)."""
    if ts.tzinfo is None:
        raise QueryError("times must carry a timezone")
    return f"{(ts - _EPOCH) // timedelta(microseconds=1) * 1000}"


def eq(tag: str, value: str) -> str:
    """tag = 'value'."""
    return f"{ident(tag)} = {string(value)}"


def any_of(tag: str, values: Iterable[str]) -> str:
    """(tag = 'a' OR tag = 'b'); an empty set matches nothing (no point lacks the site tag)."""
    vals = sorted(set(values))
    if not vals:
        return f"{ident('site')} = ''"
    return "(" + " OR ".join(eq(tag, v) for v in vals) + ")"


def scope_clauses(who: Principal) -> list[str]:
    """The jurisdiction as WHERE conditions, so another cell's points never leave InfluxDB."""
    out = []
    if who.grids is not None:
        out.append(any_of("grid", who.grids))
    if who.buildings is not None:
        out.append(any_of("building", who.buildings))
    if who.layers is not None:
        out.append(any_of("layer", who.layers))
    return out


def where(conditions: Sequence[str]) -> str:
    """Join conditions with AND."""
    return " WHERE " + " AND ".join(conditions) if conditions else ""


def select_events(measurements: Sequence[str], conditions: Sequence[str], limit: int) -> str:
    """Newest first, at most `limit` points per measurement."""
    if not measurements:
        raise QueryError("no measurement to read")
    if not 1 <= limit <= 100_000:
        raise QueryError("limit out of range")
    frm = ",".join(ident(m) for m in measurements)
    return f"SELECT * FROM {frm}{where(conditions)} ORDER BY time DESC LIMIT {int(limit)}"


def select_aggregate(measurement: str, field: str, aggs: Sequence[str], conditions: Sequence[str],
                     interval: str, group_tags: Sequence[str] = (), fill: str = "none") -> str:
    """SELECT agg(field),... GROUP BY time(interval)[, tags] fill(...)."""
    if interval not in INTERVALS:
        raise QueryError(f"interval must be one of {', '.join(INTERVALS)}")
    if fill not in ("none", "null", "0"):
        raise QueryError("fill must be none, null or 0")
    cols = []
    for a in aggs:
        if a not in AGGREGATES:
            raise QueryError(f"aggregate must be one of {', '.join(AGGREGATES)}")
        cols.append(f"{a}({ident(field)}) AS {ident(a)}")
    group = ", ".join([f"time({interval})", *(ident(t) for t in group_tags)])
    return (f"SELECT {', '.join(cols)} FROM {ident(measurement)}{where(conditions)} "
            f"GROUP BY {group} fill({fill})")
