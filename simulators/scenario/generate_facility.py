"""Generated variants of the facility incidents and the high-altitude throw, written from the event catalogue.

Each generator takes a `generate.Gen` (device, time, values, expectations) and a near-miss flag, adds raw
messages on the chosen device and returns how long the incident lasts. Values are drawn from the catalogue's
valid range on both sides of its threshold (../shared/events.md), never from the rule pack; repeated reports
are spaced at, under and over the device's interval with jitter (`Gen.interval`). The device's own normal
life is muted for the incident (heartbeats go on) and resumes after it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # annotations only: generate.py imports this module to register its generators (a cycle)
    from commhub.community import Device
    from simulators.scenario.generate import Gen

Body = dict[str, Any]
Messages = list[tuple[float, Body]]

# The first recipients of each code, as ../shared/events.md lists them (the expectation checks the route).
FIRST_TIER = {
    "high_altitude_throw": "property", "water_leak": "property", "fire_door_open": "property",
    "manhole_displaced": "property", "charging_overheat": "property", "electrical_fire_risk": "property",
}
# The catalogue's severity of each code, checked on the alert.
SEVERITY = {"high_altitude_throw": "high", "water_leak": "medium", "fire_door_open": "medium",
            "manhole_displaced": "high", "charging_overheat": "high", "electrical_fire_risk": "high"}
# The catalogue's thresholds, as the catalogue states them (a near miss stays on the quiet side).
LEAK_WET_S = 60.0  # wet for >= 60 s
FIRE_DOOR_OPEN_S = 300.0  # open > 5 min
TILT_DEG, TILT_S = 15.0, 2.0  # tilt > 15 degrees for > 2 s
CHARGER_C, CHARGER_A = 70.0, 16.0  # port temperature > 70 C, or current over the port's limit (16 A)
# The monitor's set points (the catalogue says "above the device set point"; these are the devices' defaults:
# 300 mA residual current is the usual alarm setting of an electrical-fire monitor, 80 C on a terminal).
RESIDUAL_MA, PANEL_C = 300.0, 80.0


def _expect(g: Gen, code: str, within: float, after: float = 0.0) -> None:
    """Ground truth at the incident device, with the catalogue's severity."""
    assert g.device is not None
    g.expects(code, within, after=after, severity=SEVERITY[code], device=g.device.id)


def _heard(g: Gen) -> None:
    """A heartbeat early in the scenario: the hub has heard the device before, as it has in a community that
    has run for one of its intervals (an hourly leak sensor may not report in the minutes before the incident;
    a replay that is the first message ever heard from a device reads as a wrong clock, not as late)."""
    saved = g.at
    g.at = g.u(1.0, 60.0)
    g.raw([(0.0, {"type": "heartbeat", "uptime_s": g.u(1e4, 1e6, 1)})])
    g.at = saved


def _hold(g: Gen, dev: Device, lasts: float, state: Callable[[], Body], first: float = 0.0) -> Messages:
    """A state reported at `first` and repeated every (jittered) interval while it lasts."""
    out: Messages = []
    t = first
    while t < first + lasts:
        out.append((round(t, 2), state()))
        t += g.interval(dev)
    return out


def _spells(g: Gen, dev: Device, spells: list[float], on: Body, off: Body, start: float,
            gap: tuple[float, float]) -> tuple[Messages, float]:
    """A state held `on` for each spell (repeated every interval), `off` after it, a drawn gap between; the end."""
    msgs: Messages = []
    t = start
    for lasts in spells:
        msgs += _hold(g, dev, lasts, lambda: dict(on), first=t)
        t += lasts
        msgs.append((round(t, 2), dict(off)))
        t += g.u(*gap)
    return msgs, t


