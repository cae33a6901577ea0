"""Scenarios through the real rule engine in-process on simulated time: no broker, no hub, no database.

The rule engine is the hub's (`hub.rules`), with its state in memory; alerts get one id per (rule, subject)
as the alert store's identity does, and timers run at each message's time. Fast enough to score hundreds of
generated variants; `commhub scenario run --offline` and the tests use it.
"""

from __future__ import annotations

import functools
import math
import random
from datetime import datetime
from pathlib import Path
from typing import Any

from commhub.community import Community
from commhub.wire import Birth, DeviceState, _Body
from hub.routing.router import Router
from hub.routing.spec import RoutingSpec, load_routing
from hub.rules.clock import RULE as CLOCK_RULE
from hub.rules.clock import DeviceClocks
from hub.rules.engine import Engine, MemoryStates
from hub.rules.event import Ctx, Event, State
from hub.rules.spec import RulePack, load_rules
from simulators.clock import SimClock
from simulators.engine import Simulation
from simulators.models import ModelContext
from simulators.recordings import Recordings
from simulators.rhythm import LocalTime
from simulators.scenario.alerts import ObservedAlert
from simulators.scenario.delivery import LateDelivery
from simulators.scenario.incidents import Crash, plan
from simulators.scenario.matching import Score, score
from simulators.scenario.runner import background
from simulators.scenario.spec import Scenario

RULES = Path(__file__).resolve().parents[2] / "configs" / "rules.yaml"
ROUTING = Path(__file__).resolve().parents[2] / "configs" / "routing.yaml"


@functools.cache
def _pack(path: Path) -> RulePack:
    # Parsing the YAML costs more than a short scenario: hundreds of generated variants read it once.
    return load_rules(path)


@functools.cache
def _routing(path: Path) -> RoutingSpec:
    return load_routing(path)


class RulesLoop:
    """A publisher that feeds the real rule engine (in memory) on the simulated clock and records alerts."""

    def __init__(self, community: Community, rules: Path = RULES, overrides: dict[str, dict[str, Any]] | None = None,
                 start: float = 0.0, duplicate_share: float = 0.0, seed: int = 0) -> None:
        self.ctx = Ctx(community)
        self.engine = Engine(load_rules(rules, overrides) if overrides else _pack(rules), self.ctx)
        self.router = Router(_routing(ROUTING), community)  # tier 0 of every alert, as the store routes it
        self.store = MemoryStates()
        self.kinds = {d.id: d.kind.value for d in community.devices}
        self.seqs: dict[str, int] = {}
        self.ids: dict[tuple[str, str], int] = {}
        self.open: set[tuple[str, str]] = set()
        self.alerts: list[ObservedAlert] = []
        self.duplicate_share = duplicate_share
        self.duplicated = 0
        self._rng = random.Random(seed)
        # The hub's device clocks, on the delivery time: they tell a late (replayed) message from a live one.
        self.clocks = DeviceClocks(30.0)
        self._now = float("-inf")  # the last time the timers ran
        self.engine.seed(self.store, start)

    def publish(self, device_id: str, body: _Body, *, ts: datetime | None = None,
                received: float | None = None) -> int:
        """Run due timers up to the delivery time, then the event itself (twice, for a share: a redelivery)."""
        assert ts is not None
        t = ts.timestamp()
        now = t if received is None else max(t, received)
        seq = self.seqs.get(device_id, 0) + 1
        self.seqs[device_id] = seq
        self.catch_up(now)
        ev = Event(device_id, self.kinds[device_id], body.type, t, seq, body,  # type: ignore[attr-defined]
                   self.ctx.place(device_id), self.ctx.devices.get(device_id))
        self._record(self.engine.process([ev], self.store, now, self.clocks))
        if self.duplicate_share and self._rng.random() < self.duplicate_share:
            self.duplicated += 1
            self._record(self.engine.process([ev], self.store, now, self.clocks))
        return seq

    def publish_batch(self, msgs: list[tuple[str, _Body, datetime]], received: float) -> None:
        """Messages that arrive together (a replay), fed to the rules as one batch, as the hub reads a burst."""
        self.catch_up(received)
        events = []
        for device_id, body, ts in msgs:
            seq = self.seqs.get(device_id, 0) + 1
            self.seqs[device_id] = seq
            events.append(Event(device_id, self.kinds[device_id], body.type, ts.timestamp(), seq, body,  # type: ignore[attr-defined]
                                self.ctx.place(device_id), self.ctx.devices.get(device_id)))
        self._record(self.engine.process(events, self.store, received, self.clocks))
        for ev in events:
            if self.duplicate_share and self._rng.random() < self.duplicate_share:
                self.duplicated += 1
                self._record(self.engine.process([ev], self.store, received, self.clocks))

    def agent_up(self, crash: Crash, t: float, session: int = 1) -> None:
        """The agent of a crash connects: its online state, and each device's birth naming it."""
        self._deliver(crash.agent, DeviceState(status="online", session=session), t, t)
        for d in crash.devices:
            self._deliver(d, Birth(session=session, agent=crash.agent, version="sim",
                                   interval_s=min(self.ctx.devices[d].interval_s, 86400.0)), t, t)

    def agent_down(self, crash: Crash, connected: float, session: int = 1) -> None:
        """It dies (its will, stamped at connect as the broker keeps it) or stops, announcing it per device."""
        if crash.clean:
            for d in (*crash.devices, crash.agent):
                self._deliver(d, DeviceState(status="offline", session=session, clean=True), crash.t, crash.t)
        else:
            self._deliver(crash.agent, DeviceState(status="offline", session=session), connected, crash.t)

    def catch_up(self, now: float) -> None:
        """Run each timer when the hub's timer thread would: at its due time, or, if it was set in the past
        (by a late message), at the next tick after it was set; then tick at now."""
        last = None
        while (due := self.store.next_due()) is not None and due <= now:
            at = max(due, self._now)
            if at == last:
                break  # re-armed for the same instant: it waits for now (no endless loop)
            self._record(self.engine.tick(self.store, at))
            self._now = last = at
        self._record(self.engine.tick(self.store, now))
        self._now = max(self._now, now)

    def _deliver(self, device_id: str, body: _Body, t: float, received: float) -> None:
        self.catch_up(received)
        seq = self.seqs.get(device_id, 0) + 1
        self.seqs[device_id] = seq
        ev = Event(device_id, self.kinds.get(device_id, "agent"), body.type, t, seq, body,  # type: ignore[attr-defined]
                   self.ctx.place(device_id), self.ctx.devices.get(device_id))
        self._record(self.engine.process([ev], self.store, received, self.clocks))

    def _record(self, signals: list[Any]) -> None:
        for sig in signals:
            ident = (sig.rule, sig.subject)
            if sig.action == "clear":
                self.open.discard(ident)
                continue
            alert_id = self.ids.setdefault(ident, len(self.ids) + 1)
            p = sig.place
            labels = {"code": sig.code, "rule": sig.rule, "layer": sig.layer, "severity": sig.severity,
                      "site": p.site, "grid": p.grid, "building": p.building, "unit": p.unit, "device": p.device}
            d = self.router.decide(labels, sig.subject, 0, sig.t)
            route = (d.suppressed, tuple(f"{r['role']}:{r['id']}" for r in d.recipients))
            if ident in self.open:
                # A re-trigger updates the open alert; a higher severity is a sighting of its own (a step).
                if sig.severity == "low":
                    continue
                self.alerts.append(ObservedAlert(alert_id, sig.code, sig.severity, p.site, p.grid, p.building,
                                                 p.unit, p.device, "severity_raised", sig.t, 0.0, sig.rule,
                                                 None, *route))
                continue
            self.open.add(ident)
            self.alerts.append(ObservedAlert(alert_id, sig.code, sig.severity, p.site, p.grid, p.building, p.unit,
                                             p.device, "opened", sig.t, 0.0, sig.rule, None, *route))


