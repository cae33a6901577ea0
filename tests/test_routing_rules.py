"""Routing on its own: roster and shifts, fallbacks, deadlines, silences, maintenance windows, the sample site."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from alerts_helpers import ROUTING, RULES, community

from commhub.config import load_community
from hub.routing.router import Router
from hub.routing.spec import RoutingError, RoutingSpec, Window, load_routing
from hub.rules.spec import load_rules

TZ = ZoneInfo("Asia/Shanghai")
SAMPLE = Path(__file__).resolve().parents[1] / "configs" / "community" / "sample.yaml"


def _at(day: int, hour: int, minute: int = 0) -> float:
    return datetime(2026, 6, day, hour, minute, tzinfo=TZ).timestamp()  # 2026-06-01 is a Monday


def _labels(code: str, severity: str = "high", grid: str = "g1", **kw: str) -> dict[str, str | None]:
    return {"code": code, "rule": code, "layer": "people", "severity": severity, "site": "s1", "grid": grid,
            "building": kw.get("building", "b1"), "unit": kw.get("unit", "u1"), "device": kw.get("device")}


def test_grid_worker_on_duty_by_shift_including_overnight() -> None:
    r = Router(load_routing(ROUTING), community())
    day = r.decide(_labels("resident_report"), "report:1", 0, _at(3, 9))
    night = r.decide(_labels("resident_report"), "report:1", 0, _at(3, 2))
    assert [x["id"] for x in day.recipients] == ["gw-day-g1"]
    assert [x["id"] for x in night.recipients] == ["gw-night-g1"]
    assert "on duty" in day.reason and day.reason.startswith("route ")


def test_police_liaison_by_jurisdiction_and_household_by_unit() -> None:
    r = Router(load_routing(ROUTING), community())
    d = r.decide(_labels("duress", "critical"), "door:x", 0, _at(3, 9))
    assert d.recipients == [{"role": "police_liaison", "id": "police-1"}]  # not police-other (pcs-9)
    smoke = r.decide(_labels("smoke_alarm", "critical"), "device:s", 0, _at(3, 9))
    assert smoke.recipients == [{"role": "household", "id": "b1/u1"}]


def test_nobody_for_a_role_falls_back_to_the_control_room() -> None:
    r = Router(load_routing(ROUTING), community())
    d = r.decide(_labels("gas_leak", "critical"), "device:g", 2, _at(3, 9))  # tier 2: gas company, none configured
    assert d.recipients == [{"role": "control_room", "id": "ctrl-1"}] and "nobody" in d.reason


def test_deadlines_by_severity_and_working_day() -> None:
    r = Router(load_routing(ROUTING), community())
    assert r.deadline("critical", _at(3, 9)) == 120 and r.deadline("high", 0) == 900
    assert r.deadline("medium", 0) == 3600
    assert r.deadline("low", _at(3, 9)) == 86400  # Wednesday -> Thursday
    assert r.deadline("low", _at(5, 9)) == 3 * 86400  # Friday -> Monday
    fire_lane = r.decide(_labels("fire_lane_blocked", "medium"), "zone:x", 0, _at(3, 9))
    assert fire_lane.deadline_s == 1800  # property -> street office after 30 min


def test_silence_and_weekly_maintenance_match_labels_and_time() -> None:
    spec = load_routing(ROUTING).model_copy(update={"maintenance": (
        Window(id="sunday-tests", matchers={"code": "smoke_alarm", "building": ["b1", "b2"]},
               weekly=({"days": ["sun"], "start": "02:00", "end": "04:00"},)),)})
    r = Router(spec, community())
    lab = _labels("smoke_alarm", "critical")
    assert r.suppression(lab, _at(7, 3)) == "maintenance:sunday-tests"
    assert r.suppression(lab, _at(7, 5)) is None
    assert r.suppression({**lab, "building": "b3"}, _at(7, 3)) is None
    silence = Window(id="s1", matchers={"grid": "g1"}, starts_at=_at(3, 9), ends_at=_at(3, 10))
    assert r.suppression(lab, _at(3, 9, 30), [silence]) == "silence:s1"
    assert r.suppression(lab, _at(3, 10, 30), [silence]) is None


def test_inhibition_needs_equal_labels_and_not_itself() -> None:
    r = Router(load_routing(ROUTING), community())
    held = {**_labels("door_held_open", "low"), "rule": "door_held_open", "subject": "door:d"}
    smoke_b1 = {**_labels("smoke_alarm", "critical"), "subject": "device:s1"}
    smoke_b2 = {**smoke_b1, "building": "b2"}
    assert r.suppression(held, 0, [], [smoke_b1]) == "inhibit:0"
    assert r.suppression(held, 0, [], [smoke_b2]) is None


def test_bad_routing_file_names_file_and_path(tmp_path: Path) -> None:
    f = tmp_path / "routing.yaml"
    f.write_text("routes:\n  - {match: {colour: red}, tiers: [[control_room]]}\n")
    with pytest.raises(RoutingError) as e:
        load_routing(f)
    assert str(f) in str(e.value) and "routes.0.match" in str(e.value) and "colour" in str(e.value)
    f.write_text("routes:\n  - {tiers: [[janitor]]}\n")
    with pytest.raises(RoutingError, match="unknown role 'janitor'"):
        load_routing(f)


def test_sample_community_routes_every_code_to_someone_round_the_clock() -> None:
    c = load_community(SAMPLE)
    assert len(c.grids) >= 3 and sum(len(g.buildings) for g in c.grids) >= 10 and len(c.devices) >= 300
    r = Router(load_routing(ROUTING), c)
    pack = load_rules(RULES)
    for code in {x.code for x in pack.rules}:
        for hour in (3, 9, 21):
            for tier in range(3):
                d = r.decide(_labels(code, "high", grid="g2", building="b05"), "resident:x", tier, _at(3, hour))
                assert d.recipients, f"{code} tier {tier} at {hour}h reaches nobody"
    assert isinstance(load_routing(ROUTING), RoutingSpec)
