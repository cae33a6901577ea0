"""Scenario files, incident expansion and scoring: validation errors, injected sequences, verdicts, report."""

from __future__ import annotations

import io
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from scenario_helpers import SCENARIOS, sample_community
from sim_helpers import ListPublisher

from simulators.clock import SimClock
from simulators.engine import Simulation
from simulators.models import ModelContext
from simulators.rhythm import LocalTime
from simulators.scenario.alerts import ObservedAlert, from_payload
from simulators.scenario.incidents import PlanError, plan
from simulators.scenario.matching import score
from simulators.scenario.report import Progress, table
from simulators.scenario.runner import future
from simulators.scenario.spec import Scenario, ScenarioError, load_scenario

BASE = {"name": "t", "start": "2026-03-02T10:00:00+08:00", "duration": "10m"}


def _write(tmp: Path, text: str) -> Path:
    p = tmp / "s.yaml"
    p.write_text(text)
    return p


def test_durations_and_defaults() -> None:
    sc = Scenario.model_validate({**BASE, "duration": "1h 30m", "incidents": [
        {"at": "5m", "action": "held_open", "device": "door-b01-u1", "open_for": 90}],
        "expect": [{"code": "door_held_open", "within": "2m"}]})
    assert sc.duration == 5400 and sc.incidents[0].at == 300 and sc.expect[0].within == 120
    assert sc.reference(sc.expect[0]) == 300


@pytest.mark.parametrize(("text", "needle"), [
    ("name: t\nstart: '2026-03-02T10:00:00'\nduration: 10m\n", "needs a UTC offset"),
    ("name: t\nstart: '2026-03-02T10:00:00+08:00'\nduration: 10m\nincidents: [{at: 1m, action: explode, "
     "device: d}]\n", "incidents[0]"),
    ("name: t\nstart: '2026-03-02T10:00:00+08:00'\nduration: 10m\nincidents: [{at: 20m, action: duress, "
     "device: d}]\n", "not before the end"),
    ("name: t\nstart: '2026-03-02T10:00:00+08:00'\nduration: 10m\nincidents: [{at: 1m, action: duress, "
     "device: d}]\nexpect: [{code: duress, within: 15m}]\n", "deadline is after the scenario ends"),
    ("name: t\nstart: '2026-03-02T10:00:00+08:00'\nduration: 10m\nspeeed: 3\n", "speeed"),
    ("name: t\nstart: '2026-03-02T10:00:00+08:00'\nduration: ten minutes\n", "duration"),
    ("- just a list\n", "expected a mapping"),
])
def test_bad_scenarios_name_file_path_and_reason(tmp_path: Path, text: str, needle: str) -> None:
    path = _write(tmp_path, text)
    with pytest.raises(ScenarioError) as err:
        load_scenario(path)
    assert str(path) in str(err.value) and needle in str(err.value)


@pytest.mark.parametrize(("incident", "needle"), [
    ({"at": 60, "action": "duress", "device": "nope"}, "unknown device 'nope'"),
    ({"at": 60, "action": "duress", "device": "smoke-b01-u1-101"}, "cannot send duress"),
    ({"at": 60, "action": "raw", "device": "panic-b01-u1", "messages": [{"body": {"type": "panic_pressed"}}]},
     "messages[0].body"),
])
def test_impossible_incidents_are_refused(incident: dict[str, object], needle: str) -> None:
    sc = Scenario.model_validate({**BASE, "incidents": [incident]})
    c = sample_community()
    with pytest.raises(PlanError, match=None) as err:
        plan(sc, c.device_index(), LocalTime(c.site.timezone), c.site.id)
    assert needle in str(err.value)


def _simulate(sc: Scenario) -> ListPublisher:
    c = sample_community()
    p = plan(sc, c.device_index(), LocalTime(c.site.timezone), c.site.id)
    devices = [d for d in c.devices if d.id in p.devices]
    pub = ListPublisher()
    Simulation(devices, pub, SimClock(sc.start_ts, 0), ModelContext(site=c.site.id, local=LocalTime(c.site.timezone)),
               sc.seed, end=sc.start_ts + sc.duration, injections=p.injections, overrides=p.overrides).run()
    return pub


def test_forced_open_has_no_permit_before_it_and_the_near_miss_has_one() -> None:
    for authorized in (False, True):
        sc = Scenario.model_validate({**BASE, "start": "2026-03-02T08:00:00+08:00", "incidents": [
            {"at": "5m", "action": "forced_open", "device": "door-b01-u1", "authorized": authorized}]})
        sent = [(ts.timestamp(), b.type) for d, b, ts in _simulate(sc).sent if d == "door-b01-u1"]  # type: ignore[attr-defined]
        t = sc.start_ts + 300
        assert (t, "door_opened") in sent
        permits = [x for x, kind in sent if kind in ("access_granted", "exit_request") and t - 5 <= x <= t]
        assert bool(permits) is authorized


