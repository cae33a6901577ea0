"""Generated scenario variants: every catalogue incident and its near miss, somewhere else, at another time.

From a seed, `variants(community, seed, n)` makes n variants of each incident type and of its near miss:
another grid cell, building and unit from the community model, another weekday and time of day, values and
durations drawn across their valid range, report timing at, under and over the device's interval with
jitter, background normal life around it, and (in some) duplicated deliveries. Incidents are written from
the event catalogue (../shared/events.md), not from the rule pack: the variants test what the rules were not
tuned on. `busy_gates` makes a morning peak at every gate (queues, re-read faces) where nothing may fire.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from commhub.community import Community, Device
from simulators.models.common import ref
from simulators.models.facility import HYDRANT_MPA
from simulators.scenario import generate_facility as facility
from simulators.scenario.spec import Background, Scenario

MONDAY = datetime(2026, 3, 2)  # a week of start days begins here
_ACCESS = ("door_controller", "face_gate", "turnstile")
# The first recipients of each code, as ../shared/events.md lists them (the expectation checks the route).
FIRST_TIER = {
    "sos_button": "control_room", "perimeter_intrusion": "control_room", "door_forced_open": "property",
    "door_held_open": "property", "invalid_credential_burst": "property", "tailgating": "property",
    "duress": "police_liaison", "device_offline": "maintenance", "device_tamper": "maintenance",
    "smoke_alarm": "household", "gas_leak": "household", "hydrant_pressure_low": "property",
    "fire_lane_blocked": "property", "ebike_in_elevator": "property", "crowd_gathering": "property",
    "elderly_inactivity": "emergency_contact", "frequent_stranger": "property", "loitering": "property",
    **facility.FIRST_TIER,
}
HOUR = 3600.0
DAY = 86400.0
# Report timing relative to a device's interval: under, at, just over (the drop rule reads one interval back).
_TIMING = (0.5, 0.9, 1.0, 1.0, 1.05, 1.15)


class Gen:
    """One variant being written: picks a device, a time and values; collects incidents and expectations."""

    def __init__(self, community: Community, rng: random.Random, name: str, limit: int = 40) -> None:
        self.c = community
        self.limit = limit
        self.rng = rng
        self.name = name
        self.incidents: list[dict[str, Any]] = []
        self.expect: list[dict[str, Any]] = []
        self.at = rng.uniform(180.0, 420.0)
        self.duration = 0.0
        self.hours: tuple[int, int] = (0, 24)
        self.device: Device | None = None
        self.delivery: dict[str, Any] = {}
        self.start_s: float | None = None  # the start, seconds after midnight, when the incident needs it
        self.bg_kinds: tuple[str, ...] | None = None  # background kinds, for incidents that last days

    def pick(self, *kinds: str, where: Callable[[Device], bool] = lambda _d: True) -> Device:
        """A random device of these kinds (anywhere in the community)."""
        choice = [d for d in self.c.devices if d.kind.value in kinds and where(d)]
        if not choice:
            raise ValueError(f"{self.name}: the community has no device of kind {kinds}")
        self.device = self.rng.choice(choice)
        return self.device

    def u(self, a: float, b: float, nd: int = 2) -> float:
        """A uniform draw, rounded."""
        return round(self.rng.uniform(a, b), nd)

    def interval(self, dev: Device) -> float:
        """A report spacing at, under or over the device's interval, with jitter."""
        return round(max(0.5, dev.interval_s * self.rng.choice(_TIMING) + self.rng.uniform(-0.02, 0.02)
                         * dev.interval_s), 2)

    def incident(self, action: str, **kw: Any) -> None:
        """Add an incident at the variant's time on its device."""
        assert self.device is not None
        self.incidents.append({"at": round(self.at, 2), "action": action, "device": self.device.id, **kw})

    def raw(self, messages: list[tuple[float, dict[str, Any]]], silence: float = 0.0) -> None:
        """Add a raw incident: bodies at offsets."""
        self.incident("raw", silence=round(silence, 2),
                      messages=[{"after": round(a, 2), "body": b} for a, b in messages])

    def expects(self, code: str, within: float, after: float = 0.0, **where: Any) -> None:
        """Ground truth: this alert by this deadline."""
        assert self.device is not None
        where = where or {"device": self.device.id}
        role = FIRST_TIER[code]
        if role == "household" and not self.device.unit:
            role = "control_room"  # no unit, no household: the tier is skipped
        if role == "emergency_contact" and not any(r.emergency_contact for r in self.c.residents
                                                   if self.device.id in r.devices):
            role = "grid_worker"  # no contact on file: the tier is skipped
        self.expect.append({"code": code, "within": round(within, 1), "after": round(self.at + after, 2),
                            "recipients": [role], "paged": True, **where})

    def scenario(self, seed: int, length: float) -> Scenario:
        """The variant as a scenario file model."""
        assert self.device is not None
        day = MONDAY + timedelta(days=self.rng.randrange(7))
        lo, hi = self.hours
        start_s = self.start_s if self.start_s is not None else \
            self.rng.uniform(lo * 3600.0, max(lo * 3600.0, hi * 3600.0 - length - self.at))
        tz = ZoneInfo(self.c.site.timezone)
        start = (datetime(day.year, day.month, day.day, tzinfo=tz) + timedelta(seconds=int(start_s)))
        d = self.device
        bg = (Background(buildings=(d.building,), kinds=self.bg_kinds, limit=self.limit) if d.building
              else Background(grids=(d.grid,), kinds=self.bg_kinds, limit=self.limit))
        doc = {"name": self.name, "seed": seed, "start": start.isoformat(),
               "duration": round(self.at + length + 60.0, 1), "speed": 120.0, "background": bg.model_dump(),
               "incidents": self.incidents, "expect": self.expect,
               "description": f"generated: {self.name} at {d.id}"}
        if self.delivery:
            doc["delivery"] = self.delivery
        return Scenario.model_validate(doc)


