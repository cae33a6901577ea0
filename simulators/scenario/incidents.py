"""Expanding a scenario's incidents into messages injected on top of normal life, and changes to that life."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from pydantic import TypeAdapter, ValidationError

from commhub.community import Device
from commhub.wire import (
    KIND_BODIES,
    AccessDenied,
    AccessGranted,
    Body,
    Box,
    CameraCrowd,
    CameraObject,
    DeviceKind,
    DoorClosed,
    DoorContact,
    DoorOpened,
    Duress,
    ElevatorEbike,
    ExitRequest,
    GasReading,
    Heartbeat,
    HydrantPressure,
    Passage,
    PatrolScan,
    SmokeState,
    Tamper,
    WaterMeter,
    _Body,
)
from simulators.engine import Injection, Override, Rewrite
from simulators.models.access import DOOR
from simulators.models.common import ref
from simulators.models.people import PATROL_MAX_LATE_S, patrol_slots
from simulators.rhythm import LocalTime
from simulators.scenario import spec as s

NOMINAL_MPA = 0.30
BODY = TypeAdapter(Body)


class PlanError(ValueError):
    """An incident cannot happen as written (unknown device, wrong kind); the message names the incident."""


@dataclass(frozen=True)
class Crash:
    """An agent that dies (or stops cleanly) at t, and the devices it serves."""

    t: float
    agent: str
    devices: tuple[str, ...]
    clean: bool


@dataclass
class Plan:
    """What a scenario adds to and changes in normal life."""

    injections: list[Injection] = field(default_factory=list)
    overrides: list[Override] = field(default_factory=list)
    devices: set[str] = field(default_factory=set)
    crashes: list[Crash] = field(default_factory=list)


def _mute(_t: float, b: _Body) -> _Body | None:
    """Keep liveness, drop activity."""
    return b if isinstance(b, Heartbeat) else None


# door_forced_open's window: an opening needs a grant or exit request this recently (configs/rules.yaml).
_DOOR_WINDOW_S = 5.0


def _mute_door(until: float) -> Rewrite:
    """_mute for a door's quiet window, except that a grant or exit request in its last _DOOR_WINDOW_S passes:
    the opening that follows may fall after the window, and without its authorization it would look forced
    (normal life cut in two; seen as a false door_forced_open in a generated near miss)."""
    def rewrite(t: float, b: _Body) -> _Body | None:
        if t >= until - _DOOR_WINDOW_S and isinstance(b, (AccessGranted, ExitRequest)):
            return b
        return _mute(t, b)
    return rewrite


def _drop(_t: float, _b: _Body) -> _Body | None:
    return None


def _drop_types(*types: type[_Body]) -> Rewrite:
    def rewrite(_t: float, b: _Body) -> _Body | None:
        return None if isinstance(b, types) else b
    return rewrite


def _every(t0: float, lasts: float, every: float) -> list[float]:
    n = max(1, math.ceil(lasts / every)) if every > 0 else 1
    return [t0 + i * every for i in range(n) if i * every < lasts or i == 0]


class _Expander:
    def __init__(self, scenario_site: str, local: LocalTime, plan: Plan) -> None:
        self.site = scenario_site
        self.local = local
        self.plan = plan

    def inject(self, dev: Device, t: float, body: _Body) -> None:
        self.plan.injections.append(Injection(t, dev.id, body))

    def override(self, dev: Device, t0: float, t1: float, rewrite: Rewrite) -> None:
        self.plan.overrides.append(Override(dev.id, t0, t1, rewrite))

    def forced_open(self, inc: s.ForcedOpen, dev: Device, t: float) -> None:
        end = t + inc.open_for + 5.0
        self.override(dev, t - 15.0, end, _mute_door(end))
        if inc.authorized:
            self.inject(dev, t - 2.0, ExitRequest(door=DOOR))
        self.inject(dev, t, DoorOpened(door=DOOR))
        self.inject(dev, t + inc.open_for, DoorClosed(door=DOOR))

    def held_open(self, inc: s.HeldOpen, dev: Device, t: float) -> None:
        end = t + inc.open_for + 6.0
        self.override(dev, t - 15.0, end, _mute_door(end))
        who = ref(self.site, dev.id, "held", str(int(t)))  # one credential per incident, not per door
        self.inject(dev, t, AccessGranted(door=DOOR, credential_ref=who, method="card"))
        self.inject(dev, t + 1.0, DoorOpened(door=DOOR))
        self.inject(dev, t + 1.0 + inc.open_for, DoorClosed(door=DOOR))

    def tailgate(self, inc: s.Tailgate, dev: Device, t: float) -> None:
        self.override(dev, t - 10.0, t + 10.0, _mute)
        method: Literal["face", "card"] = "face" if dev.kind is DeviceKind.FACE_GATE else "card"
        who = ref(self.site, dev.id, "tailgate", str(int(t)))
        self.inject(dev, t, AccessGranted(door=DOOR, credential_ref=who, method=method))
        self.inject(dev, t + 1.5, Passage(door=DOOR, count=inc.passages))

    def credential_burst(self, inc: s.CredentialBurst, dev: Device, t: float) -> None:
        # Only other denials could change the count; residents keep passing (muting their grants would make a
        # resident's exit vanish, and the next entry an anti-passback alert that normal life never raises).
        self.override(dev, t - 10.0, t + inc.denials * inc.spacing + 10.0, _drop_types(AccessDenied))
        method: Literal["face", "card"] = "face" if dev.kind is DeviceKind.FACE_GATE else "card"
        for i in range(inc.denials):
            self.inject(dev, t + i * inc.spacing,
                        AccessDenied(door=DOOR, credential_ref=ref(self.site, dev.id, "burst", str(i)), method=method,
                                     reason="unknown_credential"))

    def duress(self, _inc: s.DuressCode, dev: Device, t: float) -> None:
        self.inject(dev, t, Duress(door=DOOR))

    def smoke(self, inc: s.SmokeAlarm, dev: Device, t: float) -> None:
        def alarm(_t: float, b: _Body) -> _Body | None:
            return SmokeState(alarm=True, obscuration_pct_m=4.0) if isinstance(b, SmokeState) else b
        self.override(dev, t, t + inc.alarm_for, alarm)
        self.inject(dev, t, SmokeState(alarm=True, obscuration_pct_m=4.0))
        self.inject(dev, t + inc.alarm_for, SmokeState(alarm=False, obscuration_pct_m=0.1))

    def hydrant_drop(self, inc: s.HydrantDrop, dev: Device, t: float) -> None:
        # A ramp starts from the last normal reading, so its first step is as gentle as the rest.
        seen = {"from": NOMINAL_MPA}

        def level(ts: float) -> float:
            if inc.ramp <= 0:
                return inc.to_mpa
            frac = min(1.0, max(0.0, (ts - t) / inc.ramp))
            return round(seen["from"] + (inc.to_mpa - seen["from"]) * frac, 4)

        def low(ts: float, b: _Body) -> _Body | None:
            if not isinstance(b, HydrantPressure):
                return b
            if ts < t:
                seen["from"] = b.pressure_mpa
                return b
            return HydrantPressure(pressure_mpa=level(ts))
        self.override(dev, t - 3 * dev.interval_s, t + inc.lasts, low)
        if inc.ramp <= 0:
            self.inject(dev, t, HydrantPressure(pressure_mpa=inc.to_mpa))
        self.inject(dev, t + inc.lasts, HydrantPressure(pressure_mpa=NOMINAL_MPA))

    def gas(self, inc: s.GasLeak, dev: Device, t: float) -> None:
        def leak(_t: float, b: _Body) -> _Body | None:
            return GasReading(lel_pct=inc.lel_pct) if isinstance(b, GasReading) else b
        self.override(dev, t, t + inc.lasts, leak)
        for ts in _every(t, inc.lasts, inc.every):
            self.inject(dev, ts, GasReading(lel_pct=inc.lel_pct))
        self.inject(dev, t + inc.lasts, GasReading(lel_pct=0.5))

    def no_activity(self, inc: s.NoActivity, dev: Device, t: float, household: list[Device]) -> None:
        for d in household:
            if d.kind is DeviceKind.WATER_METER:
                self.override(d, t, math.inf, _frozen_meter(t, t + inc.lasts))
            elif d.kind is DeviceKind.DOOR_CONTACT:
                self.override(d, t, t + inc.lasts, _drop_types(DoorContact))
            else:
                self.override(d, t, t + inc.lasts, _mute)

    def ebike_in_lift(self, inc: s.EbikeInLift, dev: Device, t: float) -> None:
        for i in range(inc.frames):
            self.inject(dev, t + i * inc.spacing, ElevatorEbike(floor=inc.floor, detected=True, source=inc.source))

    def vehicle_in_zone(self, inc: s.VehicleInZone, dev: Device, t: float) -> None:
        self._track(dev, t, inc.lasts, inc.every, "vehicle", inc.zone)

    def intrusion(self, inc: s.Intrusion, dev: Device, t: float) -> None:
        self._track(dev, t, inc.lasts, inc.every, "person", inc.zone)

    def _track(self, dev: Device, t: float, lasts: float, every: float, lab: Literal["vehicle", "person"],
               zone: str) -> None:
        eid = f"{dev.id}-inc-{int(t)}"[:64]
        box = Box(x=200, y=180, w=140, h=90)
        for i, ts in enumerate(_every(t, lasts, every)):
            entered = (zone,) if i == 0 else ()
            self.inject(dev, ts, CameraObject(event_id=eid, phase="new" if i == 0 else "update", label=lab,
                                              score=0.9, box=box, zones=(zone,), entered_zones=entered,
                                              dwell_s=round(ts - t, 2)))
        self.inject(dev, t + lasts, CameraObject(event_id=eid, phase="end", label=lab, score=0.9,
                                                 dwell_s=round(lasts, 2)))

    def offline(self, inc: s.Offline, dev: Device, t: float) -> None:
        self.override(dev, t, t + inc.lasts, _drop)

    def camera_covered(self, inc: s.CameraCovered, dev: Device, t: float) -> None:
        self.override(dev, t, t + inc.lasts, _mute)
        self.inject(dev, t, Tamper(kind=inc.kind, active=True))
        self.inject(dev, t + inc.lasts, Tamper(kind=inc.kind, active=False))

    def crowd(self, inc: s.Crowd, dev: Device, t: float) -> None:
        self.override(dev, t, t + inc.lasts + 1.0, _drop_types(CameraCrowd))
        for ts in _every(t, inc.lasts, inc.every):
            self.inject(dev, ts, CameraCrowd(zone=inc.zone, count=inc.count))
        self.inject(dev, t + inc.lasts, CameraCrowd(zone=inc.zone, count=1))

    def skip_patrol(self, inc: s.SkipPatrol, dev: Device, t: float) -> None:
        midnight = self.local.midnight_before(t)
        slots = patrol_slots(dev, t, t + (inc.rounds + 1) * dev.interval_s, midnight)[:inc.rounds]
        if not slots:
            raise PlanError(f"no patrol slot of {dev.id} after the incident start")
        self.override(dev, slots[0] - 1.0, slots[-1] + PATROL_MAX_LATE_S + 1.0, _drop_types(PatrolScan))
        if inc.late_by is not None:
            for k, slot in enumerate(slots):
                self.inject(dev, slot + inc.late_by, PatrolScan(checkpoint=dev.id,
                                                                guard_ref=ref(self.site, "guard", "late", str(k))))

    def raw(self, inc: s.Raw, dev: Device, t: float, index: int) -> None:
        if inc.silence > 0:
            self.override(dev, t, t + inc.silence, _mute)
        for j, m in enumerate(inc.messages):
            try:
                # JSON mode, as on the wire: strict models take lists for tuples there.
                body = BODY.validate_json(json.dumps(m.body))
            except ValidationError as e:
                err = e.errors()[0]
                loc = ".".join(str(p) for p in err["loc"])
                raise PlanError(f"incidents[{index}].messages[{j}].body: {loc}: {err['msg']}") from None
            self.inject(dev, t + m.after, body)


def _frozen_meter(t0: float, t1: float) -> Rewrite:
    """A meter that shows no use in [t0, t1) and afterwards keeps counting from where it stood."""
    state = {"unused": 0.0, "frozen": None}

    def rewrite(ts: float, b: _Body) -> _Body | None:
        if not isinstance(b, WaterMeter):
            return b
        if ts < t1:
            if state["frozen"] is None:
                state["frozen"] = max(0.0, b.total_l - b.flow_l)
            state["unused"] = b.total_l - float(state["frozen"] or 0.0)
            return WaterMeter(total_l=round(float(state["frozen"] or 0.0), 1), flow_l=0.0)
        return WaterMeter(total_l=round(b.total_l - float(state["unused"] or 0.0), 1), flow_l=b.flow_l)
    return rewrite


def _with_extras(dev: Device, extras: tuple[str, ...] | list[str], devices: dict[str, Device],
                 where: str) -> list[Device]:
    """The incident's device followed by the extra devices it names; raises PlanError on an unknown one."""
    unknown = [d for d in extras if d not in devices]
    if unknown:
        raise PlanError(f"{where}: unknown device {unknown[0]!r}")
    return [dev, *(devices[d] for d in extras)]