def test_no_activity_freezes_the_meter_then_it_counts_on() -> None:
    sc = Scenario.model_validate({**BASE, "start": "2026-03-02T06:00:00+08:00", "duration": "20h", "incidents": [
        {"at": "1h", "action": "no_activity", "device": "dc-b01-u1-902", "devices": ["wmeter-b01-u1-902"],
         "lasts": "12h"}]})
    sent = _simulate(sc).sent
    t0, t1 = sc.start_ts + 3600, sc.start_ts + 13 * 3600
    meter = [(ts.timestamp(), b) for d, b, ts in sent if d == "wmeter-b01-u1-902"]
    totals = [b.total_l for _, b in meter]  # type: ignore[attr-defined]
    assert totals == sorted(totals)
    assert all(b.flow_l == 0 for t, b in meter if t0 <= t < t1)  # type: ignore[attr-defined]
    assert sum(b.flow_l for t, b in meter if t >= t1) > 20  # type: ignore[attr-defined]
    during = [t for d, b, ts in sent if d == "dc-b01-u1-902" and b.type == "door_contact"  # type: ignore[attr-defined]
              for t in [ts.timestamp()] if t0 <= t < t1]
    assert during == []
    assert any(b.type == "heartbeat" and t0 <= ts.timestamp() < t1  # type: ignore[attr-defined]
               for d, b, ts in sent if d == "dc-b01-u1-902")


def test_future_keeps_weekday_and_time_of_day_and_lands_within_a_week_of_now() -> None:
    sc = load_scenario(SCENARIOS / "forced_entry_night.yaml")
    now = time.time()
    moved = future(sc, now)
    assert now + 120 <= moved.start_ts < now + 120 + 7 * 86400
    assert (moved.start_ts - sc.start_ts) % (7 * 86400) == 0
    assert datetime.fromisoformat(moved.start).strftime("%a %H:%M%z") == "Mon 01:50+0800"


def _alert(aid: int, code: str, t: float, device: str | None = "door-b01-u1", building: str = "b01",
           severity: str = "high") -> ObservedAlert:
    return ObservedAlert(aid, code, severity, "sunrise", "g1", building, "u1", device, "opened", t, 0.0)


def test_scoring_on_time_late_missed_and_unexpected() -> None:
    sc = Scenario.model_validate({**BASE, "incidents": [
        {"at": "1m", "action": "duress", "device": "door-b01-u1"},
        {"at": "2m", "action": "held_open", "device": "door-b01-u2"}], "expect": [
        {"code": "duress", "device": "door-b01-u1", "within": "15s"},
        {"code": "door_held_open", "device": "door-b01-u2", "after": "2m", "within": "1m"},
        {"code": "gas_leak", "within": "1m"}], "allow": ["anti_passback"]})
    s = sc.start_ts
    alerts = [
        _alert(1, "duress", s + 10),  # before the incident: not the one
        _alert(2, "duress", s + 65), _alert(2, "duress", s + 66),  # the same alert twice
        _alert(3, "door_held_open", s + 250, "door-b01-u2"),  # 130 s after its reference: late
        _alert(4, "tailgating", s + 100, "gate-g1-main", building="x"),
        _alert(5, "anti_passback", s + 100),
        _alert(6, "device_offline", s + 100, "cam-b09-u1-lobby", building="b09"),
    ]
    in_scope = {"door-b01-u1", "door-b01-u2", "gate-g1-main"}
    result = score(sc, alerts, lambda a: a.opened_at, lambda a: a.device_id in in_scope)
    assert [(e.status, e.alert_id, e.late_s) for e in result.expected] == [
        ("on_time", 2, 5.0), ("late", 3, 130.0), ("missed", None, None)]
    flagged = {(u.alert_id, u.in_scope) for u in result.unexpected}
    assert flagged == {(1, True), (4, True), (5, False), (6, False)}
    assert not result.passed
    text = table("t", result)
    assert "FAILED" in text and "MISSED" in text and "LATE" in text and "tailgating" in text
    assert "device_offline x1" in text


def test_alert_notice_adapter_reads_the_wire_model_and_refuses_others() -> None:
    payload = (b'{"notice_id":1,"alert_id":7,"rule":"duress","code":"duress","subject":"door-b01-u1/main",'
               b'"severity":"critical","layer":"technical","site":"sunrise","grid":"g1","building":"b01",'
               b'"unit":"u1","device_id":"door-b01-u1","state":"open","transition":"opened","by":"system",'
               b'"count":1,"route":{"tier":0,"reason":"x"},"opened_at":"2026-03-02T02:00:00Z",'
               b'"ts":"2026-03-02T02:00:00Z"}')
    a = from_payload(payload, 1.0)
    assert (a.alert_id, a.code, a.device_id) == (7, "duress", "door-b01-u1")
    assert a.opened_at == datetime(2026, 3, 2, 2, tzinfo=UTC).timestamp()
    with pytest.raises(ValueError, match="not an AlertNotice"):
        from_payload(b'{"code": "duress"}', 1.0)


def test_progress_bar_prints_lines_off_a_terminal() -> None:
    out = io.StringIO()
    bar = Progress("demo", 100.0, out)
    for s in range(0, 101, 5):
        bar.update(float(s), s * 10, 0)
    bar.done()
    lines = out.getvalue().splitlines()
    assert 5 <= len(lines) <= 12 and "100%" in lines[-1] and "demo [" in lines[0]