def _forced(g: Gen, near: bool) -> float:
    g.pick(*_ACCESS)
    # An authorized door left open over 30 s is held open (another alert), so the near miss closes in time.
    open_for = g.u(3.0, 25.0) if near else g.u(6.0, 180.0)
    g.incident("forced_open", open_for=open_for, authorized=near)
    if not near:
        g.expects("door_forced_open", 30.0)
    return open_for + 10.0


def _held(g: Gen, near: bool) -> float:
    g.pick("door_controller")
    open_for = g.u(3.0, 27.0) if near else g.u(40.0, 900.0)
    g.incident("held_open", open_for=open_for)
    if not near:
        g.expects("door_held_open", 90.0)
        if open_for > 300 + 61:
            g.expects("door_held_open", 90.0, after=301.0, severity="medium", device=g.device.id if g.device else None)
    return open_for + 10.0


def _tailgate(g: Gen, near: bool) -> float:
    g.pick("turnstile", "face_gate")
    g.incident("tailgate", passages=1 if near else g.rng.randint(2, 4))
    if not near:
        g.expects("tailgating", 30.0)
    return 20.0


def _burst(g: Gen, near: bool) -> float:
    g.pick(*_ACCESS)
    if near:
        n, spacing = (2, g.u(1.0, 40.0)) if g.rng.random() < 0.5 else (3, g.u(31.0, 60.0))
    else:
        n = g.rng.randint(3, 6)
        spacing = g.u(1.0, 59.0 / (n - 1))
    g.incident("credential_burst", denials=n, spacing=spacing)
    if not near:
        g.expects("invalid_credential_burst", 60.0 + 15.0)
    return n * spacing + 20.0


def _duress(g: Gen, near: bool) -> float:
    dev = g.pick("door_controller")
    if near:  # an ordinary exit by the button at the same reader
        g.raw([(0.0, {"type": "exit_request", "door": "main"})])
    else:
        g.incident("duress")
        g.expects("duress", 15.0, severity="critical", device=dev.id)
    return 20.0