def plan(scenario: s.Scenario, devices: dict[str, Device], local: LocalTime, site: str) -> Plan:
    """Expand every incident of a scenario; raises PlanError naming the incident that cannot happen."""
    out = Plan()
    ex = _Expander(site, local, out)
    start = scenario.start_ts
    handlers: dict[str, Callable[..., None]] = {
        "forced_open": ex.forced_open, "held_open": ex.held_open, "tailgate": ex.tailgate,
        "credential_burst": ex.credential_burst, "duress": ex.duress, "smoke": ex.smoke,
        "hydrant_drop": ex.hydrant_drop, "gas": ex.gas, "ebike_in_lift": ex.ebike_in_lift,
        "vehicle_in_zone": ex.vehicle_in_zone, "intrusion": ex.intrusion, "offline": ex.offline,
        "camera_covered": ex.camera_covered, "crowd": ex.crowd, "skip_patrol": ex.skip_patrol,
    }
    for i, inc in enumerate(scenario.incidents):
        where = f"incidents[{i}] ({inc.action})"
        dev = devices.get(inc.device)
        if dev is None:
            raise PlanError(f"{where}: unknown device {inc.device!r}")
        t = start + inc.at
        n_inj = len(out.injections)
        if isinstance(inc, s.NoActivity):
            household = _with_extras(dev, inc.devices, devices, where)
            ex.no_activity(inc, dev, t, household)
            out.devices.update(d.id for d in household)
        elif isinstance(inc, s.Raw):
            ex.raw(inc, dev, t, i)
        elif isinstance(inc, s.AgentCrash):
            served = _with_extras(dev, inc.devices, devices, where)
            for d in served:  # nothing the agent's devices say gets out after it dies (or stops)
                ex.override(d, t, math.inf, _drop)
            out.crashes.append(Crash(t, inc.agent, tuple(d.id for d in served), inc.clean))
            out.devices.update(d.id for d in served)
        else:
            handlers[inc.action](inc, dev, t)
        out.devices.add(dev.id)
        for inj in out.injections[n_inj:]:
            body_type = inj.body.type  # type: ignore[attr-defined]
            if body_type not in KIND_BODIES[devices[inj.device_id].kind]:
                raise PlanError(f"{where}: a {devices[inj.device_id].kind} device cannot send {body_type}")
    out.injections.sort(key=lambda j: j.ts)
    return out
