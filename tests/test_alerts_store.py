"""The alert store behind the sink, on SQLite with a fake clock: identity, lifecycle, escalation, restart."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alerts_helpers import (
    CONTACT,
    RESIDENT,
    SCENARIOS,
    T0,
    FakeClock,
    SinkDriver,
    accepted,
    check_held_runs,
    check_state_keys,
    community,
    env,
    make_config,
    msg,
    race,
    wait,
)
from sqlalchemy import text

from hub.alerts.db import VERSION_TABLE, make_engine, migrate
from hub.alerts.models import Base
from hub.alerts.store import AckRefused, AlertError
from hub.rules import reorder
from hub.rules.event import State


@pytest.fixture
def driver(tmp_path: Path) -> Any:
    d = SinkDriver(make_config(tmp_path, tick_s=60), FakeClock(T0)).start()
    yield d
    d.stop()


def test_migrations_match_the_models(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path}/m.db")
    migrate(engine)
    with engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE})
        diff = [d for d in compare_metadata(ctx, Base.metadata) if not (isinstance(d, tuple) and d[0] == "add_index")]
    assert diff == []


def test_held_messages_come_back_merged_in_device_time_order(driver: SinkDriver,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(reorder, "RUN_PART", 2)
    check_held_runs(driver.sink.store)


def test_rule_state_under_odd_keys_is_kept_as_itself(driver: SinkDriver) -> None:
    check_state_keys(driver.sink.store)


def test_a_hold_row_an_older_hub_left_with_its_messages_inside_is_let_go_after_the_upgrade(
        driver: SinkDriver) -> None:
    # Before rule_held, a hold row kept its batch's messages in its own JSON. After the upgrade the first timer
    # pass moves them into the table, merges them with the rest and feeds them: a credential's two entries at
    # one gate (a pass-back), one in the old row, one held by the new hub.
    cfg, sink = driver.cfg, driver.sink
    grant = {"door": "d1", "credential_ref": "00000000000000aa", "method": "card", "direction": "in"}
    sink.handle([accepted(cfg, env("gate-g1", "heartbeat", T0, uptime_s=1.0))])
    driver.clock.t = T0 + 3600
    old = accepted(cfg, env("gate-g1", "access_granted", T0 + 100, seq=201, **grant)).envelope
    with sink.store.tx() as tx:
        tx.save(reorder.HOLD, f"{T0 + 3599:.3f}:older:0", State(
            {"held": [["gate-g1", T0 + 100, 201, "turnstile", False, old.body.model_dump_json()]]}, T0 + 3604))
    sink.handle([accepted(cfg, env("gate-g1", "access_granted", T0 + 300, seq=203, **grant))])
    driver.wait(60)
    assert [(a["device_id"], a["count"]) for a in driver.alerts(rule="anti_passback")] == [("gate-g1", 1)]
    with sink.db.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM rule_held")).scalar_one() == 0
        assert conn.execute(text("SELECT count(*) FROM rule_state WHERE rule = '_hold'")).scalar_one() == 0


def test_a_held_run_with_a_line_that_does_not_read_and_a_part_gone_lets_the_rest_go(
        driver: SinkDriver, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    # A credential's four entries at one gate, replayed out of order and held as one run of four parts (one
    # line each). Then one part's text is mangled and another part is deleted (a hand edit, a bad restore).
    # The let-go logs what it cannot read, feeds the two entries left (a pass-back), and empties the hold.
    monkeypatch.setattr(reorder, "RUN_PART", 1)
    cfg, sink = driver.cfg, driver.sink
    grant = {"door": "d1", "credential_ref": "00000000000000aa", "method": "card", "direction": "in"}
    sink.handle([accepted(cfg, env("gate-g1", "heartbeat", T0, uptime_s=1.0))])
    driver.clock.t = T0 + 3600
    sink.handle([accepted(cfg, env("gate-g1", "access_granted", T0 + 100 * k, seq=200 + 2 * k, **grant))
                 for k in (4, 2, 1, 3)])
    with sink.db.begin() as conn:
        assert conn.execute(text("SELECT count(*) FROM rule_held")).scalar_one() == 4
        conn.execute(text("UPDATE rule_held SET lines = 'not\ta held line' WHERE part = 1"))
        conn.execute(text("DELETE FROM rule_held WHERE part = 2"))
    with caplog.at_level(logging.ERROR, logger="hub.rules.reorder"):
        driver.wait(60)
    assert "does not read" in caplog.text
    assert [(a["device_id"], a["count"]) for a in driver.alerts(rule="anti_passback")] == [("gate-g1", 1)]
    with sink.db.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM rule_held")).scalar_one() == 0
        assert conn.execute(text("SELECT count(*) FROM rule_state WHERE rule = '_hold'")).scalar_one() == 0


def test_retrigger_updates_the_open_alert(driver: SinkDriver) -> None:
    for _ in range(3):
        driver.send("panic-b1", "panic_press", 5)
    rows = driver.alerts(rule="sos_button")
    assert len(rows) == 1 and rows[0]["count"] == 3 and len(rows[0]["events"]) == 3
    assert rows[0]["route"]["recipients"] == [{"role": "control_room", "id": "ctrl-1"}]
    assert rows[0]["grid"] == "g1" and rows[0]["building"] == "b1" and rows[0]["layer"] == "people"


def test_lifecycle_records_who_when_and_note(driver: SinkDriver) -> None:
    driver.send("gas-b1", "gas_reading", lel_pct=30.0)
    a = driver.alerts(rule="gas_leak")[0]
    store = driver.sink.store
    driver.clock.advance(10)
    store.acknowledge(a["id"], "prop-1", "on my way")
    with pytest.raises(AlertError):
        store.act(a["id"], "acknowledged", "prop-1")  # twice
    store.act(a["id"], "resolved", "prop-1", "valve closed")
    store.act(a["id"], "closed", "ctrl-1", "checked")
    trail = [(t["transition"], t["by"], t["note"]) for t in store.transitions(a["id"])]
    assert trail == [("opened", "system", ""), ("acknowledged", "prop-1", "on my way"),
                     ("resolved", "prop-1", "valve closed"), ("closed", "ctrl-1", "checked")]
    assert store.transitions(a["id"])[1]["at"] == T0 + 10
    driver.send("gas-b1", "gas_reading", 1, lel_pct=5.0)
    driver.send("gas-b1", "gas_reading", 1, lel_pct=30.0)  # a new leak after closing: a new alert
    assert [r["state"] for r in driver.alerts(rule="gas_leak")] == ["closed", "open"]


def test_forced_door_cannot_be_acknowledged_while_open(driver: SinkDriver) -> None:
    driver.send("door-b1", "door_opened", door="d1")
    driver.wait(4)  # the opening settles (settle_s)
    a = driver.alerts(rule="door_forced_open")[0]
    with pytest.raises(AckRefused):
        driver.sink.store.acknowledge(a["id"], "prop-1")
    driver.send("door-b1", "door_closed", 20, door="d1")
    n = driver.sink.store.acknowledge(a["id"], "prop-1", "door shut, checked cameras")
    assert n.state == "acknowledged" and n.transition == "acknowledged"
    assert driver.alerts(rule="door_forced_open")[0]["state"] == "acknowledged"  # not auto-resolved


def test_escalation_on_time_and_stops_after_ack(driver: SinkDriver) -> None:
    driver.send("panic-b1", "panic_press")
    a = driver.alerts(rule="sos_button")[0]
    driver.wait(119)
    assert driver.alerts(rule="sos_button")[0]["state"] == "open"
    driver.wait(2)
    a = driver.alerts(rule="sos_button")[0]
    assert a["state"] == "escalated" and a["tier"] == 1
    # 07:02 local: the day grid worker is not on duty yet (08-20), the night one is.
    assert a["route"]["recipients"] == [{"role": "grid_worker", "id": "gw-night-g1"}]
    driver.sink.store.acknowledge(a["id"], "gw-night-g1", "calling the resident")
    driver.wait(3600)
    a = driver.alerts(rule="sos_button")[0]
    assert a["state"] == "acknowledged" and a["tier"] == 1
    assert [t["transition"] for t in driver.sink.store.transitions(a["id"])] == ["opened", "escalated",
                                                                                   "acknowledged"]


def test_escalation_walks_every_tier_then_stops(driver: SinkDriver) -> None:
    driver.send("panic-b2", "panic_press")
    driver.wait(3 * 120 + 5)
    a = driver.alerts(rule="sos_button")[0]
    assert a["tier"] == 2 and a["route"]["recipients"] == [{"role": "police_liaison", "id": "police-1"}]
    assert a["escalate_at"] is None
    assert [t["transition"] for t in driver.sink.store.transitions(a["id"])] == ["opened", "escalated", "escalated"]


def test_low_severity_deadline_is_one_working_day(driver: SinkDriver) -> None:
    driver.run(SCENARIOS["anti_passback"][1])
    a = driver.alerts(rule="anti_passback")[0]
    assert a["severity"] == "low" and a["escalate_at"] == pytest.approx(driver.clock() + 86400)  # Wed -> Thu


def test_smoke_alarm_inhibits_door_held_open_in_its_building(driver: SinkDriver) -> None:
    driver.send("smoke-b1-1", "smoke_state", alarm=True)
    for door in ("door-b1", "door-b2"):
        driver.run([msg(door, "access_granted", door="d1", credential_ref="a11ce000a11ce000", method="card"),
                    msg(door, "door_opened", 1, door="d1")])
    driver.wait(34)  # the hold (30 s), then its settle (3 s)
    held = {r["building"]: r for r in driver.alerts(rule="door_held_open")}
    assert held["b1"]["route"]["suppressed"] == "inhibit:0"
    assert held["b2"]["route"]["suppressed"] is None


def test_silence_quiets_routing_but_keeps_the_alert(driver: SinkDriver) -> None:
    store = driver.sink.store
    store.add_silence({"code": "water_leak", "building": "b1"}, T0, T0 + 4 * 3600, "maint-1", "replacing pipes")
    driver.run(SCENARIOS["water_leak"][1])
    a = driver.alerts(rule="water_leak")[0]
    assert a["route"]["suppressed"].startswith("silence:")
    assert store.pending("webhook:x") == 0
    driver.wait(3 * 3600)
    assert driver.alerts(rule="water_leak")[0]["state"] == "open"  # silenced: not escalated
    driver.wait(2 * 3600)
    a = driver.alerts(rule="water_leak")[0]
    # The silence is over: first delivered to the tier nobody was told about, then escalated at its deadline.
    assert [t["transition"] for t in store.transitions(a["id"])] == ["opened", "delivered", "escalated"]


def test_correlated_incident_links_members(driver: SinkDriver) -> None:
    driver.run(SCENARIOS["forced_entry_incident"][1])
    inc = driver.alerts(rule="forced_entry_incident")
    member = driver.alerts(rule="door_forced_open")[0]
    assert len(inc) == 1 and inc[0]["incident"] == "door:door-b1" and member["incident"] == "door:door-b1"
    assert "merged" in [t["transition"] for t in driver.sink.store.transitions(member["id"])]
    assert {e["device_id"] for e in inc[0]["events"]} == {"door-b1", "cam-b1"}


def test_resident_report_becomes_a_ticket_for_grid_staff(driver: SinkDriver) -> None:
    n = driver.sink.store.open_report("fire", "g2", by=RESIDENT, building="b3", note="smell of burning")
    assert n.code == "resident_report" and n.severity == "critical" and n.by == RESIDENT
    assert n.route.recipients[0].role == "grid_worker" and n.route.recipients[0].id == "gw-g2"


def test_elderly_inactivity_goes_to_the_emergency_contact(driver: SinkDriver) -> None:
    driver.run(SCENARIOS["elderly_no_door"][1])
    a = driver.alerts(rule="elderly_no_door")[0]
    assert a["route"]["recipients"] == [{"role": "emergency_contact", "id": CONTACT}]
    assert a["subject"] == f"resident:{RESIDENT}"


def test_rule_state_survives_restart_mid_sequence(tmp_path: Path) -> None:
    cfg = make_config(tmp_path, tick_s=60)
    clock = FakeClock(T0)
    d1 = SinkDriver(cfg, clock).start()
    d1.run([msg("door-b1", "access_granted", door="d1", credential_ref="a11ce000a11ce000", method="card"),
            msg("door-b1", "door_opened", 1, door="d1"), wait(10)])
    d1.stop()
    d2 = SinkDriver(cfg, clock).start()  # a new hub process on the same database
    d2.wait(25)
    d2.stop()
    d3 = SinkDriver(cfg, clock).start()
    d3.wait(10)
    rows = d3.alerts(rule="door_held_open")
    d3.stop()
    assert len(rows) == 1 and rows[0]["count"] == 1


def test_inactivity_timer_survives_restart(tmp_path: Path) -> None:
    cfg = make_config(tmp_path, tick_s=60)
    clock = FakeClock(T0)
    d1 = SinkDriver(cfg, clock).start()
    d1.send("dc-b1", "door_contact", open=True)
    d1.wait(80000)
    d1.stop()
    clock.advance(7000)  # the hub is down when the deadline passes
    d2 = SinkDriver(cfg, clock).start()
    d2.wait(1)
    # Not at once: the broker's backlog from the downtime gets restart_grace_s to show a door opening.
    assert d2.alerts(rule="elderly_no_door") == []
    d2.stop()
    d3 = SinkDriver(cfg, clock).start()
    d3.wait(200)
    rows = d3.alerts(rule="elderly_no_door")
    d3.stop()
    assert len(rows) == 1 and rows[0]["state"] == "open"


def test_two_sinks_racing_on_one_database_make_one_alert(tmp_path: Path) -> None:
    cfg = make_config(tmp_path, tick_s=60)
    clock = FakeClock(T0)
    drivers = [SinkDriver(cfg, clock).start(), SinkDriver(cfg, clock).start()]
    errors = race(drivers, 30, [("panic-b3", "panic_press", {}), ("smoke-b3-1", "smoke_state", {"alarm": True})])
    rows = drivers[0].alerts(rule="sos_button") + drivers[0].alerts(rule="smoke_alarm")
    for d in drivers:
        d.stop()
    assert not errors
    assert len(rows) == 2 and all(r["count"] == 60 for r in rows)


def test_outbox_keeps_notices_until_delivered(tmp_path: Path) -> None:
    cfg = make_config(tmp_path, tick_s=60)
    d = SinkDriver(cfg, FakeClock(T0)).start()
    d.send("panic-b1", "panic_press")
    store = d.sink.store
    assert store.pending("mqtt") == 1  # no MQTT notifier in this sink: it stays for the next start
    rows = store.claim("mqtt")
    assert len(rows) == 1 and store.claim("mqtt") == []  # leased
    store.delivered([rows[0][0]])
    assert store.pending("mqtt") == 0
    d.stop()


def test_community_rejects_bad_staff() -> None:
    base = community().model_dump(mode="json")
    base["staff"] = [{"id": "x", "role": "grid_worker", "grids": ["nope"]}]
    with pytest.raises(ValueError, match="unknown grid 'nope'"):
        type(community()).model_validate(base)
    base["staff"] = [{"id": "x", "role": "police_liaison"}]
    with pytest.raises(ValueError, match="needs a jurisdiction"):
        type(community()).model_validate(base)


def test_condition_that_clears_and_returns_reopens_the_same_alert(driver: SinkDriver) -> None:
    for i in range(10):  # a gas sensor flapping far across both thresholds
        driver.send("gas-b2", "gas_reading", 5, lel_pct=30.0 if i % 2 == 0 else 2.0)
    rows = driver.alerts(rule="gas_leak")
    assert len(rows) == 1 and rows[0]["count"] == 5
    trail = [t["transition"] for t in driver.sink.store.transitions(rows[0]["id"])]
    assert trail == ["opened"] + ["resolved", "reopened"] * 4 + ["resolved"]


def test_a_device_clock_far_ahead_does_not_cut_the_hold_time(driver: SinkDriver) -> None:
    from alerts_helpers import accepted, env
    wrong = env("leak-b2", "water_leak", driver.clock() + 7200, wet=True)  # a device two hours ahead
    driver.sink.handle([accepted(driver.cfg, wrong)])
    driver.wait(30)
    assert driver.alerts(rule="water_leak") == []  # the 60 s hold is counted on the hub's clock
    driver.wait(31)
    assert len(driver.alerts(rule="water_leak")) == 1


def test_a_device_first_seen_two_hours_behind_is_judged_on_its_own_time(driver: SinkDriver) -> None:
    # A message cannot arrive before it was sent: a first sight far behind is a backlog (or a clock set back,
    # which relearn_s tells after two minutes; tests/test_rules_backlog_clock.py). Wet two hours ago and no dry
    # since: raised once the replay's grace is over, not a 60 s hold on the hub's clock later.
    from alerts_helpers import accepted, env
    received = driver.clock()
    driver.sink.handle([accepted(driver.cfg, env("leak-b2", "water_leak", received - 7200, wet=True))])
    driver.wait(30)
    (leak,) = driver.alerts(rule="water_leak")
    assert leak["opened_at"] < received + 60
