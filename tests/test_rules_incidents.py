"""Issue 11: rules on incidents they were not written for (report timing, queues, coverage, agent death)."""

from __future__ import annotations

from typing import Any

import pytest
from alerts_helpers import T0, RulesDriver, community

from commhub.community import Community


def _community() -> Community:
    """The test community plus a second entrance (unit u2, with its own lobby camera) in building b1."""
    data = community().model_dump(mode="json", exclude_none=True)
    data["grids"][0]["buildings"][0]["units"] = ["u1", "u2"]
    data["devices"] += [{"id": "door-b1-u2", "kind": "door_controller", "grid": "g1", "building": "b1",
                         "unit": "u2", "interval_s": 300},
                        {"id": "cam-b1-u2", "kind": "camera", "grid": "g1", "building": "b1", "unit": "u2",
                         "interval_s": 10}]
    return Community.model_validate(data)


def _rig() -> RulesDriver:
    """The shared rules driver on this module's community."""
    return RulesDriver(_community())


@pytest.mark.parametrize("gap", [30.0, 59.0, 60.0, 61.5, 66.0, 74.0])
def test_hydrant_drop_between_readings_at_under_and_over_the_interval(gap: float) -> None:
    # The hydrant reports every 60 s; a fall 0.31 -> 0.21 MPa between two consecutive readings is a sudden
    # drop whether the second comes at, just under or just over the interval (jitter up to 25 %).
    r = _rig()
    r.send("hydrant-b1", "hydrant_pressure", pressure_mpa=0.31)
    r.send("hydrant-b1", "hydrant_pressure", gap, pressure_mpa=0.21)
    (sig,) = r.fired("hydrant_pressure_drop")
    assert sig.thresholds["observed"] == pytest.approx(0.10)


def test_hydrant_slow_easing_and_an_old_reading_are_not_a_drop() -> None:
    r = _rig()
    p = 0.31
    for _ in range(15):  # 0.01 MPa a minute, with the readings exactly on the interval
        r.send("hydrant-b1", "hydrant_pressure", 60, pressure_mpa=round(p, 3))
        p -= 0.01
    # A reading 3 intervals later (the sensor was silent) is not a 1-minute drop either.
    r.send("hydrant-b1", "hydrant_pressure", 180, pressure_mpa=0.1)
    assert not r.fired("hydrant_pressure_drop")


@pytest.mark.parametrize(("spacing", "fires"), [(4.9, True), (5.0, True), (5.2, False)])
def test_count_window_includes_its_bound(spacing: float, fires: bool) -> None:
    r = _rig()
    r.send("elev-b1", "elevator_ebike", floor=0, detected=True, source="camera")
    r.send("elev-b1", "elevator_ebike", spacing, floor=0, detected=True, source="camera")
    assert bool(r.fired("ebike_in_elevator")) is fires


def _grant(r: RulesDriver, dev: str, dt: float, who: str, **kw: Any) -> None:
    r.send(dev, "access_granted", dt, door="t1", credential_ref=who, method="face", **kw)


def test_a_morning_queue_at_the_gate_is_not_tailgating() -> None:
    r = _rig()
    a, b, c = "a" * 16, "b" * 16, "c" * 16
    for _ in range(3):  # grant, grant, passage, passage; then grant, passage, grant, passage
        _grant(r, "gate-g1", 2, a)
        _grant(r, "gate-g1", 0.8, b)
        r.send("gate-g1", "passage", 1.1, door="t1", count=1)
        r.send("gate-g1", "passage", 0.9, door="t1", count=1)
        _grant(r, "gate-g1", 3, c)
        r.send("gate-g1", "passage", 1, door="t1", count=1)
        r.wait(30)
    assert not r.fired("tailgating")
    _grant(r, "gate-g1", 1, a)
    r.send("gate-g1", "passage", 1, door="t1", count=1)
    r.send("gate-g1", "passage", 1, door="t1", count=1)  # a second person on one grant
    assert not r.fired("tailgating")  # until the passage settles (settle_s): its grant may be on its way
    r.wait(4)
    (sig,) = r.fired("tailgating")
    assert sig.thresholds["extra"] == 1


def test_a_face_read_twice_is_not_anti_passback_but_a_re_entry_is() -> None:
    r = _rig()
    who = "d" * 16
    _grant(r, "gate-g1", 0, who)
    _grant(r, "gate-g1", 0.7, who)  # the gate read the same face again while the person stood there
    r.wait(4)
    assert not r.fired("anti_passback")
    _grant(r, "gate-g1", 60, who)  # in again a minute later with no exit in between
    r.wait(4)  # judged once the entry settled (settle_s)
    assert len(r.fired("anti_passback")) == 1