def _smoke(g: Gen, near: bool) -> float:
    g.pick("smoke")
    if near:  # dust raises obscuration a little; the detector stays out of alarm
        g.raw([(0.0, {"type": "smoke_state", "alarm": False, "obscuration_pct_m": g.u(0.5, 3.0)})])
        return 30.0
    alarm_for = g.u(30.0, 1200.0)
    g.incident("smoke", alarm_for=alarm_for)
    g.expects("smoke_alarm", 30.0)
    return alarm_for + 10.0


def _hydrant(g: Gen, near: bool) -> float:
    dev = g.pick("hydrant")
    lo, hi = HYDRANT_MPA
    base = g.u(lo, hi, 3)  # where normal life keeps it, so the step from the last normal reading is no drop
    fall = g.u(0.005, 0.045, 3) if near else g.u(0.05, base - 0.01, 3)
    low = round(base - fall, 3)
    if near:
        low = max(low, 0.125)
    gap = round(dev.interval_s * g.rng.choice((0.5, 0.9, 1.0, 1.0, 1.05, 1.15)) + g.rng.uniform(-1.0, 1.0), 2)
    lasts = g.u(2 * dev.interval_s, 6 * dev.interval_s)
    # The device's own readings stop at the incident; the first of ours comes 1.3 intervals later, beyond the
    # drop rule's reach of the last normal one.
    t0 = round(1.3 * dev.interval_s, 2)
    msgs = [(t0, {"type": "hydrant_pressure", "pressure_mpa": base})]
    t = t0 + gap
    while t < t0 + gap + lasts:
        msgs.append((round(t, 2), {"type": "hydrant_pressure", "pressure_mpa": low}))
        t += g.interval(dev)
    msgs.append((round(t, 2), {"type": "hydrant_pressure", "pressure_mpa": base}))
    # Normal life resumes 1.3 intervals after our last reading, beyond the drop rule's reach: the random walk
    # it resumes from may sit 0.05 MPa below our level, which would be a drop the generator made.
    g.raw(msgs, silence=t + t0)
    gap += t0
    if not near:
        g.expects("hydrant_pressure_low", 120.0, after=gap)
    return t + t0 + 10.0


def _gas(g: Gen, near: bool) -> float:
    dev = g.pick("gas")
    lel = g.u(0.0, 19.5, 1) if near else g.u(20.0, 100.0, 1)
    lasts = g.u(60.0, 900.0)
    g.incident("gas", lel_pct=lel, lasts=lasts, every=g.interval(dev))
    if not near:
        g.expects("gas_leak", 60.0)
    return lasts + 10.0


def _ebike(g: Gen, near: bool) -> float:
    g.pick("elevator")
    frames = g.rng.randint(2, 5)
    spacing = g.u(0.3, 5.0 / (frames - 1))
    floor = g.rng.randint(2, 30) if near else g.rng.randint(-3, 1)
    g.incident("ebike_in_lift", floor=floor, frames=frames, spacing=spacing,
               source=g.rng.choice(("camera", "rfid")))
    if not near:
        g.expects("ebike_in_elevator", 15.0)
    return frames * spacing + 10.0


def _fire_lane(g: Gen, near: bool) -> float:
    g.pick("camera")
    every = g.u(5.0, 60.0)
    lasts = g.u(30.0, 290.0) if near else g.u(310.0, 1200.0)
    g.incident("vehicle_in_zone", zone="fire_lane", lasts=lasts, every=every)
    if not near:
        g.expects("fire_lane_blocked", 300.0 + every + 30.0)
    return lasts + 10.0


def _offline(g: Gen, near: bool) -> float:
    dev = g.pick("camera", "gas", "hydrant", "electrical", "charger", "env",
                 where=lambda d: d.interval_s <= 300)
    lasts = g.u(0.3 * dev.interval_s, 1.8 * dev.interval_s) if near else g.u(3.5 * dev.interval_s,
                                                                               8 * dev.interval_s)
    g.incident("offline", lasts=lasts)
    if not near:
        g.expects("device_offline", 3 * dev.interval_s + 30.0)
    return lasts + 10.0


