"""Parsing durations and simulated start times given on the command line or in scenario files."""

from __future__ import annotations

import re
from datetime import UTC, datetime

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_FACTOR = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}


def parse_duration(value: str | float | int) -> float:
    """Seconds from 90, '90', '90s', '15m', '2h' or '1d'; raises ValueError saying what is accepted."""
    if isinstance(value, bool):
        raise ValueError(f"expected a duration, got {value!r}")
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        total = 0.0
        parts = value.split()
        if not parts:
            raise ValueError("empty duration")
        for part in parts:
            m = _DURATION.match(part)
            if m is None:
                raise ValueError(f"expected a duration like 90, 90s, 15m, 2h or '1h 30m', got {value!r}")
            total += float(m.group(1)) * _FACTOR[m.group(2)]
        seconds = total
    if seconds < 0:
        raise ValueError(f"a duration cannot be negative: {value!r}")
    return seconds


def parse_start(value: str) -> float:
    """Epoch seconds from an ISO-8601 time with a UTC offset (e.g. 2026-03-02T01:30:00+08:00)."""
    try:
        dt = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(f"expected an ISO-8601 time such as 2026-03-02T01:30:00+08:00, got {value!r}") from None
    if dt.tzinfo is None:
        raise ValueError(f"the start time {value!r} needs a UTC offset, e.g. +08:00")
    return dt.timestamp()


def iso(ts: float) -> str:
    """An epoch time as ISO-8601 UTC, to the second."""
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds")