def run_offline(sc: Scenario, community: Community, recordings: Recordings | None = None,
                overrides: dict[str, dict[str, Any]] | None = None) -> tuple[Score, RulesLoop]:
    """Run a scenario unpaced through the rule engine and score it."""
    local = LocalTime(community.site.timezone)
    index = community.device_index()
    the_plan = plan(sc, index, local, community.site.id)
    fleet = background(community.devices, sc.background)
    ids = {d.id for d in fleet}
    fleet += [index[i] for i in sorted(the_plan.devices) if i not in ids]
    loop = RulesLoop(community, overrides=overrides, start=sc.start_ts,
                     duplicate_share=sc.delivery.duplicate_share, seed=sc.seed)
    ctx = ModelContext(site=community.site.id, local=local, recordings=recordings)
    # A hub knows each device's clock before any incident: it met the device when its agent connected (its
    # birth). Without that, a device first heard in a shuffled replay looks like a wrong clock (hub.rules.clock).
    for d in fleet:
        loop.store.save(CLOCK_RULE, d.id, State({"est": 0.0}))
    crashes = sorted(the_plan.crashes, key=lambda c: c.t)
    for crash in crashes:
        loop.agent_up(crash, sc.start_ts)

    def deliver(d: str, b: _Body, ts: datetime, at: float) -> None:
        while crashes and crashes[0].t <= at:  # an agent dies between two messages
            loop.agent_down(crashes.pop(0), sc.start_ts)
        loop.publish(d, b, ts=ts, received=at)

    def deliver_batch(msgs: list[tuple[str, _Body, datetime]], at: float) -> None:
        while crashes and crashes[0].t <= at:
            loop.agent_down(crashes.pop(0), sc.start_ts)
        loop.publish_batch(msgs, at)
    late = LateDelivery(deliver, sc.delivery.late, sc.start_ts, sc.seed, deliver_batch)
    sim = Simulation(fleet, late, SimClock(sc.start_ts, 0), ctx, sc.seed, end=sc.start_ts + sc.duration,
                     injections=the_plan.injections, overrides=the_plan.overrides)
    sim.run()
    late.release(float("inf"))
    for crash in crashes:
        loop.agent_down(crash, sc.start_ts)
    loop.catch_up(sc.start_ts + sc.duration)
    fleet_ids = {d.id for d in sim.devices}
    places = {(d.grid, d.building) for d in sim.devices}

    def in_scope(a: ObservedAlert) -> bool:
        if a.device_id is not None:
            return a.device_id in fleet_ids
        return any(g == a.grid and (a.building is None or b == a.building) for g, b in places)
    return score(sc, loop.alerts, lambda a: a.opened_at if not math.isnan(a.opened_at) else 0.0, in_scope), loop
