"""The rule engine on its own, with a fake clock: every catalogue rule fires, and no near miss does."""

from __future__ import annotations

from typing import Any

import pytest
from alerts_helpers import RULES, SCENARIOS, T0, RulesDriver, env, msg, wait

from hub.rules.event import Event
from hub.rules.spec import RulesError, load_rules


@pytest.mark.parametrize("rule", sorted(SCENARIOS))
def test_catalogue_rule_fires(rule: str) -> None:
    subject, steps, _ = SCENARIOS[rule]
    h = RulesDriver()
    h.run(steps)
    fired = h.fired(rule, subject)
    assert fired, f"{rule} did not fire for {subject}; signals: {[(s.rule, s.subject) for s in h.signals]}"
    sig = fired[0]
    assert sig.place.site == "s1" and sig.place.grid in ("g1", "g2")
    assert sig.refs, "an alert must carry its triggering events"


@pytest.mark.parametrize("rule", sorted(SCENARIOS))
def test_catalogue_rule_ignores_near_miss(rule: str) -> None:
    subject, _, near = SCENARIOS[rule]
    h = RulesDriver()
    h.run(near)
    assert not h.fired(rule, subject), f"{rule} fired on a near miss"


def test_every_catalogue_code_has_a_rule_and_a_scenario() -> None:
    codes = {"sos_button", "elderly_inactivity", "frequent_stranger", "crowd_gathering", "patrol_missed",
             "resident_report", "perimeter_intrusion", "door_forced_open", "door_held_open",
             "invalid_credential_burst", "anti_passback", "tailgating", "duress", "device_offline", "device_tamper",
             "high_altitude_throw", "loitering", "smoke_alarm", "gas_leak", "water_leak", "hydrant_pressure_low",
             "fire_door_open", "fire_lane_blocked", "ebike_in_elevator", "electrical_fire_risk",
             "manhole_displaced", "charging_overheat"}
    pack = load_rules(RULES)
    assert {r.code for r in pack.rules} == codes
    scenario_codes = {r.code for r in pack.rules if r.id in SCENARIOS}
    assert scenario_codes == codes - {"resident_report"}  # reports come from the API, tested in test_alerts_*


def test_threshold_flapping_fires_once() -> None:
    h = RulesDriver(overrides={"hydrant_pressure_low": {"hold_s": 5}})
    for i in range(40):  # oscillates across 0.10 every 10 s, never back above the 0.12 clear level
        h.send("hydrant-b1", "hydrant_pressure", 10, pressure_mpa=0.09 if i % 2 == 0 else 0.11)
    assert len(h.fired("hydrant_pressure_low")) == 1
    assert not [s for s in h.signals if s.action == "clear"]
    h.send("hydrant-b1", "hydrant_pressure", 10, pressure_mpa=0.13)
    assert [s.action for s in h.signals if s.rule == "hydrant_pressure_low"] == ["fire", "clear"]


def test_threshold_dips_shorter_than_hold_never_fire() -> None:
    h = RulesDriver()
    for _ in range(30):  # 0.08 for 5 min, then 0.15 for a minute: each dip is shorter than the 10 min hold
        h.send("hydrant-b1", "hydrant_pressure", 60, pressure_mpa=0.08)
        h.send("hydrant-b1", "hydrant_pressure", 300, pressure_mpa=0.15)
    assert not h.fired("hydrant_pressure_low")


def test_held_open_raises_severity_and_clears_on_close() -> None:
    h = RulesDriver()
    h.run([msg("door-b1", "access_granted", door="d1", credential_ref="a11ce000a11ce000", method="card"),
           msg("door-b1", "door_opened", 1, door="d1"), wait(34)])
    assert [s.severity for s in h.fired("door_held_open")] == ["low"]
    h.wait(300)
    assert [s.severity for s in h.fired("door_held_open")] == ["low", "medium"]
    h.send("door-b1", "door_closed", 1, door="d1")
    assert h.signals[-1].action == "clear" and h.signals[-1].rule == "door_held_open"


def test_forced_door_clears_when_closed_and_grant_after_open_does_not_excuse_it() -> None:
    h = RulesDriver()
    h.send("door-b1", "door_opened", 0, door="d1")
    h.send("door-b1", "access_granted", 1, door="d1", credential_ref="a11ce000a11ce000", method="card")
    assert not h.fired("door_forced_open")  # judged once the opening settled (settle_s)
    h.wait(3)
    assert len(h.fired("door_forced_open")) == 1
    h.send("door-b1", "door_closed", 10, door="d1")
    assert [s.action for s in h.signals if s.rule == "door_forced_open"] == ["fire", "clear"]
    h.send("door-b1", "door_opened", 10, door="d1")  # the grant is now 19 s old
    h.wait(3)
    assert len(h.fired("door_forced_open")) == 2


