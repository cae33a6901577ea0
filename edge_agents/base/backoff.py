"""Exponential reconnect backoff with jitter."""

from __future__ import annotations

import random


class Backoff:
    """Delays that double from `initial` up to `maximum`; a `jitter` fraction of each is random."""

    def __init__(self, initial: float, maximum: float, jitter: float = 0.5, rng: random.Random | None = None) -> None:
        self.initial = initial
        self.maximum = maximum
        self.jitter = jitter
        self._rng = rng or random.Random()
        self._attempt = 0

    def next(self) -> float:
        """The delay before the next attempt."""
        ceiling = min(self.maximum, self.initial * (2.0 ** min(self._attempt, 62)))
        self._attempt += 1
        # Jitter spreads the reconnects of many agents after a broker restart (no thundering herd).
        return ceiling * (1.0 - self.jitter * self._rng.random())

    def reset(self) -> None:
        """Start again from `initial` (after a successful connect)."""
        self._attempt = 0
