"""What every rule kind shares: subject keys, place memory and building signals."""

from __future__ import annotations

from typing import Any

from hub.rules.event import Ctx, Event, Place, Signal, State, add_ref, matches, may_match, subject_key
from hub.rules.spec import Match


class Rule:
    """A rule: a state machine per subject key, fed events and timer ticks."""

    def __init__(self, spec: Any, ctx: Ctx) -> None:
        self.spec = spec
        self.id: str = spec.id
        self.ctx = ctx

    def types(self) -> set[str] | None:
        """Body types this rule reads (None = every type)."""
        ms: tuple[Match, ...] = (*getattr(self.spec, "when", ()), *getattr(self.spec, "clear_when", ()),
                                 *getattr(self.spec, "also", ()))
        return {t for m in ms for t in m.type}

    def watches(self, ev: Event) -> bool:
        """Device-level filters shared by every kind."""
        return not self.spec.residents_only or ev.device_id in self.ctx.resident_of

    def cares(self, ev: Event) -> bool:
        """False only when on_key_event would change no state and signal nothing, whatever the state is."""
        # The engine asks before it loads any state: an event the rule ignores costs no load and no save.
        return True

    def takes(self, kind: str, body_type: str) -> bool:
        """False only when no event of this device kind and body type gets a key that cares() lets through."""
        # Decided once per (kind, type) by the engine, so a message is not offered to rules that would drop it.
        return True

    def keys(self, ev: Event) -> list[str]:
        """Subject keys an event touches under this rule (empty = not interested)."""
        if not self.watches(ev):
            return []
        key = subject_key(self.spec.key, ev, self.ctx)
        return [key] if key else []

    def on_event(self, st: State, ev: Event) -> list[Signal]:
        """Feed one event to one key's state machine."""
        return []

    def on_key_event(self, st: State, key: str, ev: Event) -> list[Signal]:
        """Feed one event to one key's state machine, for rules whose keys differ in kind (agent and device)."""
        return self.on_event(st, ev)

    def on_timer(self, st: State, key: str, now: float) -> list[Signal]:
        """Called when the key's timer is due."""
        st.due = None
        return []

    def seed(self, known: set[str], now: float) -> dict[str, State]:
        """States to create at start for subjects never seen (absence timers)."""
        return {}

    # ---- helpers ---------------------------------------------------------------------------------

    def remember(self, st: State, ev: Event) -> None:
        """Keep the place and the triggering event in the state."""
        st.data["place"] = ev.place.to_dict()
        st.data["refs"] = add_ref(st.data.get("refs", []), ev.ref())

    def signal(self, action: str, st: State, key: str, t: float, severity: str | None = None,
               **thresholds: Any) -> Signal:
        """A fire/clear signal for this key, from what the state remembers."""
        place = Place.from_dict(st.data["place"]) if "place" in st.data else Place(self.ctx.community.site.id,
                                                                                      "unassigned")
        return Signal(action, self.id, self.spec.code, f"{self.spec.key}:{key}", severity or self.spec.severity,
                      str(self.spec.layer), place, t, list(st.data.get("refs", [])), thresholds)

    def fire(self, st: State, key: str, t: float, severity: str | None = None, limits: dict[str, Any] | None = None,
             **thresholds: Any) -> list[Signal]:
        """Fire if inside the rule's hours; marks the state active."""
        if not self.ctx.in_hours(self.spec.hours, t):
            return []
        st.data["active"] = True
        return [self.signal("fire", st, key, t, severity, **(limits or {}), **thresholds)]

    def clear(self, st: State, key: str, t: float) -> list[Signal]:
        """Clear an active state (no signal when it was not active)."""
        if not st.data.get("active"):
            return []
        st.data["active"] = False
        st.data.pop("refs", None)
        return [self.signal("clear", st, key, t)]

    def key_of(self, ev: Event) -> str:
        """The single key of an event (rules with one key per event)."""
        return subject_key(self.spec.key, ev, self.ctx) or ev.device_id


def takes_when(spec: Any, kind: str, body_type: str) -> bool:
    """Whether the rule's `when` could match an event of this kind and type (for rules that need it to)."""
    return may_match(spec.when, kind, body_type)


def wants(spec: Any, ev: Event) -> bool:
    """Whether the event matches the rule's `when`."""
    return matches(spec.when, ev)