def test_stale_will_does_not_mark_a_newer_session_offline() -> None:
    h = RulesDriver()
    h.send("gas-b1", "birth", session=5, agent="sim", version="1", interval_s=60.0)
    h.send("gas-b1", "state", 1, status="offline", session=4)
    assert not h.fired("device_offline", "device:gas-b1")
    h.send("gas-b1", "state", 1, status="offline", session=5)
    assert not h.fired("device_offline", "device:gas-b1")  # the will's grace (a broker restart sends wills)
    h.wait(21)
    assert len(h.fired("device_offline", "device:gas-b1")) == 1
    # Messages of the dead session (replayed from the agent's spool) are history; a new session revives it.
    h.send("gas-b1", "heartbeat", 1)
    h.send("gas-b1", "state", 1, status="online", session=5)
    assert h.signals[-1].action == "fire"
    h.send("gas-b1", "birth", 1, session=6, agent="sim", version="1", interval_s=60.0)
    assert h.signals[-1].action == "clear"


def test_never_reporting_device_goes_offline_from_seeded_timer() -> None:
    h = RulesDriver()
    h.wait(3 * 60 + 1)  # gas-b1 reports every 60 s and has never sent anything
    assert h.fired("device_offline", "device:gas-b1")
    assert not h.fired("device_offline", "device:smoke-b1-1")  # hourly reporter: 3 h not yet over


def test_correlation_signal_names_member_alerts() -> None:
    h = RulesDriver()
    h.run(SCENARIOS["forced_entry_incident"][1])
    inc = h.fired("forced_entry_incident", "door:door-b1")[0]
    assert inc.incident == "door:door-b1"
    assert ("door_forced_open", "door:door-b1/d1") in inc.members
    assert {r["device_id"] for r in inc.refs} == {"door-b1", "cam-b1"}


def test_rule_errors_name_file_rule_and_field(tmp_path: Any) -> None:
    bad = tmp_path / "rules.yaml"
    bad.write_text("rules:\n  - {id: x1, code: gas_leak, kind: threshold, layer: facility, severity: huge,\n"
                   "     when: [{type: [gas_reading]}], field: lel_pct, op: '>=', value: 20}\n")
    with pytest.raises(RulesError) as e:
        load_rules(bad)
    assert str(bad) in str(e.value) and "rules[0](x1).severity" in str(e.value)


def test_unregistered_device_lands_in_unassigned_grid() -> None:
    h = RulesDriver()
    e = env("ghost-1", "panic_press", T0)
    ev = Event.from_envelope(e, "panic_button", h.ctx.place("ghost-1"), None)
    sigs = h.engine.process([ev], h.store)
    assert [s.place.grid for s in sigs] == ["unassigned"]


def test_a_camera_flooding_a_door_keeps_the_correlation_state_small_and_the_incident_still_forms() -> None:
    # A hostile (or broken) lobby camera sends a "person, new" every half second for the whole window: the
    # evidence kept is one entry per device (and member), not one per event, yet a forced door still makes one
    # incident with that camera.
    h = RulesDriver()
    for i in range(400):
        h.send("cam-b1", "camera_object", 0.5, event_id=f"e{i}", phase="new", label="person", score=0.9)
    st = h.store.states[("forced_entry_incident", "door-b1")]
    assert len(st.data["seen"]) == 1 and st.data["seen"][0][0] == h.clock()  # the newest, not the first
    assert not h.fired("forced_entry_incident")
    h.send("door-b1", "door_opened", 1, door="d1")
    h.wait(4)  # door_forced_open settles 3 s
    inc = h.fired("forced_entry_incident", "door:door-b1")
    assert len(inc) == 1 and ("door_forced_open", "door:door-b1/d1") in inc[0].members
    assert len(h.store.states[("forced_entry_incident", "door-b1")].data["seen"]) == 2


def test_a_correlation_keeps_the_newest_evidence_when_an_older_event_arrives_late() -> None:
    h = RulesDriver()
    h.send("cam-b1", "camera_object", 0, event_id="e1", phase="new", label="person", score=0.9)
    newest = h.clock()
    h.send("cam-b1", "camera_object", 0, at=newest - 50, event_id="e0", phase="new", label="person", score=0.9)
    st = h.store.states[("forced_entry_incident", "door-b1")]
    assert [x[0] for x in st.data["seen"]] == [newest]  # a late, older event does not shorten the evidence
    h.send("door-b1", "door_opened", 55, door="d1")  # 55 s after the newest: still inside its 60 s window
    h.wait(4)  # door_forced_open settles 3 s (and fires at the opening's own time)
    assert h.fired("forced_entry_incident", "door:door-b1")
