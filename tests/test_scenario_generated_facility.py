"""Generated variants of the facility incidents and the high-altitude throw (simulators/scenario/
generate_facility.py), scored offline through the real rule pack: replayed late, at the catalogue's limits,
and with ground truth that follows ../shared/events.md."""

from __future__ import annotations

from typing import Any

import pytest
from scenario_helpers import sample_community

from simulators.scenario import generate_facility as facility
from simulators.scenario.generate import variants
from simulators.scenario.offline import run_offline
from simulators.scenario.spec import Scenario

SEED = 3  # the suite's fixed seed (docs/scenario-variants.md has the 20-variant figures of seed 11)
COMMUNITY = sample_community()
CODES = {"throw": "high_altitude_throw", "water_leak": "water_leak", "fire_door": "fire_door_open",
         "manhole": "manhole_displaced", "charging": "charging_overheat", "electrical": "electrical_fire_risk"}


def _verdict(sc: Scenario) -> tuple[bool, str]:
    result, _ = run_offline(sc, COMMUNITY)
    report = [(e.code, e.status, e.late_s) for e in result.expected]
    unexpected = [(u.code, u.where) for u in result.unexpected if u.in_scope]
    return result.passed, f"{sc.name} ({sc.delivery.late}): expected {report}; unexpected {unexpected}"


@pytest.mark.parametrize("kind", sorted(facility.KINDS))
def test_facility_variant_replayed_late_scores_as_if_live(kind: str) -> None:
    # The incident device's messages held for minutes and replayed in order: what live delivery raises, no more
    # (a leak wet for over a minute whose drying came in the same replay is still a leak; a splash is not).
    hit, near = variants(COMMUNITY, SEED, 1, (kind,), background_limit=3, late_share=1.0)
    for sc in (hit, near):
        assert sc.delivery.late and sc.delivery.late[0].device in {i.device for i in sc.incidents}
        passed, why = _verdict(sc)
        assert passed, why


def test_facility_ground_truth_follows_the_catalogue() -> None:
    # Generation only (no scoring): 20 variants of each type, as the figures use.
    made = variants(COMMUNITY, 11, 20, tuple(facility.KINDS))
    assert len(made) == 2 * 20 * len(facility.KINDS)
    for sc in made:
        kind = sc.name.split("_hit_")[0].split("_near_")[0].removeprefix("gen_")
        if "_near_" in sc.name:
            assert not sc.expect, sc.name
            continue
        (e,) = sc.expect
        assert e.code == CODES[kind] and e.severity == facility.SEVERITY[e.code], sc.name
        assert e.recipients == ("property",) and e.paged is True and e.device == sc.incidents[-1].device
    # Spread: every facility device kind at several places, both sides of every value drawn.
    hits = [sc for sc in made if sc.expect]
    assert len({sc.incidents[-1].device for sc in hits}) >= 40
    assert len({sc.start[11:13] for sc in made}) >= 18 and len({sc.start[:10] for sc in made}) == 7
    assert sum(bool(sc.delivery.late) for sc in made) >= 40
    assert sum(sc.delivery.duplicate_share > 0 for sc in made) >= 40


def _raw(at: float, device: str, *msgs: tuple[float, dict[str, Any]]) -> dict[str, Any]:
    return {"at": at, "action": "raw", "device": device, "silence": max(a for a, _ in msgs) + 1.0,
            "messages": [{"after": a, "body": b} for a, b in msgs]}


def test_readings_exactly_at_the_catalogue_limits_raise_nothing_and_just_past_them_do() -> None:
    # "Above the set point", "over the limit", "> 15 degrees for > 2 s", "wet for >= 60 s", "open > 5 min":
    # exactly at a limit is the quiet side (a splash of 50 s, a door open 290 s, a tilt of 15.0 degrees);
    # a hair past it fires, each on its own device, within the scenario (one run, every kind at once).
    charge = {"type": "charger_reading", "port": 3}
    elec = {"type": "electrical_reading"}
    quiet = [
        _raw(60, "charger-g1", (0, {**charge, "temp_c": 70.0, "current_a": 16.0}),
             (60, {**charge, "temp_c": 70.0, "current_a": 16.0}),
             (120, {**charge, "temp_c": 30.0, "current_a": 1.0})),
        _raw(60, "elec-b01", (0, {**elec, "residual_ma": 300.0, "temp_c": 80.0}),
             (60, {**elec, "residual_ma": 300.0, "temp_c": 80.0}),
             (120, {**elec, "residual_ma": 10.0, "temp_c": 30.0})),
        _raw(60, "manhole-g1-1", (0, {"type": "manhole_tilt", "tilt_deg": 15.0}),
             (300, {"type": "manhole_tilt", "tilt_deg": 30.0}), (301.5, {"type": "manhole_tilt", "tilt_deg": 1.0})),
        _raw(60, "leak-b01-u1-202", (0, {"type": "water_leak", "wet": True}),
             (50, {"type": "water_leak", "wet": False})),
        _raw(60, "firedoor-b01-u1", (0, {"type": "fire_door_state", "open": False}),
             (5, {"type": "fire_door_state", "open": True}), (295, {"type": "fire_door_state", "open": False})),
    ]
    loud = [
        _raw(60, "charger-g2", (0, {**charge, "temp_c": 70.1, "current_a": 2.0}),
             (60, {**charge, "temp_c": 30.0, "current_a": 1.0})),
        _raw(60, "elec-b02", (0, {**elec, "residual_ma": 300.5, "temp_c": 30.0}),
             (60, {**elec, "residual_ma": 10.0, "temp_c": 30.0})),
        _raw(60, "manhole-g1-2", (0, {"type": "manhole_tilt", "tilt_deg": 15.1}),
             (2.5, {"type": "manhole_tilt", "tilt_deg": 1.0})),
        _raw(60, "leak-b02-u1-202", (0, {"type": "water_leak", "wet": True}),
             (61, {"type": "water_leak", "wet": False})),
        _raw(60, "firedoor-b02-u1", (0, {"type": "fire_door_state", "open": False}),
             (5, {"type": "fire_door_state", "open": True}), (310, {"type": "fire_door_state", "open": False})),
    ]
    codes = ("charging_overheat", "electrical_fire_risk", "manhole_displaced", "water_leak", "fire_door_open")
    expect = [{"code": code, "device": inc["device"], "within": 400, "recipients": ["property"], "paged": True}
              for code, inc in zip(codes, loud, strict=True)]
    sc = Scenario.model_validate({"name": "facility_limits", "start": "2026-03-04T14:00:00+08:00", "duration": 600,
                                  "background": {"devices": []}, "incidents": quiet + loud, "expect": expect})
    passed, why = _verdict(sc)
    assert passed, why
