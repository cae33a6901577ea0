"""The rule engine: routes each event to the rules that read its type, keeps state per (rule, key)."""

from __future__ import annotations

import heapq
import logging
from collections import defaultdict
from collections.abc import Iterable
from typing import Protocol

from hub.rules.clock import DeviceClocks
from hub.rules.event import Ctx, Event, Signal, State
from hub.rules.kinds.absence import Absence
from hub.rules.kinds.base import Rule
from hub.rules.kinds.correlation import Correlation
from hub.rules.kinds.instant import Instant
from hub.rules.kinds.rate import Rate
from hub.rules.kinds.sequence import Sequence
from hub.rules.kinds.threshold import Threshold
from hub.rules.spec import RulePack

log = logging.getLogger(__name__)

# The one list of rule kinds.
KINDS: dict[str, type[Rule]] = {
    "instant": Instant, "threshold": Threshold, "sequence": Sequence, "absence": Absence, "rate": Rate,
    "correlation": Correlation,
}


class StateStore(Protocol):
    """Where rule state lives between events (SQL in the hub, a dict in unit tests)."""

    def load(self, rule: str, key: str) -> State | None:
        """The state of one key, or None."""

    def save(self, rule: str, key: str, state: State) -> None:
        """Store (or, when empty with no timer, delete) one key's state."""

    def due(self, now: float) -> list[tuple[str, str]]:
        """Keys whose timer is due."""

    def known(self, rule: str) -> set[str]:
        """Keys with state under a rule."""

    def prefetch(self, pairs: set[tuple[str, str]]) -> None:
        """Load many keys at once before they are used (one query per batch instead of one per event)."""

    def postpone(self, rule: str, until: float) -> int:
        """Move a rule's timers that are due before `until` to `until`; returns how many moved."""


class MemoryStates:
    """A StateStore in a dict (unit tests, benchmarks, the offline scenario loop)."""

    def __init__(self) -> None:
        self.states: dict[tuple[str, str], State] = {}
        self._timers: list[tuple[float, str, str]] = []  # a heap; stale entries are skipped when popped

    def load(self, rule: str, key: str) -> State | None:
        """The state of one key, or None."""
        st = self.states.get((rule, key))
        return None if st is None else State(dict(st.data), st.due)

    def save(self, rule: str, key: str, state: State) -> None:
        """Store or delete."""
        if not state.data and state.due is None:
            self.states.pop((rule, key), None)
        else:
            self.states[(rule, key)] = State(dict(state.data), state.due)
            if state.due is not None:
                heapq.heappush(self._timers, (state.due, rule, key))

    def due(self, now: float) -> list[tuple[str, str]]:
        """Due keys (each timer is handed out once; running it saves the state and its next timer)."""
        out: list[tuple[str, str]] = []
        seen: set[tuple[str, str]] = set()
        while self._timers and self._timers[0][0] <= now:
            due, rule, key = heapq.heappop(self._timers)
            st = self.states.get((rule, key))
            if st is not None and st.due == due and (rule, key) not in seen:
                seen.add((rule, key))
                out.append((rule, key))
        return out

    def known(self, rule: str) -> set[str]:
        """Keys of a rule."""
        return {k for r, k in self.states if r == rule}

    def prefetch(self, pairs: set[tuple[str, str]]) -> None:
        """Nothing to do in memory."""

    def postpone(self, rule: str, until: float) -> int:
        """Move early timers of a rule."""
        moved = [(k, s) for (r, k), s in self.states.items() if r == rule and s.due is not None and s.due < until]
        for k, s in moved:
            s.due = until
            heapq.heappush(self._timers, (until, rule, k))
        return len(moved)