def _throw(g: Gen, near: bool) -> float:
    # Catalogue: an upward camera sees a falling trajectory (snapshot and estimated floor kept). The community
    # model has no upward camera of its own: the unit's lobby camera stands in (the camera agent detects on
    # any feed). Near miss: something moves in the view (a bird, a bag carried past) and nothing falls.
    g.pick("camera", where=lambda d: d.unit is not None)
    eid = f"fall-{g.name}"[-60:]
    if near:
        lasts = g.u(2.0, 30.0)
        g.raw([(0.0, {"type": "camera_motion", "active": True, "zones": ["facade"], "area_pct": g.u(0.5, 8.0)}),
               (0.5, {"type": "camera_object", "event_id": eid, "phase": "new", "label": "object",
                      "score": g.u(0.3, 0.9), "zones": ["facade"]}),
               (lasts, {"type": "camera_object", "event_id": eid, "phase": "end", "label": "object",
                        "score": 0.5, "dwell_s": lasts}),
               (lasts + 0.5, {"type": "camera_motion", "active": False})], silence=lasts + 1.0)
        return lasts + 10.0
    floor = g.rng.randint(2, 33)
    msgs: Messages = [(0.0, {"type": "falling_object", "event_id": eid, "est_floor": floor,
                             "snapshot": f"snap-{eid}"[-60:]})]
    if g.rng.random() < 0.4:  # the tracker refines its floor estimate on the same trajectory
        msgs.append((g.u(0.2, 1.5), {"type": "falling_object", "event_id": eid,
                                     "est_floor": max(0, floor + g.rng.randint(-2, 2))}))
    g.raw(msgs, silence=2.0)
    _expect(g, "high_altitude_throw", 15.0)
    return 20.0


def _water_leak(g: Gen, near: bool) -> float:
    # Catalogue: wet for >= 60 s. Near misses: a splash that dries within the minute, or a dripping tap that
    # wets the probe again and again (each time under a minute, together well over). The sensor reports its
    # state on change and repeats it every interval while wet.
    dev = g.pick("water_leak")
    _heard(g)
    if near:
        spells = [g.u(2.0, LEAK_WET_S - 8.0) for _ in range(1 if g.rng.random() < 0.5 else g.rng.randint(2, 5))]
    else:
        spells = [g.u(LEAK_WET_S + 5.0, 2400.0)]
    msgs, t = _spells(g, dev, spells, {"type": "water_leak", "wet": True}, {"type": "water_leak", "wet": False},
                      0.0, (2.0, 20.0))
    g.raw(msgs, silence=t + 1.0)
    if not near:
        _expect(g, "water_leak", LEAK_WET_S + 30.0)
    return t + 10.0


def _fire_door(g: Gen, near: bool) -> float:
    # Catalogue: a normally-closed fire door open for more than 5 min. Near misses: open under 5 min, or a
    # busy door opened again and again (each time under 5 min, together well over). The sensor repeats its
    # state every interval. A door closed first: normal life may have left it open as the incident began.
    dev = g.pick("fire_door")
    _heard(g)
    lead = g.u(2.0, 60.0)
    msgs: Messages = [(0.0, {"type": "fire_door_state", "open": False})]
    if near:
        spells = [g.u(5.0, FIRE_DOOR_OPEN_S - 5.0)] if g.rng.random() < 0.5 else \
            [g.u(30.0, FIRE_DOOR_OPEN_S - 20.0) for _ in range(g.rng.randint(2, 4))]
    else:
        spells = [g.u(FIRE_DOOR_OPEN_S + 5.0, 2400.0)]
    opened, t = _spells(g, dev, spells, {"type": "fire_door_state", "open": True},
                        {"type": "fire_door_state", "open": False}, lead, (3.0, 30.0))
    msgs += opened
    g.raw(msgs, silence=t + 1.0)
    if not near:
        _expect(g, "fire_door_open", FIRE_DOOR_OPEN_S + 60.0, after=lead)
    return t + 10.0