def _covered(g: Gen, near: bool) -> float:
    g.pick("camera")
    if near:  # the camera reports a cleared tamper (after a cleaning), nothing active
        g.raw([(0.0, {"type": "tamper", "kind": "covered", "active": False})])
        return 20.0
    lasts = g.u(15.0, 600.0)
    g.incident("camera_covered", lasts=lasts, kind=g.rng.choice(("covered", "defocused", "moved", "signal_lost")))
    g.expects("device_tamper", 15.0)
    return lasts + 10.0


def _crowd(g: Gen, near: bool) -> float:
    g.pick("camera")
    every = g.u(3.0, 20.0)
    if near:
        if g.rng.random() < 0.5:
            count, lasts = g.rng.randint(2, 19), g.u(60.0, 600.0)
        else:
            count, lasts = g.rng.randint(20, 200), g.u(10.0, 45.0)
            every = g.u(3.0, 10.0)
    else:
        count, lasts = g.rng.randint(20, 300), g.u(90.0, 900.0)
    g.incident("crowd", zone="plaza", count=count, lasts=lasts, every=every)
    if not near:
        g.expects("crowd_gathering", 60.0 + every + 30.0)
    return lasts + 10.0


def _intrusion(g: Gen, near: bool) -> float:
    g.pick("camera")
    lasts = g.u(0.5, 3.5) if near else g.u(7.0, 90.0)
    g.incident("intrusion", zone="perimeter", lasts=lasts, every=g.u(0.5, 2.0))
    if not near:
        g.expects("perimeter_intrusion", 20.0)
    return lasts + 10.0


def _beam(g: Gen, near: bool) -> float:
    g.pick("intrusion")
    if near:  # the zone's heartbeat only: a disarmed beam sends nothing else
        g.raw([(0.0, {"type": "heartbeat", "uptime_s": 100.0})])
        return 10.0
    g.raw([(0.0, {"type": "door_opened", "door": "fence"}), (g.u(0.5, 20.0), {"type": "door_closed",
                                                                              "door": "fence"})])
    g.expects("perimeter_intrusion", 15.0)
    return 30.0


def _sos(g: Gen, near: bool) -> float:
    g.pick("panic_button")
    if near:
        g.raw([(0.0, {"type": "heartbeat", "uptime_s": 10.0})])
        return 10.0
    g.raw([(0.0, {"type": "panic_press"})])
    g.expects("sos_button", 10.0)
    return 20.0


def _resident(g: Gen) -> tuple[Device, Device]:
    """An opted-in resident's door contact and water meter."""
    r = g.rng.choice([r for r in g.c.residents if len(r.devices) >= 2])
    index = g.c.device_index()
    devs = [index[d] for d in r.devices]
    door = next(d for d in devs if d.kind.value == "door_contact")
    meter = next(d for d in devs if d.kind.value == "water_meter")
    return door, meter


def _door_visit(g: Gen, at: float) -> None:
    """The resident goes out and the door closes behind them: activity."""
    saved = g.at
    g.at = at
    g.raw([(0.0, {"type": "door_contact", "open": True}), (g.u(5.0, 40.0), {"type": "door_contact",
                                                                            "open": False})])
    g.at = saved


