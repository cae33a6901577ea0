"""Alerts end to end on a real mosquitto through the real hub worker: MQTT in, MQTT alert notices out."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from alerts_helpers import SCENARIOS, T0, FakeClock, Rig, SinkDriver, make_config, msg

pytestmark = pytest.mark.broker


@pytest.fixture
def rig(tmp_path: Path, mosquitto: Any, unique_site: str) -> Any:
    r = Rig(tmp_path, mosquitto, unique_site, FakeClock(T0)).start()
    yield r
    r.stop()


def _opened(rule: str, subject: str) -> Any:
    return lambda n: n.rule == rule and n.subject == subject and n.transition == "opened"


@pytest.mark.parametrize("rule", sorted(SCENARIOS))
def test_catalogue_event_fires_and_near_miss_does_not(rig: Rig, rule: str) -> None:
    subject, fire, near = SCENARIOS[rule]
    feed = rig.sink.live.subscribe()
    rig.run(near)
    time.sleep(0.05)
    live = [n for n in rig.sink.live.recent() if n.rule == rule and n.subject == subject]
    assert not live and rig.wait_notice(_opened(rule, subject), timeout=0.2) is None, f"{rule} fired on a near miss"
    rig.run(fire)
    n = rig.wait_notice(_opened(rule, subject))
    assert n is not None, f"{rule} did not reach the MQTT alert topic"
    assert n.site == rig.site and n.grid in ("g1", "g2") and n.state == "open"
    assert n.events and n.route.recipients and n.route.reason.startswith("route ")
    assert n.thresholds or rule in ("sos_button", "perimeter_beam", "duress", "smoke_alarm")
    got = []
    while (x := feed.get(timeout=0.5)) is not None:
        got.append(x)
    assert any(x.notice_id == n.notice_id for x in got), "the live feed missed the notice"


def test_flapping_pressure_yields_one_alert(tmp_path: Path, mosquitto: Any, unique_site: str) -> None:
    rig = Rig(tmp_path, mosquitto, unique_site, FakeClock(T0)).start()
    try:
        for i in range(30):  # hovering around 0.10 MPa for 15 min, never back to the 0.12 clear level
            rig.send("hydrant-b1", "hydrant_pressure", 30, pressure_mpa=0.095 if i % 2 else 0.105)
        rig.send("hydrant-b1", "hydrant_pressure", 30, pressure_mpa=0.09)
        rig.wait(700)
        time.sleep(0.2)
        opened = [n for n in rig.notices if n.rule == "hydrant_pressure_low" and n.transition == "opened"]
        rows = rig.sink.store.alerts(rule="hydrant_pressure_low")
    finally:
        rig.stop()
    assert len(opened) == 1 and len(rows) == 1


def test_two_workers_one_alert_per_incident(tmp_path: Path, mosquitto: Any, unique_site: str) -> None:
    rig = Rig(tmp_path, mosquitto, unique_site, FakeClock(T0), workers=2).start()
    try:
        devices = ["panic-b1", "panic-b2", "panic-b3", "smoke-b1-1", "smoke-b2-1", "smoke-b3-2"]
        for rnd in range(20):
            for d in devices:
                body = ("panic_press", {}) if d.startswith("panic") else ("smoke_state", {"alarm": True})
                from alerts_helpers import env
                rig.publish(env(d, body[0], T0 + rnd, **body[1]), wait=False)
        rig.wait_handled(len(devices) * 20)
        time.sleep(0.3)
        per_worker = [s.handled for s in rig.sinks]
        rows = [r for r in rig.sink.store.alerts() if r["rule"] in ("sos_button", "smoke_alarm")]
        opened = [n for n in rig.notices if n.rule in ("sos_button", "smoke_alarm") and n.transition == "opened"]
    finally:
        rig.stop()
    assert all(h > 0 for h in per_worker), f"the shared subscription did not spread the load: {per_worker}"
    assert len(rows) == len(devices) and all(r["count"] == 20 for r in rows)
    assert sorted(n.subject for n in opened) == sorted(f"device:{d}" for d in devices)


def test_escalation_on_time_then_stops_after_ack(rig: Rig) -> None:
    rig.send("panic-b1", "panic_press")
    opened = rig.wait_notice(_opened("sos_button", "device:panic-b1"))
    assert opened.route.recipients[0].role == "control_room"
    rig.wait(110)
    assert rig.wait_notice(lambda n: n.transition == "escalated" and n.rule == "sos_button", timeout=0.3) is None
    rig.wait(15)
    esc = rig.wait_notice(lambda n: n.transition == "escalated" and n.rule == "sos_button")
    assert esc is not None and esc.route.tier == 1 and esc.route.recipients[0].role == "grid_worker"
    rig.sink.store.acknowledge(esc.alert_id, "gw-night-g1", "on my way")
    assert rig.wait_notice(lambda n: n.transition == "acknowledged" and n.by == "gw-night-g1") is not None
    rig.wait(3600)
    time.sleep(0.2)
    assert len([n for n in rig.notices if n.transition == "escalated" and n.rule == "sos_button"]) == 1


def test_restart_mid_sequence_neither_loses_nor_duplicates(rig: Rig) -> None:
    rig.run([msg("door-b1", "access_granted", door="d1", credential_ref="a11ce000a11ce000", method="card"),
             msg("door-b1", "door_opened", 1, door="d1")])
    rig.wait(10)
    rig.stop_workers()
    rig.clock.advance(25)  # the door stays open while the hub is down
    rig.start_workers()
    rig.wait(1)
    n = rig.wait_notice(_opened("door_held_open", "door:door-b1/d1"))
    assert n is not None
    rig.stop_workers()
    rig.start_workers()
    rig.wait(5)
    time.sleep(0.2)
    assert len([x for x in rig.notices if x.rule == "door_held_open" and x.transition == "opened"]) == 1
    assert len(rig.sink.store.alerts(rule="door_held_open")) == 1


def test_restart_with_inactivity_timer_running(rig: Rig) -> None:
    rig.send("dc-b1", "door_contact", open=True)
    rig.wait(80000)
    rig.stop_workers()
    rig.start_workers()
    rig.wait(6500)
    n = rig.wait_notice(_opened("elderly_no_door", "resident:ab12cd34ef56ab78"))
    assert n is not None and n.route.recipients[0].role == "emergency_contact"
    rig.stop_workers()
    rig.start_workers()
    rig.wait(100)
    time.sleep(0.2)
    assert len([x for x in rig.notices if x.rule == "elderly_no_door" and x.transition == "opened"]) == 1


def test_notices_committed_while_mqtt_was_down_are_sent_after_restart(tmp_path: Path, mosquitto: Any,
                                                                      unique_site: str) -> None:
    clock = FakeClock(T0)
    rig = Rig(tmp_path, mosquitto, unique_site, clock)
    # A hub that commits alerts but dies before publishing them (no MQTT notifier at all).
    down = SinkDriver(rig.config(0), clock).start()
    down.send("panic-b1", "panic_press")
    down.send("gas-b2", "gas_reading", 1, lel_pct=40.0)
    down.stop()
    rig.start()
    try:
        got = {n.rule for n in [rig.wait_notice(lambda n: n.rule == "sos_button"),
                                rig.wait_notice(lambda n: n.rule == "gas_leak")] if n is not None}
        assert got == {"sos_button", "gas_leak"}
        time.sleep(0.3)
        assert rig.sink.store.pending("mqtt") == 0
    finally:
        rig.stop()


def test_make_config_defaults_resolve(tmp_path: Path) -> None:
    cfg = make_config(tmp_path)
    assert cfg.alerts.enabled and cfg.alerts.rules_file.is_file()


def test_actions_from_another_process_reach_mqtt_through_the_outbox(rig: Rig) -> None:
    from hub.alerting import open_store
    rig.send("gas-b3", "gas_reading", lel_pct=35.0)
    opened = rig.wait_notice(_opened("gas_leak", "device:gas-b3"))
    api = open_store(rig.config(0), clock=rig.clock)  # as the API process would
    api.start()
    api.acknowledge(opened.alert_id, "prop-1", "valve closed")
    ticket = api.open_report("noise", "g2", by="ab12cd34ef56ab78", building="b3", note="drilling at night")
    try:
        ack = rig.wait_notice(lambda n: n.alert_id == opened.alert_id and n.transition == "acknowledged")
        rep = rig.wait_notice(lambda n: n.notice_id == ticket.notice_id)
    finally:
        api.engine.dispose()
    assert ack is not None and ack.by == "prop-1" and ack.note == "valve closed"
    assert rep is not None and rep.code == "resident_report" and rep.severity == "low"