def test_forced_entry_correlates_only_cameras_covering_that_door() -> None:
    r = _rig()
    r.send("door-b1", "door_opened", door="d1")
    # A resident seen at the other entrance of the same building 41 s later: not this door's intruder.
    r.send("cam-b1-u2", "camera_object", 41, event_id="e9", phase="new", label="person", score=0.9)
    assert r.fired("door_forced_open") and not r.fired("forced_entry_incident")
    r.send("cam-b1", "camera_object", 5, event_id="e1", phase="new", label="person", score=0.9)
    (inc,) = r.fired("forced_entry_incident")
    assert inc.subject == "door:door-b1" and inc.place.unit == "u1"


def test_agent_will_marks_all_its_devices_offline_with_one_alert() -> None:
    r = _rig()
    served = ["gas-b1", "smoke-b1-1", "panic-b1", "door-b1"]
    r.send("edge_1", "state", status="online", session=7)
    for dev in served:
        r.send(dev, "birth", session=7, agent="edge_1", version="1", interval_s=60.0)
    # A device of another agent session (an older one) is not this session's.
    r.send("gas-b2", "birth", session=3, agent="edge_1", version="1", interval_s=60.0)
    # SIGKILL: the broker publishes the will, stamped when the session connected (before its own online).
    r.send("edge_1", "state", 5, status="offline", session=7, at=T0 - 1)
    assert not r.fired("device_offline")  # not before the will's grace: the agent may be back by then
    r.wait(21)
    (alert,) = r.fired("device_offline")
    assert alert.subject == "device:agent/edge_1" and alert.thresholds["devices"] == len(served)
    assert alert.place.building == "b1" and alert.place.unit == "u1"
    r.wait(4 * 3600)  # no per-device alert later, not even for the hourly smoke detector
    mine = [s for s in r.fired("device_offline") if s.subject.removeprefix("device:") in (*served, "agent/edge_1")]
    assert mine == [alert]
    # A redelivered online state of the dead session does not revive anything.
    r.send("edge_1", "state", 1, status="online", session=7)
    assert not [s for s in r.signals if s.action == "clear"]
    # The agent comes back: its new session clears the alert, and devices keep time again.
    r.send("edge_1", "state", 1, status="online", session=8)
    assert [s.subject for s in r.signals if s.action == "clear"] == ["device:agent/edge_1"]
    r.send("gas-b1", "birth", session=8, agent="edge_1", version="1", interval_s=60.0)
    r.wait(181)
    assert r.fired("device_offline", "device:gas-b1")


def test_a_broker_restart_raises_nothing_when_the_agents_are_back_within_the_grace() -> None:
    r = _rig()
    served = ["gas-b1", "smoke-b1-1", "panic-b1"]
    r.send("edge_1", "state", status="online", session=4)
    for dev in served:
        r.send(dev, "birth", session=4, agent="edge_1", version="1", interval_s=60.0)
    # mosquitto stopping publishes the will of every connected client; the agent reconnects 12 s later
    r.send("edge_1", "state", 2, status="offline", session=4)
    r.wait(12)
    r.send("edge_1", "state", status="online", session=5)
    for dev in served:
        r.send(dev, "birth", session=5, agent="edge_1", version="1", interval_s=60.0)
    # ... and the broker publishes the old session's will once more when it reconnects: stale, nothing
    r.send("edge_1", "state", 1, status="offline", session=4)
    r.wait(120)  # past the grace, short of the devices' own absence timeout (3 intervals of 60 s)
    assert not [s for s in r.fired("device_offline") if s.subject.removeprefix("device:") in (*served, "agent/edge_1")]
    # A will of the new session with no return stands, after the grace.
    r.send("edge_1", "state", 1, status="offline", session=5)
    r.wait(21)
    (alert,) = [s for s in r.fired("device_offline") if s.subject == "device:agent/edge_1"]
    assert alert.thresholds["devices"] == len(served)


def test_a_clean_stop_raises_nothing() -> None:
    r = _rig()
    served = ["gas-b1", "smoke-b1-1", "panic-b1"]
    for dev in served:
        r.send(dev, "birth", session=2, agent="edge_1", version="1", interval_s=60.0)
    for dev in served:
        r.send(dev, "state", 1, status="offline", session=2, clean=True)
    r.send("edge_1", "state", status="offline", session=2, clean=True)
    r.wait(2 * 86400)
    assert not [s for s in r.fired("device_offline") if s.subject.removeprefix("device:") in (*served, "agent/edge_1")]


def test_repeated_device_seq_is_not_counted_twice() -> None:
    r = _rig()
    for seq in (101, 102):
        r.send("fgate-b1", "access_denied", 10, seq=seq, door="t1", credential_ref="e" * 16, method="face",
               reason="unknown_credential")
    for seq in (101, 102):  # the broker redelivers both (a reconnect before the ack)
        r.send("fgate-b1", "access_denied", 1, seq=seq, door="t1", credential_ref="e" * 16, method="face",
               reason="unknown_credential")
    assert not r.fired("invalid_credential_burst")
    r.send("fgate-b1", "access_denied", 1, seq=103, door="t1", credential_ref="e" * 16, method="face",
           reason="unknown_credential")
    assert r.fired("invalid_credential_burst")