def _elderly(g: Gen, near: bool) -> float:
    # Catalogue: no door opening for 24 h, or < 10 L of water in 12 h (checked 06-22 h), at an opted-in
    # resident's home. A near miss has some activity: the door opens again within the day, or the water
    # runs again before 12 h.
    door, meter = _resident(g)
    # A day and more of normal life: the household's building, without its 10-second cameras.
    g.limit = min(g.limit, 8)
    g.bg_kinds = ("door_contact", "water_meter", "door_controller", "smoke", "gas", "panic_button", "elevator")
    if g.rng.random() < 0.5:  # the door
        g.device = door
        _door_visit(g, g.at)
        still = g.u(12 * HOUR, 22.5 * HOUR) if near else g.u(24.5 * HOUR, 30 * HOUR)
        g.at += 60.0
        g.incident("no_activity", lasts=still)
        if near:
            _door_visit(g, g.at + still)
            return still + 2 * HOUR
        g.expects("elderly_inactivity", 24 * HOUR + 600.0, after=-60.0, building=door.building, unit=door.unit)
        return 24 * HOUR + 1200.0
    g.device = meter  # the water: the meter stands still from a morning hour on, while the door may open
    still = g.u(4 * HOUR, 10 * HOUR) if near else g.u(12.5 * HOUR, 16 * HOUR)
    g.start_s = g.u(6 * HOUR, 9 * HOUR) - g.at  # 12 h later is inside the checked hours (18-21 h)
    g.incident("no_activity", lasts=still)
    if near:
        return 14 * HOUR
    # The meter reports every 15 min: the first reading past 12 h shows it.
    g.expects("elderly_inactivity", 12 * HOUR + 2 * meter.interval_s, building=meter.building, unit=meter.unit)
    return 12 * HOUR + 3 * meter.interval_s


