"""rate: an aggregate over a sliding window (count, distinct nights, increase or drop of a field)."""

from __future__ import annotations

from typing import Any

from hub.rules.event import OPS, SEQ_ORDER_S, Event, Signal, State, matches
from hub.rules.kinds.base import Rule, takes_when, wants

_RECHECK_S = 300.0  # how often a window with no new events is looked at again (e.g. low water use)
_EPS = 1e-3  # envelope stamps keep microseconds; float sums of them are not exact


class Rate(Rule):
    """Keep [t, value] samples for one window and compare the aggregate with a value."""

    def takes(self, kind: str, body_type: str) -> bool:
        """Only what `when` could match (cares asks for a match first)."""
        return takes_when(self.spec, kind, body_type)

    def cares(self, ev: Event) -> bool:
        """A matching event with the field (on_event ignores anything else before touching the state)."""
        return matches(self.spec.when, ev) and (self.spec.field is None or ev.get(self.spec.field) is not None)

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
        d = st.data
        samples: list[list[Any]] = d.setdefault("samples", [])
        if s.aggregate in ("count", "distinct_nights"):
            # A redelivered (device, seq) is the same event: counting it twice would invent a burst.
            ident = f"{ev.device_id}#{ev.seq}"
            if any(len(x) > 2 and x[2] == ident for x in samples):
                return []
            samples.append([ev.t, 1.0, ident])
            samples.sort(key=lambda x: x[0])  # a late delivery slots in at its own time
        else:
            v = float(v)
            newer = self._newer(samples, ev)
            if newer is None:
                return []  # the same reading again (both workers got it)
            if newer:
                return self._insert(st, ev, v, newer)
            t = ev.t
            if samples and t < samples[-1][0]:
                last = samples[-1]
                if not (len(last) > 3 and last[2] == ev.device_id and last[3] < ev.seq):
                    return []  # older than a reading already seen: it says nothing about now
                t = last[0]  # newer by its device's seq, though on another worker's clock: it is now
            if s.aggregate == "drop":
                # Only a falling staircase matters for max-minus-current: drop samples no higher than the new one.
                while samples and samples[-1][1] <= v:
                    samples.pop()
            samples.append([t, v, ev.device_id, ev.seq])
            ev = ev.at(t) if t != ev.t else ev
        if ev.device is not None:
            d["interval"] = ev.device.interval_s
        self.remember(st, ev)
        return self._evaluate(st, self.key_of(ev), ev.t)

    def _newer(self, samples: list[list[Any]], ev: Event) -> list[list[Any]] | None:
        """The kept samples its device took after this reading (by seq), or None if one is this reading."""
        out = []
        for x in samples:
            if len(x) > 3 and x[2] == ev.device_id:
                if x[3] == ev.seq:
                    return None
                if x[3] > ev.seq and ev.t <= x[0] + SEQ_ORDER_S:
                    out.append(x)
        return out

    def _insert(self, st: State, ev: Event, v: float, newer: list[list[Any]]) -> list[Signal]:
        """A reading that reached us after its device's later ones: judged in the device's own order."""
        samples: list[list[Any]] = st.data["samples"]
        if self.spec.aggregate != "drop" or any(x[1] >= v for x in newer):
            return []  # a later reading no lower than it: in order, it would have been dropped from the staircase
        at = samples.index(newer[0])
        # In order it came before `newer`: samples before it no higher than it would have been dropped.
        samples[:] = [x for x in samples[:at] if x[1] > v] + [[newer[0][0], v, ev.device_id, ev.seq]] + samples[at:]
        self.remember(st, ev)
        return self._evaluate(st, self.key_of(ev), samples[-1][0])

    def on_timer(self, st: State, key: str, now: float) -> list[Signal]:
        """Re-evaluate as the window slides."""
        return self._evaluate(st, key, now)

    def reach(self, st: State) -> float:
        """How far back a drop looks: the window, or one reporting interval (with slack) if that is longer.

        A sensor that reports every 60 s can only show a 1-minute drop between two readings about 60 s apart
        (at, just under or just over its interval, with jitter); a strict 60 s window would lose the earlier one.
        """
        s = self.spec
        if s.aggregate != "drop":
            return float(s.window_s)
        interval = float(st.data.get("interval") or 0.0)
        return max(float(s.window_s), interval * (1.0 + s.report_slack))

    def _prune(self, samples: list[list[Any]], now: float, reach: float) -> list[list[Any]]:
        start = now - reach
        if self.spec.aggregate == "increase":
            # Keep the newest sample before the window too: it is the baseline of the increase.
            older = [x for x in samples if x[0] <= start]
            return ([older[-1]] if older else []) + [x for x in samples if x[0] > start]
        # The window includes its start: an event exactly window_s after another is inside it.
        return [x for x in samples if x[0] >= start - _EPS]

    def aggregate(self, samples: list[list[Any]], now: float) -> float | None:
        """The window's aggregate, or None when the window is not yet covered."""
        s = self.spec
        if s.aggregate == "count":
            # The window ends at `now`: a late event slotted in before newer ones does not count those.
            return float(sum(1 for x in samples if x[0] <= now + _EPS))
        if s.aggregate == "distinct_nights":
            return float(len({self.ctx.local(x[0]).date() for x in samples}))
        if not samples:
            return None
        if s.aggregate == "drop":
            # Rounded: 0.45 - 0.40 is 0.04999... in floats, and a drop of exactly the value must reach it.
            return round(max(x[1] for x in samples) - samples[-1][1], 9)
        if samples[0][0] > now - s.window_s:
            return None  # no baseline yet: we have not watched a whole window
        return round(samples[-1][1] - samples[0][1], 9)

    def _evaluate(self, st: State, key: str, now: float) -> list[Signal]:
        d = st.data
        reach = self.reach(st)
        samples = self._prune(d.get("samples", []), now, reach)
        d["samples"] = samples
        agg = self.aggregate(samples, now)
        hit = agg is not None and OPS[self.spec.op](agg, self.spec.value)
        st.due = self._next_due(samples, now, reach)
        at = now
        if not hit and self.spec.aggregate == "count" and samples and samples[-1][0] > now + _EPS:
            # A late event older than some already counted: the windows ending at those newer ones now hold it.
            for end in [x[0] for x in samples if now + _EPS < x[0] <= now + reach + _EPS]:
                n = float(sum(1 for x in samples if end - reach - _EPS <= x[0] <= end + _EPS))
                if OPS[self.spec.op](n, self.spec.value):
                    agg, hit, at = n, True, end
                    break
        limits: dict[str, Any] = {"aggregate": self.spec.aggregate, "op": self.spec.op, "value": self.spec.value,
                                  "window_s": self.spec.window_s, "observed": round(agg or 0.0, 3)}
        if hit and not d.get("active"):
            return self.fire(st, key, at, **limits)
        if hit and self.spec.aggregate == "count" and d.get("active"):
            return [self.signal("fire", st, key, at, **limits)]  # more of the same: refresh the alert
        if not hit and d.get("active") and not (samples and samples[-1][0] > now + _EPS):
            return self.clear(st, key, now)  # (not on an event older than the newest: that says nothing of now)
        if not samples and not d.get("active"):
            d.clear()
            st.due = None
        return []

    def _next_due(self, samples: list[list[Any]], now: float, reach: float) -> float | None:
        if self.spec.aggregate == "increase":
            return now + min(_RECHECK_S, self.spec.window_s)
        inside = [x[0] for x in samples if x[0] >= now - reach - _EPS]
        return min(inside) + reach + 2 * _EPS if inside else None
