"""Run one scenario against a running hub: publish life plus incidents, listen for alerts, score them."""

from __future__ import annotations

import logging
import math
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TextIO
from zoneinfo import ZoneInfo

from commhub.community import Community, Device
from commhub.config import Config
from simulators.clock import SimClock
from simulators.engine import Simulation, Stats
from simulators.fleet import select
from simulators.models import ModelContext
from simulators.publish import AGENT_NAME, make_agent
from simulators.recordings import Recordings
from simulators.rhythm import LocalTime
from simulators.scenario.alerts import AlertListener, ObservedAlert
from simulators.scenario.delivery import LateDelivery
from simulators.scenario.hub_harness import InFlight, ScenarioHub, isolated
from simulators.scenario.incidents import Crash, plan
from simulators.scenario.matching import Score, score
from simulators.scenario.report import Progress
from simulators.scenario.spec import Background, Scenario

log = logging.getLogger(__name__)

# An alert stamped further than this from the simulated window was stamped on the wall clock.
SIM_WINDOW_SLACK_S = 3600.0


@dataclass
class RunResult:
    """A scored run, with what was published."""

    score: Score
    stats: Stats
    meta: dict[str, Any]


def background(devices: Sequence[Device], bg: Background) -> list[Device]:
    """The devices of normal life a scenario asks for."""
    chosen = [d for d in devices
              if (bg.grids is None or d.grid in bg.grids)
              and (bg.buildings is None or d.building in bg.buildings)
              and (bg.kinds is None or d.kind.value in bg.kinds)
              and (bg.devices is None or d.id in bg.devices)]
    if bg.limit is not None:
        chosen = select(chosen, bg.limit) if bg.limit and chosen else []
    return chosen


def future(sc: Scenario, now: float | None = None, margin_s: float = 120.0) -> Scenario:
    """The scenario moved by whole weeks to start after now (same weekday and time of day, within a week).

    Whole weeks keep what weekly rosters, maintenance windows and working days see.

    The agent stamps its births with the wall clock. A birth newer than the simulated messages would make
    the hub's absence rules ignore them; one much older would make every device look long silent. Starting
    simulated time shortly after the births keeps both clocks consistent.
    """
    now = time.time() if now is None else now
    days = 7 * math.ceil((now + margin_s - sc.start_ts) / (7 * 86400))
    shifted = datetime.fromisoformat(sc.start) + timedelta(days=days)
    return sc.model_copy(update={"start": shifted.isoformat()})


def restrict(community: Community, fleet: Sequence[Device]) -> Community:
    """The community with only the simulated devices, so an isolated hub does not wait for the others."""
    keep = {d.id for d in fleet}
    data = community.model_dump(mode="json", exclude_none=True)
    data["devices"] = [d for d in data["devices"] if d["id"] in keep]
    residents = []
    for r in data.get("residents", []):
        r["devices"] = [d for d in r.get("devices", []) if d in keep]
        if r["devices"]:
            residents.append(r)
    data["residents"] = residents
    return Community.model_validate(data)


