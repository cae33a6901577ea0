"""Every shipped scenario, run through the real rule pack on the simulated clock, scores as its ground truth says."""

from __future__ import annotations

from pathlib import Path

import pytest
from scenario_helpers import SCENARIOS, run_offline, sample_community

from simulators.recordings import load
from simulators.scenario.spec import load_scenario

FILES = sorted(SCENARIOS.glob("*.yaml"))


def test_the_library_covers_the_issue() -> None:
    names = {f.stem for f in FILES}
    assert {"forced_entry_night", "door_held_open", "tailgate_gate", "invalid_credential_burst", "duress",
            "fire_smoke_hydrant", "gas_leak", "elderly_no_activity", "ebike_in_lift", "fire_lane_blocked",
            "device_offline", "camera_covered", "crowd_gathering", "missed_patrol", "normal_day",
            "near_misses"} <= names


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
def test_scenario_scores_as_expected_against_the_rule_pack(path: Path, shared_data: Path) -> None:
    sc = load_scenario(path)
    result, _loop = run_offline(sc, sample_community(), load(shared_data))
    report = [(e.code, e.status, e.late_s) for e in result.expected]
    unexpected = [(u.code, u.where) for u in result.unexpected if u.in_scope]
    assert result.passed, f"expected: {report}; unexpected: {unexpected}"
    if not sc.expect:
        assert not unexpected


def test_broken_rules_show_up_as_misses_late_alerts_and_false_alarms(shared_data: Path) -> None:
    community = sample_community()
    recs = load(shared_data)
    # A disabled rule: the forced door is missed (the correlated incident needs it too).
    sc = load_scenario(SCENARIOS / "forced_entry_night.yaml")
    result, _ = run_offline(sc, community, recs, overrides={"door_forced_open": {"enabled": False}})
    assert not result.passed
    assert [e.status for e in result.expected] == ["missed", "missed"]
    # A threshold set too high: the gas leak is missed.
    sc = load_scenario(SCENARIOS / "gas_leak.yaml")
    result, _ = run_offline(sc, community, recs, overrides={"gas_leak": {"value": 50}})
    assert [e.status for e in result.expected] == ["missed"]
    # A hold time too long: the crowd alert comes, but after its deadline.
    sc = load_scenario(SCENARIOS / "crowd_gathering.yaml")
    result, _ = run_offline(sc, community, recs, overrides={"crowd_gathering": {"hold_s": 150}})
    (crowd,) = result.expected
    assert crowd.status == "late" and crowd.late_s is not None and crowd.late_s > 120
    # A threshold set too low: normal life raises gas alarms, reported as unexpected.
    sc = load_scenario(SCENARIOS / "near_misses.yaml")
    result, _ = run_offline(sc, community, recs, overrides={"gas_leak": {"value": 10, "clear": 5}})
    assert not result.passed
    flagged = {(u.code, u.where.get("device")) for u in result.unexpected if u.in_scope}
    assert ("gas_leak", "gas-b01-u1-202") in flagged
