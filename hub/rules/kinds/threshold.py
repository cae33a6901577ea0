"""threshold: a field past a value for hold_s fires; it clears only past the hysteresis value."""

from __future__ import annotations

from typing import Any

from hub.rules.event import OPS, Event, Signal, State, matches
from hub.rules.kinds.base import Rule, takes_when, wants


class Threshold(Rule):
    """Hold time on the way in, hysteresis and clear hold on the way out."""

    def _cond(self, v: Any) -> bool:
        return bool(OPS[self.spec.op](v, self.spec.value))

    def _cleared(self, v: Any) -> bool:
        ref = self.spec.clear if self.spec.clear is not None else self.spec.value
        return not OPS[self.spec.op](v, ref)

    def _limits(self) -> dict[str, Any]:
        s = self.spec
        out: dict[str, Any] = {"field": s.field, "op": s.op, "value": s.value, "hold_s": s.hold_s}
        if s.clear is not None:
            out["clear"] = s.clear
        return out

    def takes(self, kind: str, body_type: str) -> bool:
        """Only what `when` could match (cares asks for a match first)."""
        return takes_when(self.spec, kind, body_type)

    def cares(self, ev: Event) -> bool:
        """A matching event with the field (on_event ignores anything else before touching the state)."""
        return matches(self.spec.when, ev) and ev.get(self.spec.field) is not None

    def on_event(self, st: State, ev: Event) -> list[Signal]:
        """Track pending/active/clearing from one reading."""
        if not wants(self.spec, ev):
            return []
        v = ev.get(self.spec.field)
        if v is None:
            return []
        d = st.data
        key = self.key_of(ev)
        if not d.get("active"):
            if not self._cond(v):
                since = d.get("since")
                if since is not None and ev.t - since >= self.spec.hold_s and "place" in d:
                    # Past the value for the hold time by the readings' own time, though they came late
                    # together (a replay): live it would have fired; it fires, then starts clearing.
                    out = self._fire(st, key, since + self.spec.hold_s)
                    if out:
                        return [*out, *self.on_event(st, ev)]
                if d:  # a dip shorter than the hold time: forget it (a near miss)
                    d.clear()
                    st.due = None
                return []
            d.setdefault("since", ev.t)
            d["last"] = v
            self.remember(st, ev)
            if ev.t - d["since"] >= self.spec.hold_s:
                return self._fire(st, key, ev.t)
            st.due = d["since"] + self.spec.hold_s
            return []
        d["last"] = v
        if not self._cleared(v):
            d.pop("clear_since", None)
            st.due = None
            return []
        d.setdefault("clear_since", ev.t)
        if ev.t - d["clear_since"] >= self.spec.clear_hold_s:
            return self._clear(st, key, ev.t)
        st.due = d["clear_since"] + self.spec.clear_hold_s
        return []

    def on_timer(self, st: State, key: str, now: float) -> list[Signal]:
        """The hold (or clear hold) ran out with no reading to contradict it."""
        st.due = None
        d = st.data
        if not d.get("active") and "since" in d and now - d["since"] >= self.spec.hold_s:
            return self._fire(st, key, now)
        if d.get("active") and "clear_since" in d and now - d["clear_since"] >= self.spec.clear_hold_s:
            return self._clear(st, key, now)
        if not d.get("active") and "since" in d:
            st.due = d["since"] + self.spec.hold_s
        return []

    def _fire(self, st: State, key: str, t: float) -> list[Signal]:
        st.due = None
        out = self.fire(st, key, t, observed=st.data["last"], **self._limits())
        if not out:  # outside the rule's hours: start over
            st.data.clear()
        return out

    def _clear(self, st: State, key: str, t: float) -> list[Signal]:
        st.due = None
        out = self.clear(st, key, t)
        st.data.clear()
        return out
