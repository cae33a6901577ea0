"""rate: an aggregate over a sliding window (count, distinct nights, increase or drop of a field)."""

from __future__ import annotations

from typing import Any

from hub.rules.event import OPS, Event, Signal, State
from hub.rules.kinds.base import Rule, wants

_RECHECK_S = 300.0  # how often a window with no new events is looked at again (e.g. low water use)


class Rate(Rule):
    """Keep [t, value] samples for one window and compare the aggregate with a value."""

    def on_event(self, st: State, ev: Event) -> list[Signal]:
        """Add a sample and evaluate."""
        if not wants(self.spec, ev):
            return []
        s = self.spec
        if s.aggregate == "distinct_nights" and not self.ctx.in_hours(s.night, ev.t):
            return []
        v = 1.0 if s.field is None else ev.get(s.field)
        if v is None:
            return []
        samples: list[list[float]] = st.data.setdefault("samples", [])
        if s.aggregate == "drop":
            # Only a falling staircase matters for max-minus-current: drop samples no higher than the new one.
            while samples and samples[-1][1] <= float(v):
                samples.pop()
        samples.append([ev.t, float(v)])
        self.remember(st, ev)
        return self._evaluate(st, self.key_of(ev), ev.t)

    def on_timer(self, st: State, key: str, now: float) -> list[Signal]:
        """Re-evaluate as the window slides."""
        return self._evaluate(st, key, now)

    def _prune(self, samples: list[list[float]], now: float) -> list[list[float]]:
        start = now - self.spec.window_s
        if self.spec.aggregate == "increase":
            # Keep the newest sample before the window too: it is the baseline of the increase.
            older = [x for x in samples if x[0] <= start]
            return ([older[-1]] if older else []) + [x for x in samples if x[0] > start]
        return [x for x in samples if x[0] > start]

    def aggregate(self, samples: list[list[float]], now: float) -> float | None:
        """The window's aggregate, or None when the window is not yet covered."""
        s = self.spec
        if s.aggregate == "count":
            return float(len(samples))
        if s.aggregate == "distinct_nights":
            return float(len({self.ctx.local(t).date() for t, _ in samples}))
        if not samples:
            return None
        if s.aggregate == "drop":
            return max(v for _, v in samples) - samples[-1][1]
        if samples[0][0] > now - s.window_s:
            return None  # no baseline yet: we have not watched a whole window
        return samples[-1][1] - samples[0][1]

    def _evaluate(self, st: State, key: str, now: float) -> list[Signal]:
        d = st.data
        samples = self._prune(d.get("samples", []), now)
        d["samples"] = samples
        agg = self.aggregate(samples, now)
        hit = agg is not None and OPS[self.spec.op](agg, self.spec.value)
        st.due = self._next_due(samples, now)
        limits: dict[str, Any] = {"aggregate": self.spec.aggregate, "op": self.spec.op, "value": self.spec.value,
                                  "window_s": self.spec.window_s, "observed": round(agg or 0.0, 3)}
        if hit and not d.get("active"):
            return self.fire(st, key, now, **limits)
        if hit and self.spec.aggregate == "count" and d.get("active"):
            return [self.signal("fire", st, key, now, **limits)]  # more of the same: refresh the alert
        if not hit and d.get("active"):
            return self.clear(st, key, now)
        if not samples and not d.get("active"):
            d.clear()
            st.due = None
        return []

    def _next_due(self, samples: list[list[float]], now: float) -> float | None:
        if self.spec.aggregate == "increase":
            return now + min(_RECHECK_S, self.spec.window_s)
        inside = [t for t, _ in samples if t > now - self.spec.window_s]
        return min(inside) + self.spec.window_s if inside else None
