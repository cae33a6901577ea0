"""Rule states a worker committed, kept decoded between its transactions (SQLite).

A batch's transaction read every rule state it touched from SQL and decoded its JSON, although this worker had
written most of them itself one batch before. The cache keeps, per (rule, key), what the last committed
transaction of this process read or wrote: the decoded State (None: decode the text when needed), its JSON
text (None: no row) and its due time, valid at one *version* of the rule state.

The version is a row of rule_state (`VERSION_KEY`) that every transaction writing rule state on SQLite sets to
the version it read plus one. SQLite runs one writing transaction at a time (BEGIN IMMEDIATE), so a transaction
that reads the version at its start and finds the one the cache is valid at knows that nobody changed any rule
state since (another worker on the same file, another thread of this process); a different version empties the
cache. Entries are taken out while a transaction uses them (the rules change states in place) and put back
only after its commit: a rollback (a database that fails mid-batch, a rule that fails) leaves nothing in the
cache that was not committed. PostgreSQL does not use it: its workers run concurrently, and telling a stale
entry from a current one costs the query the cache would save (its optimistic transactions check the row
versions of what they write).
"""

from __future__ import annotations

import threading

from hub.rules.event import State

# The version row: rule_state(rule=VERSION_KEY[0], key=VERSION_KEY[1], data=<version as text>, due=NULL).
VERSION_KEY = ("_version", "rule_state")
# Entries kept at most; past this the cache starts again empty (a state is a few hundred bytes to a few kB).
LIMIT = 20_000

Entry = tuple[State | None, str | None, float | None]


class StateCache:
    """Committed rule states by (rule, key), valid at one version of the rule state."""

    def __init__(self, limit: int = LIMIT) -> None:
        self.limit = limit
        self._lock = threading.Lock()  # the batch thread and the timer thread share it
        self._version: int | None = None  # the version the entries are valid at (None: unknown, empty)
        self._entries: dict[tuple[str, str], Entry] = {}
        self.hits = 0
        self.misses = 0
        self.resets = 0  # times another transaction's change emptied it

    def begin(self, version: int) -> None:
        """A transaction read this version at its start: empty the cache unless it is valid at it."""
        with self._lock:
            if self._version != version:
                if self._entries:
                    self.resets += 1
                self._entries.clear()
                self._version = version

    def take(self, keys: list[tuple[str, str]]) -> dict[tuple[str, str], Entry]:
        """Take these keys' entries out (the caller's transaction owns them until it commits)."""
        out: dict[tuple[str, str], Entry] = {}
        with self._lock:
            pop = self._entries.pop
            for k in keys:
                e = pop(k, None)
                if e is not None:
                    out[k] = e
        self.hits += len(out)
        self.misses += len(keys) - len(out)
        return out

    def committed(self, base: int, version: int, entries: dict[tuple[str, str], Entry]) -> None:
        """A transaction that began at `base` committed at `version`; these are its keys as committed."""
        with self._lock:
            if self._version is not None and version < self._version:
                return  # a later transaction committed (and put its keys back) first: these may be older
            if self._version != base:
                # Another transaction committed in between: the other entries may not be current at `version`.
                self._entries.clear()
            self._version = version
            if len(self._entries) + len(entries) > self.limit:
                self._entries.clear()
            self._entries.update(entries)

    def reset(self) -> None:
        """Forget everything (a transaction changed rule states it did not track, e.g. postponed timers)."""
        with self._lock:
            self._entries.clear()
            self._version = None

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: object) -> bool:
        return key in self._entries
