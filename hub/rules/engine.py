"""The rule engine: routes each event to the rules that read its type, keeps state per (rule, key)."""

from __future__ import annotations

import heapq
import logging
import math
import threading
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from collections.abc import Sequence as Seq
from itertools import islice
from typing import Protocol

from hub.rules.clock import DeviceClocks
from hub.rules.event import Ctx, Event, Signal, State, matches
from hub.rules.kinds.absence import AGENT, Absence
from hub.rules.kinds.base import Rule
from hub.rules.kinds.correlation import Correlation
from hub.rules.kinds.instant import Instant
from hub.rules.kinds.rate import Rate
from hub.rules.kinds.sequence import Sequence
from hub.rules.kinds.threshold import Threshold
from hub.rules.reorder import (
    HOLD,
    HOLD_MAX_N,
    HOLD_MAX_S,
    HOLD_SPAN_S,
    RELEASE_CHUNK,
    SETTLE_S,
    Held,
    Reorder,
    merge,
    order,
    since,
)
from hub.rules.spec import RulePack

log = logging.getLogger(__name__)

REPLAY = "replay"  # state: the key's timer was set by a late delivery (True), or waits for a held replay since (a time)
# How long (on the engine's clock) a timer set by a late delivery waits for the rest of the backlog: a replay
# arrives as a burst, so a door's opening and closing come within this of each other however late both are.
REPLAY_GRACE_S = 10.0
# How long (on the engine's clock) after a late message with a gap in its device's seqs (another worker's share
# of a queue) every late message is held: a drain's batches come well under a second apart.
SHARED_S = HOLD_SPAN_S

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

    def span(self, rule: str) -> tuple[int, float | None]:
        """How many keys of a rule have a timer, and the latest of them (None: none has)."""

    def prefetch(self, pairs: set[tuple[str, str]]) -> None:
        """Load many keys at once before they are used (one query per batch instead of one per event)."""

    def postpone(self, rule: str, until: float) -> int:
        """Move a rule's timers that are due before `until` to `until`; returns how many moved."""

    def discard(self, rule: str, key: str) -> None:
        """Forget any copy of a key's state changed by a rule that then failed (the next load reads it afresh)."""

    def keep(self, hold: str, held: Held) -> None:
        """Keep a late message under a hold marker (written with the marker's state)."""

    def kept(self, holds: Seq[str]) -> Iterator[Held]:
        """Every message kept under these markers, in (time, seq, device) order, each once (read lazily)."""

    def unkeep(self, holds: Seq[str]) -> None:
        """Forget the messages kept under these markers."""


class MemoryStates:
    """A StateStore in a dict (unit tests, benchmarks, the offline scenario loop)."""

    def __init__(self) -> None:
        self.states: dict[tuple[str, str], State] = {}
        self.held: dict[str, list[Held]] = {}  # kept late messages, by hold marker
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

    def next_due(self) -> float | None:
        """The earliest live timer, or None (stale heap entries are dropped on the way)."""
        while self._timers:
            due, rule, key = self._timers[0]
            st = self.states.get((rule, key))
            if st is not None and st.due == due:
                return due
            heapq.heappop(self._timers)
        return None

    def known(self, rule: str) -> set[str]:
        """Keys of a rule."""
        return {k for r, k in self.states if r == rule}

    def span(self, rule: str) -> tuple[int, float | None]:
        """How many keys of a rule have a timer, and the latest of them."""
        dues = [s.due for (r, _k), s in self.states.items() if r == rule and s.due is not None]
        return len(dues), max(dues, default=None)

    def prefetch(self, pairs: set[tuple[str, str]]) -> None:
        """Nothing to do in memory."""

    def postpone(self, rule: str, until: float) -> int:
        """Move early timers of a rule."""
        moved = [(k, s) for (r, k), s in self.states.items() if r == rule and s.due is not None and s.due < until]
        for k, s in moved:
            s.due = until
            heapq.heappush(self._timers, (until, rule, k))
        return len(moved)

    def discard(self, rule: str, key: str) -> None:
        """Loads return copies: nothing to forget."""

    def keep(self, hold: str, held: Held) -> None:
        """Keep a late message under a hold marker."""
        self.held.setdefault(hold, []).append(held)

    def kept(self, holds: Seq[str]) -> Iterator[Held]:
        """The kept messages, in order."""
        return merge(sorted(self.held.get(k, ()), key=order) for k in holds)

    def unkeep(self, holds: Seq[str]) -> None:
        """Forget them."""
        for k in holds:
            self.held.pop(k, None)


