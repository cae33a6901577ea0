"""instant: fire on every matching event (a press, a duress code), optionally clear on another."""

from __future__ import annotations

from hub.rules.event import Event, Signal, State, matches, may_match
from hub.rules.kinds.base import Rule


class Instant(Rule):
    """Fire on `when`; clear on `clear_when`."""

    def takes(self, kind: str, body_type: str) -> bool:
        """Only what `when` or `clear_when` could match (as cares)."""
        spec = self.spec
        return may_match(spec.when, kind, body_type) or may_match(spec.clear_when, kind, body_type)

    def cares(self, ev: Event) -> bool:
        """An event it fires or clears on (on_event does nothing with any other)."""
        spec = self.spec
        return matches(spec.when, ev) or bool(spec.clear_when and matches(spec.clear_when, ev))

    def on_event(self, st: State, ev: Event) -> list[Signal]:
        """Fire or clear."""
        key = self.key_of(ev)
        if matches(self.spec.when, ev):
            self.remember(st, ev)
            out = self.fire(st, key, ev.t, limits=_evidence(ev))
            if not self.spec.clear_when:
                st.data.clear()  # nothing to remember between events: no state row at all
            return out
        if self.spec.clear_when and matches(self.spec.clear_when, ev):
            return self.clear(st, key, ev.t)
        return []


def _evidence(ev: Event) -> dict[str, float | int | str | bool]:
    """Body values worth showing with the alert (floor, dwell, score)."""
    out: dict[str, float | int | str | bool] = {}
    for name in ("est_floor", "dwell_s", "score", "floor", "kind", "label", "reason"):
        v = ev.get(name)
        if isinstance(v, (int, float, str, bool)):
            out[name] = v
    return out