class ScenarioRunner:
    """Publishes a scenario through the agent publish path and scores the alerts the hub raises."""

    def __init__(self, cfg: Config, scenario: Scenario, *, speed: float | None = None, grace_s: float = 20.0,
                 settle_s: float = 3.0, recordings: Recordings | None = None, agent_name: str = AGENT_NAME,
                 state_dir: Path | None = None, out: TextIO | None = sys.stderr, with_hub: Path | None = None,
                 rules_file: Path | None = None, wall_clock: bool = False, catch_up_s: float = 60.0) -> None:
        if with_hub is not None and not wall_clock:
            scenario = future(scenario)
        if wall_clock:
            # A hub that keeps wall-clock time needs the scenario now and in real time.
            now = datetime.now(UTC).replace(microsecond=0).astimezone(ZoneInfo(cfg.community.site.timezone))
            scenario = scenario.model_copy(update={"start": now.isoformat()})
            speed = 1.0
        self.cfg = cfg
        self.scenario = scenario
        self.speed = speed if speed is not None else scenario.speed
        self.with_hub = with_hub
        self.rules_file = rules_file
        self.grace_s = grace_s
        self.settle_s = settle_s
        self.recordings = recordings
        self.agent_name = agent_name
        self.state_dir = state_dir
        self.out = out
        self.catch_up_s = catch_up_s  # how long the hub may take to handle the last message (a loaded machine)

    def run(self) -> RunResult:
        """Run the scenario to its end, wait for late alerts, and score; raises PlanError on a bad scenario."""
        sc = self.scenario
        cfg = self.cfg
        if self.with_hub is not None:
            cfg = isolated(cfg, self.with_hub, self.rules_file)
        community = cfg.community
        site = community.site.id
        index = community.device_index()
        local = LocalTime(community.site.timezone)
        the_plan = plan(sc, index, local, site)
        fleet = background(community.devices, sc.background)
        ids = {d.id for d in fleet}
        fleet += [index[i] for i in sorted(the_plan.devices) if i not in ids]
        if self.with_hub is not None:
            cfg = cfg.model_copy(update={"community": restrict(community, fleet)})
        start, end = sc.start_ts, sc.start_ts + sc.duration
        clock = SimClock(start, self.speed)
        hub = ScenarioHub(cfg, start, end) if self.with_hub is not None else None
        listener = AlertListener(cfg.mqtt, site)
        state_dir = self.state_dir or (self.with_hub / "agent" if self.with_hub is not None else None)
        # Each crashing agent serves its own devices, in its own state directory; the main agent the rest.
        crashed = {d for c in the_plan.crashes for d in c.devices}
        agent = make_agent(cfg, [d for d in fleet if d.id not in crashed], name=self.agent_name,
                           state_dir=state_dir)
        others = [(c, make_agent(cfg, [index[d] for d in c.devices], name=c.agent,
                                 state_dir=state_dir / f"crash-{c.agent}" if state_dir else None))
                  for c in the_plan.crashes]

        def told(crash: Crash) -> None:
            # The hub stamps a will when it handles it: hold the simulation until the rules have it (bounded),
            # so messages sent after the death cannot move its clock past the crash first. Not until its
            # alert: that waits for the will's grace, which only simulated time moving on can end.
            if hub is not None and not hub.handled_will(crash.agent, self.catch_up_s):
                log.warning("the scenario hub did not handle %s's will", crash.agent)
        def settle(crash: Crash, last_ts: float) -> None:
            # The hub handles everything sent before the death first: its clock is then at the crash.
            if hub is not None and not hub.settle(last_ts, crash.t, self.catch_up_s):
                log.warning("the scenario hub did not catch up before %s died", crash.agent)
        agents = _Agents(agent, others, told, settle, hub.inflight if hub is not None else None)
        progress = Progress(sc.name, sc.duration, self.out) if self.out is not None else None

        def on_progress(s: Stats) -> None:
            if progress is not None:
                progress.update((s.sim_ts if s.sim_ts == s.sim_ts else start) - start, s.published,
                                len({a.alert_id for a in listener.snapshot()}))
        ctx = ModelContext(site=site, local=local, recordings=self.recordings)
        late = LateDelivery(lambda d, b, ts, at: agents.publish(d, b, ts=ts, at=at), sc.delivery.late, start, sc.seed)
        sim = Simulation(fleet, late if sc.delivery.late else agents, clock, ctx, sc.seed, end=end,
                         injections=the_plan.injections, overrides=the_plan.overrides, progress=on_progress,
                         progress_every_s=0.25, announce=True)
        fleet_ids = {d.id for d in sim.devices}
        places = {(d.grid, d.building, d.unit) for d in sim.devices}

        def raised_at(a: ObservedAlert) -> float:
            if start - SIM_WINDOW_SLACK_S <= a.opened_at <= end + SIM_WINDOW_SLACK_S:
                # The hub keeps simulated time. Its event clock may lag a batch behind the message that
                # fired an instant rule, so an alert counts from its triggering event when that is later.
                return a.raised_at
            return clock.sim_at(a.received_mono)

        def in_scope(a: ObservedAlert) -> bool:
            if a.device_id is not None:
                return a.device_id in fleet_ids
            return any(g == a.grid and (a.building is None or b == a.building) and (a.unit is None or u == a.unit)
                       for g, b, u in places)

        wall0 = time.monotonic()
        if hub is not None:
            hub.start()
        try:
            listener.start()
            try:
                agent.start()
                try:
                    agents.start()
                    stats = sim.run()
                    late.release(float("inf"))
                    agents.due(math.inf)
                    acked = bool(agent.flush(max(30.0, self.catch_up_s)))
                    if hub is not None and not hub.caught_up(stats.last_ts, self.catch_up_s):
                        log.warning("the scenario hub did not catch up with the last message in %.0f s",
                                    self.catch_up_s)
                    self._wait(listener, raised_at, in_scope)
                    # Judge before the agent stops: its will then (rightly) reports every device offline.
                    observed = listener.snapshot()
                finally:
                    agent.stop()
                    agents.stop()
            finally:
                if progress is not None:
                    progress.done()
                listener.stop()
        finally:
            if hub is not None:
                hub.stop()
        result = score(sc, observed, raised_at, in_scope)
        meta = {"site": site, "seed": sc.seed, "speed": self.speed, "start": sc.start, "duration_s": sc.duration,
                "devices": stats.devices, "published": stats.published, "injected": stats.injected,
                "all_acknowledged": acked, "wall_s": round(time.monotonic() - wall0, 3),
                "invalid_notices": listener.invalid, "hub": "in-process" if hub is not None else "external",
                "alert_clock": _alert_clock(observed, start, end)}
        return RunResult(result, stats, meta)

    def _wait(self, listener: AlertListener, raised_at: Any, in_scope: Any) -> None:
        """Give the hub time for its last alerts: until every expectation is met, or the grace runs out."""
        deadline = time.monotonic() + (self.grace_s if self.scenario.expect else self.settle_s)
        while time.monotonic() < deadline:
            current = score(self.scenario, listener.snapshot(), raised_at, in_scope)
            if self.scenario.expect and all(e.status != "missed" for e in current.expected):
                time.sleep(min(self.settle_s, max(0.0, deadline - time.monotonic())))
                return
            time.sleep(0.1)