class Engine:
    """Feeds events and timer ticks to the rules; pure apart from the StateStore it is given.

    With write_back_s > 0, a sign of life that only pushes an absence deadline far in the future back is kept
    in memory (the latest per subject) and written with write_back() at most write_back_s later, instead of
    a state load and save per message. Only when the deadline known from the store is more than `margin`
    away, so no timer can fall due on stale state before the write; everything else (births, wills, an
    active alert to clear, a deadline near) goes the normal way at once.
    """

    def __init__(self, pack: RulePack, ctx: Ctx, write_back_s: float = 0.0) -> None:
        self.ctx = ctx
        self.write_back_s = write_back_s
        self.margin = 3 * write_back_s
        # (rule, key) -> the deadline last read or written for a quiet absence subject (None: not deferrable).
        self._quiet: dict[tuple[str, str], float | None] = {}
        self._touches: dict[tuple[str, str], Event] = {}
        self._unconfirmed: dict[tuple[str, str], Event] = {}  # written back, transaction not yet committed
        self._written_back: dict[tuple[str, str], list[Signal]] = {}  # their signals, by key
        self._touch_lock = threading.Lock()
        self._last_write_back = 0.0
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
        # Per device kind and body type, the rules to ask: (rule, whether it filters with cares(), whether it may
        # defer). Derived from the pack alone (a reloaded pack is a new Engine); the kind is each message's own.
        self._routes: dict[str, dict[str, tuple[tuple[Rule, bool, bool], ...]]] = {}
        self.hold = Reorder(ctx)  # late messages for the order-sensitive rules, until their replay settles
        # Devices with late messages held, and the time of the first recent message that joined them (this
        # process's view: a restart starts empty, while the timers still release what the store holds).
        self._holding: dict[str, float | None] = {}
        # How many messages this process held since it last let the hold go (HOLD_MAX_N; a batch rolled back
        # and held again counts twice). A redelivery inside the replay is held again, and let go once.
        self._held_n = 0
        self._hold_key: str | None = None  # this batch's hold row (see Reorder.key)
        # Per device, the (device time, seq) of its newest message this process planned, and whether its messages
        # so far are a queue of its own that needs no hold (see _held). A few dozen bytes a device; a restart
        # starts empty.
        self._last: dict[str, tuple[float, int, bool]] = {}
        self._shared_until = 0.0  # on the engine's clock: until then every late message is held (see _held)
        # When (on the engine's clock) a late message last joined the hold: a replay is one burst across devices,
        # and the hold goes in only once the whole replay is quiet (see _let_go).
        self._held_at = -math.inf

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
        events = list(events)
        self.ctx.received = received
        if clocks is not None and received is not None:
            store.prefetch(clocks.prefetch(events, store))
            events = [clocks.correct(ev, received, store) for ev in events]
        return self.run(self.plan(events), store)

    def plan(self, events: Iterable[Event]) -> list[tuple[Event, Rule, str]]:
        """The (event, rule, key) steps a batch needs, in order; signs of life kept in memory need none."""
        work: list[tuple[Event, Rule, str]] = []
        add = work.append
        routes = self._routes
        holding = self._holding
        events = events if isinstance(events, list) else list(events)
        self._hold_key = None
        held = self._held(events)
        for i, ev in enumerate(events):
            if (ev.late and held is not None and held[i]) or (holding and ev.device_id in holding and self._joins(ev)):
                # A recent message of a device whose replay is held is the end of that burst (a replay's last
                # 20 s are not late): it joins the hold, so it cannot overtake the older ones.
                self._plan_late(ev, add)
                continue
            by_kind = routes.get(ev.kind)
            route = None if by_kind is None else by_kind.get(ev.type)
            if route is None:
                route = self._route(ev.kind, ev.type)
            for rule, filters, defers in route:
                if filters and not rule.cares(ev):
                    continue  # the rule would ignore it: no state to read or write
                for key in rule.keys(ev):
                    if defers and self._defer(rule, key, ev):  # type: ignore[arg-type]
                        continue
                    add((ev, rule, key))
        return work

    def _held(self, events: list[Event]) -> list[bool] | None:
        """Which of the batch's late messages go to the hold (None: none is late); notes each device's newest.

        The hold puts a device's late messages in order: a replay after an outage (a spool over several
        reconnects or files, a queue redelivered) may come in any order, and a queue several workers share
        gives each some of the device's messages. One case needs none: a device this process first met late (a
        fresh hub or a restart draining a queue) whose late messages follow one another (each the next seq, not
        older), as a broker delivers one device's queue to one worker. Those go straight to the rules in the
        batch's order; held, every message of a drained backlog rewrote its device's hold row and reached the
        rules only after the drain. A device met live first keeps the hold for its late messages, as before.

        A gap in such a device's seqs is another worker's share: for SHARED_S after one every late message is
        held, so the devices one door's rules relate (a controller's grant, a contact's opening) stay in one
        order; holding some of them while others went straight in raised false door alarms with two workers.
        """
        last, holding = self._last, self._holding
        now = self.ctx.received or 0.0
        follows: list[bool] = []
        late = False
        for ev in events:
            dev = ev.device_id
            prev = last.get(dev)
            if prev is None:
                # First met by this process: a queue of its own if late (nothing of it seen to overtake).
                last[dev] = (ev.t, ev.seq, ev.late)
                follows.append(ev.late)
                late = late or ev.late
                continue
            newer = ev.t > prev[0] or (ev.t == prev[0] and ev.seq > prev[1])
            nxt = newer and ev.seq == prev[1] + 1
            queue = prev[2] and ev.late and nxt  # a queue stays one while its messages come late and in turn
            follows.append(queue)
            if newer:
                last[dev] = (ev.t, ev.seq, queue)
            elif prev[2]:
                last[dev] = (prev[0], prev[1], False)
            if ev.late:
                late = True
                if prev[2] and newer and not nxt:
                    self._shared_until = now + SHARED_S
        if not late:
            return None
        shared = now < self._shared_until
        held = [False] * len(events)
        for i, ev in enumerate(events):
            if ev.late and (shared or not follows[i] or ev.historical or ev.device_id in holding):
                held[i] = True
                # Marked now: its device's later messages in the batch must not overtake it, and its recent
                # messages before it join the hold as well (plan's second look).
                holding.setdefault(ev.device_id, None)
        return held

    def _plan_late(self, ev: Event, add: Callable[[tuple[Event, Rule, str]], None]) -> None:
        # Absence is order-tolerant (a late sign of life never moves a deadline back) and must not wait, lest a
        # deadline pass while the replay is held; every other rule gets the message in order, from the hold.
        held = False
        for rule, filters, defers in self._route(ev.kind, ev.type):
            if filters and not rule.cares(ev):
                continue
            if not isinstance(rule, Absence):
                held = held or bool(rule.keys(ev))
                continue
            for key in rule.keys(ev):
                if not (defers and self._defer(rule, key, ev)):
                    add((ev, rule, key))
        if not held:
            return
        self._holding.setdefault(ev.device_id, None)
        received = self.ctx.received
        if received is not None:
            self._held_at = received
        self._held_n += 1
        if self._hold_key is None:
            self._hold_key = self.hold.key(ev.t if received is None else received)
        add((ev, self.hold, self._hold_key))

    def _joins(self, ev: Event) -> bool:
        """Whether a recent message of a device with a hold joins it (bounded: another worker may release it)."""
        first = self._holding[ev.device_id]
        if first is None:
            self._holding[ev.device_id] = ev.t
            return True
        if ev.t - first <= HOLD_SPAN_S:
            return True
        del self._holding[ev.device_id]
        return False

    @property
    def hold_full(self) -> bool:
        """Whether this process has held HOLD_MAX_N messages since it last let the hold go (the next timer pass
        lets it go, whether due or not: the let-go is one transaction)."""
        return self._held_n >= HOLD_MAX_N

    def _let_go(self, due: list[str], now: float, store: StateStore) -> list[Signal]:
        """Every held message, once the whole replay is quiet, to the order-sensitive rules in device-time order.

        Quiet: this process's last late message is SETTLE_S old, and every hold row is due (a row not due was
        written within SETTLE_S, by any worker; one not handed to this tick is locked by the worker writing
        it). Until then the due rows wait as long, never past HOLD_MAX_S from the oldest (nor past HOLD_MAX_N
        messages held here). All go together: the rules relate devices, and a gate whose part of the replay
        ended first must not go in while another worker still receives the other gate's.
        """
        n, latest = store.span(HOLD)
        quiet = self._held_at + SETTLE_S
        if n > len(due) and latest is not None:
            quiet = max(quiet, latest)
        bound = min((since(k) for k in due), default=now) + HOLD_MAX_S
        if (n > len(due) or now < quiet) and now < bound and not self.hold_full:
            store.postpone(HOLD, min(quiet if quiet > now else now + SETTLE_S, bound))
            return []
        keys = sorted(store.known(HOLD))
        store.prefetch({(HOLD, k) for k in keys})
        for k in keys:
            st = store.load(HOLD, k)
            if st is None:
                continue
            for held in self.hold.inline(k, st):  # an older hub's row: its messages join the others first
                store.keep(k, held)
            store.save(HOLD, k, State())  # the marker goes (deleted)
        self._holding.clear()
        self._held_n = 0
        out: list[Signal] = []
        kept = store.kept(keys)
        while page := list(islice(kept, RELEASE_CHUNK)):
            work: list[tuple[Event, Rule, str]] = []
            for ev in self.hold.events(page):
                for rule, filters, _defers in self._route(ev.kind, ev.type):
                    if isinstance(rule, Absence) or (filters and not rule.cares(ev)):
                        continue  # absence had it when it came
                    work.extend((ev, rule, key) for key in rule.keys(ev))
            out.extend(self.run(work, store))
        store.unkeep(keys)
        return out

    def _route(self, kind: str, body_type: str) -> tuple[tuple[Rule, bool, bool], ...]:
        """The rules one device kind's body type goes to, worked out once per pair (a few hundred at most)."""
        by_kind = self._routes.setdefault(kind, {})
        route = by_kind.get(body_type)
        if route is not None:
            return route
        route = tuple((rule, type(rule).cares is not Rule.cares, bool(self.write_back_s) and isinstance(rule, Absence))
                      for rule in (*self.by_type.get(body_type, ()), *self.any_type) if rule.takes(kind, body_type))
        by_kind[body_type] = route
        return route

    def run(self, work: list[tuple[Event, Rule, str]], store: StateStore) -> list[Signal]:
        """Feed planned steps to the rules; returns the signals they caused."""
        return [sig for step in self.run_steps(work, store) for sig in step]

    def run_steps(self, work: list[tuple[Event, Rule, str]], store: StateStore) -> list[list[Signal]]:
        """Feed planned steps to the rules; the signals of each step."""
        store.prefetch({(rule.id, key) for _, rule, key in work})
        return [self._feed(rule, key, ev, store) for ev, rule, key in work]

    def redo(self, work: list[tuple[Event, Rule, str]], steps: list[list[Signal]], stale: set[tuple[str, str]],
             store: StateStore) -> bool:
        """Feed again, in order, the steps of keys another worker changed meanwhile, and of what they feed.

        The stale keys were forgotten by the store (their next load reads the other worker's state); steps[i]
        is replaced for every step fed again. The keys redone are the stale ones plus, closed over, the
        correlation keys the signals of a redone step feed and every step feeding such a key (signals of steps
        whose own state is not redone are fed again as they were). Every redone key starts again from its
        state as read (the store's discard must forget the transaction's changes, as the alert store's does).
        False (the caller rolls the transaction back) when a stale key is not one a step of the batch names (a
        device an agent's will fanned out to), or is an absence subject while an agent's will or stop in the
        batch fans out to devices.
        """
        named = {(rule.id, key) for _, rule, key in work}
        prim = [self._own(step, rule) for step, (_, rule, _) in zip(steps, work, strict=True)]
        fed = [self._correlation_keys(p) for p in prim]
        fed_any = set().union(*fed)
        for k in stale:
            rule = self.hold if k[0] == HOLD else self.rules.get(k[0])
            if rule is None or (k not in named and k not in fed_any):
                return False
            if isinstance(rule, Absence) and any(r is rule and key.startswith(AGENT) and ev.type == "state"
                                                 and ev.get("status") == "offline" for ev, r, key in work):
                return False  # an agent's will or stop fans out to devices no step names
        keys = set(stale)
        for _ in range(len(work) + len(fed_any) + 2):  # the set only grows: this ends
            grown = True
            while grown:
                grown = False
                for i, (_, rule, key) in enumerate(work):
                    if ((rule.id, key) in keys or fed[i] & keys) and not fed[i] <= keys:
                        keys |= fed[i]
                        grown = True
            for k in keys:
                store.discard(*k)  # back to the state as read (stale keys: as read again)
            out: dict[int, list[Signal]] = {}
            more: set[tuple[str, str]] = set()
            for i, (ev, rule, key) in enumerate(work):
                own = (rule.id, key) in keys
                if not own and not fed[i] & keys:
                    continue
                p = self._step(rule, key, ev, store) if own else prim[i]
                f = self._correlation_keys(p)
                if not f <= keys:
                    more = f - keys  # a signal the first pass did not have feeds a key outside the set
                    fed[i] |= f
                    break
                out[i] = self._correlate(p, store)
            if not more:
                for i, sigs in out.items():
                    steps[i] = sigs
                return True
            keys |= more
        return False

    @staticmethod
    def _own(step: list[Signal], rule: Rule) -> list[Signal]:
        """A step's own signals: those before the correlation signals they caused (_correlate appends them)."""
        n = 0
        while n < len(step) and step[n].rule == rule.id:
            n += 1
        return step[:n]

    def _correlation_keys(self, sigs: list[Signal]) -> set[tuple[str, str]]:
        """The correlation state keys these signals feed (as _correlate feeds them)."""
        out: set[tuple[str, str]] = set()
        for sig in sigs:
            if sig.action != "fire":
                continue
            for corr in self.correlations.get(sig.rule, ()):
                key = corr.place_key(sig.place)
                if key is not None:
                    out.add((corr.id, key))
        return out

    def _feed(self, rule: Rule, key: str, ev: Event, store: StateStore) -> list[Signal]:
        return self._correlate(self._step(rule, key, ev, store), store)

    def _step(self, rule: Rule, key: str, ev: Event, store: StateStore) -> list[Signal]:
        """Feed one event to one key; the rule's own signals (before correlation)."""
        st = store.load(rule.id, key) or State()
        if rule is self.hold:  # a late message: counted in its batch's marker, kept by the store until let go
            rule.on_key_event(st, key, ev)
            store.save(HOLD, key, st)
            store.keep(key, Reorder.row(ev))
            return []
        try:
            sigs = rule.on_key_event(st, key, ev)
        except Exception:
            # One bad rule/event pair must not stop the others.
            log.exception("rule %s failed on %s seq %d", rule.id, ev.device_id, ev.seq)
            store.discard(rule.id, key)
            return []
        absence = isinstance(rule, Absence)
        fanout = st.data.pop("fanout", None) if absence else None
        if ev.late and st.due is not None:
            self._replay(st)
        elif st.due is None:
            st.data.pop(REPLAY, None)
        store.save(rule.id, key, st)
        if fanout is not None:
            self._fan_out(rule, st, fanout, store)  # type: ignore[arg-type]
        if absence and self.write_back_s:
            self._learn(rule.id, key, st)
            if self._touches:
                with self._touch_lock:  # an older sign of life in memory has nothing left to say
                    kept = self._touches.get((rule.id, key))
                    if kept is not None and kept.t <= ev.t:
                        del self._touches[(rule.id, key)]
        return sigs

    def _replay(self, st: State) -> None:
        """A timer set by a late delivery is judged once the backlog is in, not between two of its messages.

        A timer due within REPLAY_GRACE_S of the batch is put there at once, so the timer thread leaves the key
        alone while the backlog goes on moving it (it used to load and save every such key each pass only to
        postpone it, and a drain's batches then redid the keys it had touched). It is flagged as well: when it
        comes due while a replay is still held, it waits for the let-go, up to HOLD_MAX_S (tick).
        """
        received = self.ctx.received
        if received is not None and st.due is not None and st.due < received + REPLAY_GRACE_S:
            st.due = received + REPLAY_GRACE_S
        st.data[REPLAY] = True

    def _fan_out(self, rule: Absence, agent: State, fanout: dict[str, object], store: StateStore) -> None:
        # An agent's will (or planned stop) speaks for every device it serves: all go offline at once, and
        # only the agent's one alert is raised (Sparkplug's NDEATH).
        for device in rule.served(agent, int(str(fanout["session"]))):
            st = store.load(rule.id, device) or State()
            rule.mark_down(st, fanout)
            store.save(rule.id, device, st)
            if self.write_back_s:
                self._learn(rule.id, device, st)  # no longer quiet: its next sign of life goes straight in

    def _learn(self, rule_id: str, key: str, st: State) -> None:
        d = st.data
        quiet = st.due is not None and not d.get("active") and not d.get("offline") and bool(d.get("refs"))
        self._quiet[(rule_id, key)] = st.due if quiet else None

    def _defer(self, rule: Absence, key: str, ev: Event) -> bool:
        """Keep a plain sign of life in memory when its subject's deadline is far away; True when kept."""
        if ev.type in ("birth", "state"):
            return False
        k = (rule.id, key)
        due = self._quiet.get(k)
        # Far from the message's own time and from the hub's: a late message's deadline may have passed on the
        # hub's clock, and another worker's timer must then find the sign of life in the store, not in our memory.
        received = self.ctx.received
        if due is None or due - (ev.t if received is None else max(ev.t, received)) <= self.margin:
            return False
        if rule.spec.when and not matches(rule.spec.when, ev):
            return True  # not activity for this rule: on_event would change nothing
        with self._touch_lock:
            prev = self._touches.get(k)
            if prev is None or ev.t >= prev.t:
                self._touches[k] = ev
        return True

    def write_back(self, store: StateStore, now: float, force: bool = False) -> list[Signal]:
        """Apply the signs of life kept in memory (every write_back_s, before timers run, and at stop)."""
        if not self._touches or (not force and now - self._last_write_back < self.write_back_s):
            return []
        with self._touch_lock:
            touches, self._touches = self._touches, {}
        try:
            store.prefetch(set(touches))
            fed: dict[tuple[str, str], list[Signal]] = {}
            for (rule_id, key), ev in touches.items():
                rule = self.rules.get(rule_id)
                if rule is not None:
                    fed[(rule_id, key)] = self._feed(rule, key, ev, store)
        except Exception:
            with self._touch_lock:  # the transaction rolls back: keep them for the next try
                for k, ev in touches.items():
                    newer = self._touches.get(k)
                    if newer is None or newer.t < ev.t:
                        self._touches[k] = ev
            raise
        self._last_write_back = now
        self._unconfirmed = touches
        self._written_back = fed
        return [sig for sigs in fed.values() for sig in sigs]

    def redo_write_back(self, stale: set[tuple[str, str]], store: StateStore) -> list[Signal] | None:
        """Feed again the signs of life of the last write_back() whose keys another worker changed meanwhile.

        The store forgot the stale keys (their next load reads the other worker's state). Every signal of the
        write-back, or None when a stale key is not one of its subjects (the caller rolls back).
        """
        if not stale <= self._written_back.keys():
            return None
        for k in sorted(stale):
            rule = self.rules[k[0]]
            self._written_back[k] = self._feed(rule, k[1], self._unconfirmed[k], store)
        return [sig for sigs in self._written_back.values() for sig in sigs]

    def write_back_at(self) -> float:
        """When the signs of life kept in memory are next due to be written (inf: none is kept)."""
        return self._last_write_back + self.write_back_s if self._touches else float("inf")

    def write_back_ended(self, committed: bool) -> None:
        """The transaction of the last write_back ended: on a rollback its signs of life go back to memory."""
        touches, self._unconfirmed = self._unconfirmed, {}
        self._written_back = {}
        if committed or not touches:
            return
        with self._touch_lock:
            for k, ev in touches.items():
                newer = self._touches.get(k)
                if newer is None or newer.t < ev.t:
                    self._touches[k] = ev

    @property
    def pending_write_back(self) -> int:
        """Subjects whose latest sign of life is only in memory."""
        return len(self._touches)

    def _rules_for(self, ev: Event) -> tuple[Rule, ...]:
        return (*self.by_type.get(ev.type, ()), *self.any_type)

    def tick(self, store: StateStore, now: float) -> list[Signal]:
        """Run every due timer."""
        out: list[Signal] = []
        due = store.due(now)
        holds = [key for rule_id, key in due if rule_id == HOLD]
        if holds or self.hold_full:  # first: the held messages came before any deadline due now
            out.extend(self._let_go(holds, now, store))
        held: bool | None = None  # whether a replay is still held (any worker's), asked once a pass if needed
        for rule_id, key in due:
            if rule_id == HOLD:
                continue
            rule = self.rules.get(rule_id)
            if self._touches and rule is not None:
                with self._touch_lock:
                    pending = self._touches.pop((rule_id, key), None)
                if pending is not None:  # a sign of life still in memory comes first
                    out.extend(self._feed(rule, key, pending, store))
            st = store.load(rule_id, key)
            if st is None or st.due is None or st.due > now:
                continue  # moved since the pass began (the let-go, or a sign of life, fed it)
            if rule is None:  # a rule removed from the pack: drop its timers
                st.due = None
                store.save(rule_id, key, st)
                continue
            waiting = st.data.get(REPLAY)
            if waiting:
                # Set by a late message: live, the messages after it (a door closing, a count falling) would
                # have come before this deadline. Some may be in a hold still (another device's share of the
                # replay, or this device's once a gap in its seqs said another worker has the rest). It waits
                # for them at most HOLD_MAX_S: replays held one after another must not hold it back for good.
                if held is None:
                    held = store.span(HOLD)[0] > 0
                began = now if waiting is True else float(waiting)
                if held and now < began + HOLD_MAX_S:
                    st.data[REPLAY] = began
                    st.due = min(now + REPLAY_GRACE_S, began + HOLD_MAX_S)
                    store.save(rule_id, key, st)
                    continue
                del st.data[REPLAY]
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
            if self.write_back_s and isinstance(rule, Absence):
                self._learn(rule_id, key, st)
            out.extend(self._correlate(sigs, store))
        return out

    def _correlate(self, sigs: list[Signal], store: StateStore) -> list[Signal]:
        if not sigs:
            return sigs  # most steps signal nothing
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