def _manhole(g: Gen, near: bool) -> float:
    # Catalogue: tilt > 15 degrees for > 2 s. Near misses: a wheel rocks the cover past 15 degrees for under
    # 2 s, or it settles askew below 15 degrees for minutes. The sensor reports on change and every interval.
    dev = g.pick("manhole")
    _heard(g)
    rock = near and g.rng.random() < 0.5
    if rock:
        tilt, lasts = g.u(TILT_DEG + 1.0, 60.0, 1), g.u(0.2, TILT_S - 0.3)
    elif near:
        tilt, lasts = g.u(3.0, TILT_DEG - 0.5, 1), g.u(60.0, 1800.0)
    else:
        tilt, lasts = g.u(TILT_DEG + 0.5, 90.0, 1), g.u(TILT_S + 0.5, 1800.0)
    msgs = _hold(g, dev, lasts, lambda: {"type": "manhole_tilt", "tilt_deg": round(tilt + g.u(-0.3, 0.3), 2)})
    msgs.append((round(lasts, 2), {"type": "manhole_tilt", "tilt_deg": g.u(0.2, 2.0)}))
    g.raw(msgs, silence=lasts + 1.0)
    if not near:
        _expect(g, "manhole_displaced", TILT_S + 20.0)
    return lasts + 10.0


def _charging(g: Gen, near: bool) -> float:
    # Catalogue: a charging port above 70 C, or its current over the limit. Near misses: a warm port or a
    # heavy charge that stays at or under both (up to exactly the limit).
    dev = g.pick("charger")
    port = g.rng.randrange(10)
    hot = g.rng.random() < 0.5
    if near:
        temp = CHARGER_C if g.rng.random() < 0.15 else g.u(45.0, CHARGER_C - 0.5, 1)
        amps = CHARGER_A if g.rng.random() < 0.15 else g.u(6.0, CHARGER_A - 0.2, 1)
    elif hot:
        temp, amps = g.u(CHARGER_C + 0.5, 130.0, 1), g.u(2.0, 12.0, 1)
    else:
        temp, amps = g.u(35.0, 60.0, 1), g.u(CHARGER_A + 0.5, 40.0, 1)
    lasts = g.u(dev.interval_s, 900.0)

    def reading() -> Body:
        return {"type": "charger_reading", "port": port, "temp_c": temp, "current_a": amps}
    msgs = _hold(g, dev, lasts, reading)
    msgs.append((round(lasts, 2), {"type": "charger_reading", "port": port, "temp_c": g.u(25.0, 40.0),
                                   "current_a": g.u(0.0, 3.0)}))
    g.raw(msgs, silence=lasts + 1.0)
    if not near:
        _expect(g, "charging_overheat", 30.0)
    return lasts + 10.0


def _electrical(g: Gen, near: bool) -> float:
    # Catalogue: residual current or temperature above the device's set point. Near misses: under it, or
    # exactly at it (at is not above).
    dev = g.pick("electrical")
    residual_case = g.rng.random() < 0.5
    if near:
        at_point = g.rng.random() < 0.15
        residual = RESIDUAL_MA if at_point and residual_case else g.u(5.0, RESIDUAL_MA - 5.0, 1)
        temp = PANEL_C if at_point and not residual_case else g.u(25.0, PANEL_C - 1.0, 1)
    elif residual_case:
        residual, temp = g.u(RESIDUAL_MA + 5.0, 3000.0, 1), g.u(25.0, 40.0, 1)
    else:
        residual, temp = g.u(5.0, 60.0, 1), g.u(PANEL_C + 1.0, 160.0, 1)
    lasts = g.u(dev.interval_s, 900.0)
    msgs = _hold(g, dev, lasts, lambda: {"type": "electrical_reading", "residual_ma": residual, "temp_c": temp})
    msgs.append((round(lasts, 2), {"type": "electrical_reading", "residual_ma": g.u(5.0, 30.0, 1),
                                   "temp_c": g.u(25.0, 35.0)}))
    g.raw(msgs, silence=lasts + 1.0)
    if not near:
        _expect(g, "electrical_fire_risk", 30.0)
    return lasts + 10.0


KINDS: dict[str, Callable[[Gen, bool], float]] = {
    "throw": _throw, "water_leak": _water_leak, "fire_door": _fire_door, "manhole": _manhole,
    "charging": _charging, "electrical": _electrical,
}