class _Agents:
    """The main agent, and agents that die (or stop cleanly) at a crash step; routes each device's messages."""

    def __init__(self, main: Any, others: Sequence[tuple[Crash, Any]], told: Any = None, settle: Any = None,
                 inflight: InFlight | None = None) -> None:
        self.main = main
        self.told = told  # called after a kill: waits until the hub has handled the will
        self.settle = settle  # called before a crash step with the newest stamp sent
        self.inflight = inflight  # the scenario hub's note of what is in flight on each agent's connection
        self.names = {id(a): c.agent for c, a in others}
        self.last_ts = -math.inf
        self.pending = sorted(others, key=lambda x: x[0].t)
        self.live = [a for _, a in others]
        self.by_device = {d: a for c, a in others for d in c.devices}

    def start(self) -> None:
        """Start the crash agents and wait for their births (the hub learns which devices each serves)."""
        for a in self.live:
            a.start()
            if not a.wait_connected(60.0) or not a.sync(60.0):
                log.warning("crash agent %s did not connect in 60 s", a.agent_name)

    def publish(self, device_id: str, body: Any, *, ts: datetime | None = None, at: float | None = None) -> int:
        """Run crash steps due by ts, then publish through the device's agent (nothing after it died).

        at: when it is sent on the simulated clock (a late window's end), if not at its stamp.
        """
        assert ts is not None
        self.due(ts.timestamp())
        a = self.by_device.get(device_id, self.main)
        if a is not self.main and a not in self.live:
            return 0  # the plan drops them; a rewrite may still let one through
        self.last_ts = max(self.last_ts, ts.timestamp())
        if self.inflight is None:
            return int(a.publish(device_id, body, ts=ts))
        return self.inflight.send(self.names.get(id(a), ""), lambda: int(a.publish(device_id, body, ts=ts)),
                                  device_id, ts.timestamp() if at is None else max(at, ts.timestamp()))

    def due(self, t: float) -> None:
        """Kill (or cleanly stop) every agent whose crash is due."""
        while self.pending and self.pending[0][0].t <= t:
            crash, a = self.pending.pop(0)
            self.live.remove(a)
            if self.settle is not None and self.last_ts > -math.inf:
                self.main.flush(60.0)
                self.settle(crash, self.last_ts)
            if crash.clean:
                a.stop()  # announces offline, clean, for each device and itself
            else:
                a.kill()
            if self.inflight is not None:
                self.inflight.forget(crash.agent)  # what it had not delivered will not come
            if not crash.clean and self.told is not None:
                self.told(crash)

    def stop(self) -> None:
        """Stop the agents still alive."""
        for a in self.live:
            a.stop()
        self.live = []


def _alert_clock(alerts: Sequence[ObservedAlert], start: float, end: float) -> str:
    """Whether the hub stamped alerts on simulated time, on the wall clock, or nothing was seen."""
    if not alerts:
        return "unknown"
    inside = sum(start - SIM_WINDOW_SLACK_S <= a.opened_at <= end + SIM_WINDOW_SLACK_S for a in alerts)
    return "simulated" if inside * 2 >= len(alerts) else "wall"
