"""Issue 11 item 5: tiers that resolve to nobody cost no deadline; a fire reaches everyone needed at once;
an alert kept quiet by a silence is delivered to its current tier, with a fresh deadline, when the silence ends."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from alerts_helpers import ROUTING, T0, FakeClock, SinkDriver, community, make_config

from hub.routing.router import Router
from hub.routing.spec import load_routing


@pytest.fixture
def driver(tmp_path: Path) -> Any:
    d = SinkDriver(make_config(tmp_path, tick_s=60), FakeClock(T0)).start()
    yield d
    d.stop()


def _labels(code: str, rule: str, severity: str, unit: str | None) -> dict[str, Any]:
    return {"code": code, "rule": rule, "layer": "facility", "severity": severity, "site": "s1", "grid": "g1",
            "building": "b1", "unit": unit, "device": None}


def test_a_tier_that_resolves_to_nobody_is_skipped_at_once() -> None:
    r = Router(load_routing(ROUTING), community())
    building = r.decide(_labels("smoke_alarm", "smoke_alarm", "critical", None), "building:b1", 0, T0)
    assert building.tier == 1 and {x["role"] for x in building.recipients} == {"control_room"}
    assert "tier 0 resolves to nobody" in building.reason
    flat = r.decide(_labels("smoke_alarm", "smoke_alarm", "critical", "u1"), "device:smoke-b1-1", 0, T0)
    assert flat.tier == 0 and [x["role"] for x in flat.recipients] == ["household"]


def test_a_confirmed_fire_reaches_the_control_room_and_the_grid_worker_at_once(driver: SinkDriver) -> None:
    driver.send("smoke-b1-1", "smoke_state", alarm=True)
    driver.send("smoke-b1-2", "smoke_state", 20, alarm=True)
    (fire,) = driver.alerts(rule="smoke_confirmed")
    assert fire["tier"] == 0 and fire["escalate_at"] is None
    assert {x["role"] for x in fire["route"]["recipients"]} == {"control_room", "grid_worker"}


def test_an_alert_open_when_its_silence_ends_is_delivered_with_a_fresh_deadline(driver: SinkDriver) -> None:
    store = driver.sink.store
    store.add_silence({"code": "gas_leak"}, T0, T0 + 600, "maint-1", "calibrating detectors")
    driver.send("gas-b1", "gas_reading", 60, lel_pct=45.0)
    (a,) = driver.alerts(rule="gas_leak")
    assert a["route"]["suppressed"].startswith("silence:") and a["tier"] == 0
    driver.wait(600)  # the silence ended at T0 + 600
    (a,) = driver.alerts(rule="gas_leak")
    trail = store.transitions(a["id"])
    assert [t["transition"] for t in trail] == ["opened", "delivered"]
    assert a["tier"] == 0 and a["route"]["suppressed"] is None
    assert [x["role"] for x in a["route"]["recipients"]] == ["household"]
    delivered_at = trail[-1]["at"]
    assert T0 + 600 <= delivered_at <= T0 + 600 + 30 + 1
    assert a["escalate_at"] == pytest.approx(delivered_at + 120)  # critical: a whole 2 min for the household
    driver.wait(delivered_at + 121 - driver.clock())
    (a,) = driver.alerts(rule="gas_leak")
    assert a["state"] == "escalated" and a["tier"] == 1


def test_a_single_tier_alert_is_still_delivered_after_its_silence(driver: SinkDriver) -> None:
    store = driver.sink.store
    store.add_silence({"code": "smoke_alarm"}, T0, T0 + 300, "maint-1", "testing detectors")
    driver.send("smoke-b1-1", "smoke_state", 10, alarm=True)
    driver.send("smoke-b1-2", "smoke_state", 10, alarm=True)
    (a,) = driver.alerts(rule="smoke_confirmed")  # its route has one tier: nothing to escalate to
    assert a["route"]["suppressed"] is not None
    driver.wait(400)
    (a,) = driver.alerts(rule="smoke_confirmed")
    assert [t["transition"] for t in store.transitions(a["id"])] == ["opened", "delivered"]
    assert a["route"]["suppressed"] is None and a["escalate_at"] is None
    assert {x["role"] for x in a["route"]["recipients"]} == {"control_room", "grid_worker"}