def _stranger(g: Gen, near: bool) -> float:
    # Catalogue: the same unregistered person ref enters >= 5 times in 7 days, or on >= 3 nights (00-05 h).
    gate = g.pick("face_gate")
    g.limit = min(g.limit, 4)  # a week and more: the building's gates and doors
    g.bg_kinds = ("face_gate", "door_controller", "turnstile")
    g.start_s = g.u(0.0, 600.0)  # the scenario starts just after a midnight: day k is k * 86400 s on
    who = ref(g.c.site.id, "stranger", g.name)
    nights = g.rng.random() < 0.5
    if nights:  # hit: 3-4 distinct nights; near: 2 nights and 2 days (4 entries)
        days = sorted(g.rng.sample(range(7), 2 if near else g.rng.randint(3, 4)))
        times = [d * DAY + g.u(0.2 * HOUR, 4.5 * HOUR) for d in days]
        if near:
            times += [d * DAY + g.u(8 * HOUR, 21 * HOUR) for d in g.rng.sample(range(7), 2)]
    else:  # hit: 5-8 daytime entries inside 6.5 days; near: 4 in a week, or 5-6 spread over more than 7 days
        if near and g.rng.random() < 0.5:
            times = [d * DAY + g.u(7 * HOUR, 21.5 * HOUR) for d in sorted(g.rng.sample(range(7), 4))]
        elif near:
            times, t = [], g.u(7 * HOUR, 10 * HOUR)
            for _ in range(g.rng.randint(5, 6)):
                times.append(t)
                t += g.u(1.8 * DAY, 2.4 * DAY)
                t = (t // DAY) * DAY + min(max(t % DAY, 7 * HOUR), 21.5 * HOUR)
        else:
            # 5-8 visits on 5-8 distinct days of the week (07-21:30 h), each over before the next begins.
            times = [d * DAY + g.u(7 * HOUR, 21.5 * HOUR) for d in sorted(g.rng.sample(range(7),
                                                                                  g.rng.randint(5, 7)))]
    times = sorted(t - g.start_s for t in times)
    times = [max(t, 60.0) for t in times]
    for i, t in enumerate(times):  # in through the face gate as a visitor, out again later
        g.at = t
        g.raw([(0.0, {"type": "access_granted", "door": "main", "credential_ref": who, "method": "face",
                      "registered": False}),
               (g.u(600.0, 3600.0), {"type": "access_granted", "door": "main", "credential_ref": who,
                                     "method": "face", "registered": False, "direction": "out"})])
        if not near and ((nights and i == 2) or (not nights and i == 4)):
            g.expects("frequent_stranger", 60.0, building=gate.building)
    g.at = times[0]
    return times[-1] - times[0] + 2 * HOUR


def _loitering(g: Gen, near: bool) -> float:
    # Catalogue: the same tracked person in a zone for >= 120 s at night. Near misses: a shorter stay at night,
    # or a long one by day.
    g.pick("camera")
    by_day = near and g.rng.random() < 0.5
    dwell = g.u(125.0, 900.0) if not near or by_day else g.u(20.0, 110.0)
    g.hours = (7, 21) if by_day else (22, 30)  # 22-06 h local (past midnight into the next morning)
    every = g.u(1.0, 5.0)
    g.incident("intrusion", zone=g.rng.choice(("lobby", "entrance", "parking", "plaza")), lasts=dwell,
               every=every)
    if not near:
        g.expects("loitering", 120.0 + every + 15.0)
    return dwell + 10.0


def _agent_crash(g: Gen, near: bool) -> float:
    # Catalogue: device_offline on a will message; one alert for the agent, grouping its devices. A near miss
    # is a planned stop the agent announces: its devices go quiet and nobody is told, then or later.
    first = g.pick("camera", "gas", "hydrant", "electrical", "env", "door_controller",
                   where=lambda d: d.building is not None)
    mates = [d for d in g.c.devices if d.building == first.building and d.id != first.id
             and d.kind.value in ("camera", "gas", "hydrant", "electrical", "env", "door_controller")]
    served = [first, *g.rng.sample(mates, min(len(mates), g.rng.randint(1, 7)))]
    g.incident("agent_crash", agent=f"agent_{first.building}_{g.rng.randrange(100)}",
               devices=[d.id for d in served[1:]], clean=near)
    if not near:
        g.expects("device_offline", 30.0, building=first.building)
    # Long enough for every device it served to have missed three reports.
    return 3.5 * max(d.interval_s for d in served) + 60.0


KINDS: dict[str, Callable[[Gen, bool], float]] = {
    "forced_open": _forced, "held_open": _held, "tailgate": _tailgate, "credential_burst": _burst,
    "duress": _duress, "smoke": _smoke, "hydrant_drop": _hydrant, "gas": _gas, "ebike_in_lift": _ebike,
    "fire_lane": _fire_lane, "offline": _offline, "camera_covered": _covered, "crowd": _crowd,
    "intrusion": _intrusion, "beam": _beam, "sos": _sos, "elderly": _elderly, "stranger": _stranger,
    "loitering": _loitering, "agent_crash": _agent_crash, **facility.KINDS,
}


# Kinds whose incident is the device's silence (late delivery would be the incident itself).
_NOT_LATE = ("offline", "agent_crash")
# Slack after a replay ends for a timer it set to run (the engine's replay grace, and a tick).
_REPLAY_SLACK_S = 15.0
_SHUFFLED_SHARE = 1 / 3  # of late variants, replayed out of order


def _late(g: Gen, shuffled_share: float = _SHUFFLED_SHARE) -> None:
    """The incident device's link drops around the incident; its spool replays minutes later (in order or
    shuffled). The hub may judge only once the messages are in: deadlines count from the replay's end."""
    dev = g.device
    assert dev is not None
    # A replay over several reconnects, or from more than one spool file, comes out of order. Drawn from its
    # own seeded stream, so the variants' other draws stay what they were before shuffled replays came in.
    shuffled = random.Random(f"{g.name}/order").random() < shuffled_share
    # Everything held only while the silence stays under the device's offline timeout (3 intervals); a device
    # reporting more often keeps its heartbeats live while its events queue up.
    # A camera's events come after its newer heartbeats: out of order.
    cap = min(600.0, 1.5 * dev.interval_s)
    heartbeats = cap < 60.0
    lasts = g.u(60.0, 300.0) if heartbeats else g.u(min(60.0, cap), cap)
    at = max(1.0, g.at - g.u(0.0, min(60.0, lasts / 2)))
    g.delivery = {**g.delivery, "late": [{"device": dev.id, "at": round(at, 2), "lasts": lasts,
                                          "heartbeats": heartbeats,
                                          "order": "shuffled" if shuffled else "in_order"}]}
    end = at + lasts
    for e in g.expect:
        if e["after"] <= end:
            e["within"] = round(max(e["within"], end - e["after"] + _REPLAY_SLACK_S + e["within"]), 1)


def variants(community: Community, seed: int, n: int, kinds: tuple[str, ...] | None = None,
             background_limit: int = 40, late_share: float = 0.3,
             shuffled_share: float = _SHUFFLED_SHARE) -> list[Scenario]:
    """n variants of every incident type and n of its near miss, reproducible from the seed; each has up to
    background_limit devices of normal life around it (its building, or its grid), and a late_share of
    them a replay of the incident device's messages (a shuffled_share of those out of order)."""
    out: list[Scenario] = []
    for kind in kinds or tuple(KINDS):
        for i in range(n):
            for near in (False, True):
                name = f"gen_{kind}_{'near' if near else 'hit'}_{seed}_{i}"
                rng = random.Random(f"{seed}/{kind}/{i}/{near}")
                g = Gen(community, rng, name, background_limit)
                length = KINDS[kind](g, near)
                if rng.random() < 0.3:
                    g.delivery = {"duplicate_share": round(rng.uniform(0.05, 0.3), 3)}
                if kind not in _NOT_LATE and rng.random() < late_share:
                    _late(g, shuffled_share)
                deadline = max((e["after"] - g.at + e["within"] for e in g.expect), default=0.0)
                # A replay ends inside the scenario, with time after it for what it may wrongly raise.
                replayed = max((w["at"] + w["lasts"] - g.at + 60.0 for w in g.delivery.get("late", ())),
                               default=0.0)
                out.append(g.scenario(rng.randrange(1 << 30), max(length, deadline + 10.0, replayed)))
    return out


def busy_gates(community: Community, seed: int, hours: float = 3.0) -> Scenario:
    """A morning peak at every gate: queues (grant, grant, passage, passage), faces read twice, no alert due."""
    rng = random.Random(f"{seed}/busy")
    gates = [d for d in community.devices if d.kind.value in ("turnstile", "face_gate")]
    incidents: list[dict[str, Any]] = []
    for gate in gates:
        # The queues are the gate's whole traffic: its own normal life stays muted (heartbeats go on), so no
        # resident's exit is cut by a queue's mute and no grant loses its passage.
        incidents.append({"at": 0.0, "action": "raw", "device": gate.id, "silence": hours * 3600.0,
                          "messages": [{"after": 0.0, "body": {"type": "heartbeat", "uptime_s": 1.0}}]})
        t = rng.uniform(60.0, 300.0)
        k = 0
        while t < hours * 3600.0 - 120.0:
            people = rng.choice((1, 1, 2, 2, 3))
            refs = [ref(community.site.id, gate.id, "busy", str(k + j)) for j in range(people)]
            msgs: list[dict[str, Any]] = []
            a = 0.0
            for r in refs:  # everyone badges first (a queue), then they pass one by one
                msgs.append({"after": round(a, 2), "body": {"type": "access_granted", "door": "main",
                                                             "credential_ref": r, "method": "face"}})
                if rng.random() < 0.3:  # the gate reads the same face again while the person waits
                    msgs.append({"after": round(a + rng.uniform(0.3, 1.5), 2),
                                 "body": {"type": "access_granted", "door": "main", "credential_ref": r,
                                          "method": "face"}})
                a += rng.uniform(0.4, 1.5)
            for _ in refs:
                a += rng.uniform(0.6, 2.0)
                msgs.append({"after": round(a, 2), "body": {"type": "passage", "door": "main", "count": 1}})
            msgs.sort(key=lambda m: float(m["after"]))
            incidents.append({"at": round(t, 2), "action": "raw", "device": gate.id, "messages": msgs})
            k += people
            t += a + rng.expovariate(1 / 40.0) + 2.0
    tz = ZoneInfo(community.site.timezone)
    start = datetime(2026, 3, 3, 6, 30, tzinfo=tz)
    return Scenario.model_validate({
        "name": f"gen_busy_gates_{seed}", "seed": seed, "start": start.isoformat(), "duration": hours * 3600.0,
        "speed": 240.0, "background": {"devices": []}, "incidents": incidents,
        "description": "generated: a morning peak at every gate, queues and re-read faces; nothing may fire"})