class Engine:
    """Feeds events and timer ticks to the rules; pure apart from the StateStore it is given."""

    def __init__(self, pack: RulePack, ctx: Ctx) -> None:
        self.ctx = ctx
        self.rules: dict[str, Rule] = {}
        for spec in pack.enabled():
            if spec.kind in KINDS:
                self.rules[spec.id] = KINDS[spec.kind](spec, ctx)
        self.by_type: dict[str, list[Rule]] = defaultdict(list)
        self.any_type: list[Rule] = []
        self.correlations: dict[str, list[Correlation]] = defaultdict(list)
        for rule in self.rules.values():
            types = rule.types()
            if types is None:
                self.any_type.append(rule)
            else:
                for t in types:
                    self.by_type[t].append(rule)
            if isinstance(rule, Correlation):
                for member in rule.spec.members:
                    self.correlations[member].append(rule)

    def seed(self, store: StateStore, now: float, grace_s: float = 0.0) -> int:
        """Create absence timers for subjects that have never reported; returns how many.

        Absence deadlines that passed while the hub was down wait `grace_s` more: the broker still holds the
        messages of that time, and a door opening among them must be seen before anyone is declared absent.
        """
        n = 0
        for rule in self.rules.values():
            if grace_s > 0 and isinstance(rule, Absence):
                store.postpone(rule.id, now + grace_s)
            for key, st in rule.seed(store.known(rule.id), now).items():
                store.save(rule.id, key, st)
                n += 1
        return n

    def process(self, events: Iterable[Event], store: StateStore, received: float | None = None,
                clocks: DeviceClocks | None = None) -> list[Signal]:
        """Feed events in order; returns the signals they caused.

        With `clocks` and the time the batch was `received`, each event is put on its device's corrected time.
        """
        out: list[Signal] = []
        events = list(events)
        if clocks is not None and received is not None:
            store.prefetch(clocks.prefetch(events, store))
            events = [clocks.correct(ev, received, store) for ev in events]
        store.prefetch({(rule.id, key) for ev in events for rule in self._rules_for(ev) for key in rule.keys(ev)})
        for ev in events:
            for rule in self._rules_for(ev):
                for key in rule.keys(ev):
                    st = store.load(rule.id, key) or State()
                    try:
                        sigs = rule.on_key_event(st, key, ev)
                    except Exception:
                        # One bad rule/event pair must not stop the others.
                        log.exception("rule %s failed on %s seq %d", rule.id, ev.device_id, ev.seq)
                        continue
                    fanout = st.data.pop("fanout", None) if isinstance(rule, Absence) else None
                    store.save(rule.id, key, st)
                    if fanout is not None:
                        self._fan_out(rule, st, fanout, store)  # type: ignore[arg-type]
                    out.extend(self._correlate(sigs, store))
        return out

    @staticmethod
    def _fan_out(rule: Absence, agent: State, fanout: dict[str, object], store: StateStore) -> None:
        # An agent's will (or planned stop) speaks for every device it serves: all go offline at once, and
        # only the agent's one alert is raised (Sparkplug's NDEATH).
        for device in rule.served(agent, int(str(fanout["session"]))):
            st = store.load(rule.id, device) or State()
            rule.mark_down(st, fanout)
            store.save(rule.id, device, st)

    def _rules_for(self, ev: Event) -> tuple[Rule, ...]:
        return (*self.by_type.get(ev.type, ()), *self.any_type)

    def tick(self, store: StateStore, now: float) -> list[Signal]:
        """Run every due timer."""
        out: list[Signal] = []
        for rule_id, key in store.due(now):
            rule = self.rules.get(rule_id)
            st = store.load(rule_id, key)
            if st is None:
                continue
            if rule is None:  # a rule removed from the pack: drop its timers
                st.due = None
                store.save(rule_id, key, st)
                continue
            try:
                sigs = rule.on_timer(st, key, now)
            except Exception:
                log.exception("rule %s timer failed for %s", rule_id, key)
                st.due = None
                sigs = []
            if st.due is not None and st.due <= now:
                # A timer that asks to run again at once would spin; the next tick is soon enough.
                log.debug("rule %s asked for a timer in the past for %s", rule_id, key)
                st.due = now + 0.001
            store.save(rule_id, key, st)
            out.extend(self._correlate(sigs, store))
        return out

    def _correlate(self, sigs: list[Signal], store: StateStore) -> list[Signal]:
        out = list(sigs)
        for sig in sigs:
            if sig.action != "fire":
                continue
            for corr in self.correlations.get(sig.rule, ()):
                key = corr.place_key(sig.place)
                if key is None:
                    continue
                st = store.load(corr.id, key) or State()
                out.extend(corr.on_signal(st, key, sig))
                store.save(corr.id, key, st)
        return out
