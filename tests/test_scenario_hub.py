"""Scenarios against the real hub worker and alerting chain on real mosquitto and influxd, on simulated time.

The shipped library runs through the rule pack offline in test_scenario_library (every scenario, normal day
included). Here it runs through the real hub, several scenarios per hub session (simulators.scenario.compose):
the short incidents overlaid in one 25-minute session, elderly and missed patrol in another at their own
times of day, the near misses in a third. Timers never overtake a message still in flight (the harness's event
clock), so the verdicts do not depend on how fast the machine is; a wait for the hub is bounded generously.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from scenario_helpers import SCENARIOS, hub_run_config, sample_community

from commhub.config import Config
from commhub.services import Influxd, Mosquitto
from simulators.recordings import load as load_recordings
from simulators.scenario.compose import Part, compose
from simulators.scenario.runner import RunResult, ScenarioRunner
from simulators.scenario.spec import Background, Scenario, load_scenario

LONG = ("normal_day", "elderly_no_activity", "near_misses", "missed_patrol")


def _config(tmp: Path, broker: Mosquitto, influx: Influxd) -> Config:
    return hub_run_config(tmp, broker, influx, "scn")


def _run(sc: Scenario, tmp: Path, broker: Mosquitto, influx: Influxd, shared_data: Path, speed: float,
         rules: Path | None = None, grace_s: float = 60.0) -> RunResult:
    cfg = _config(tmp, broker, influx)
    return ScenarioRunner(cfg, sc, speed=speed, grace_s=grace_s, recordings=load_recordings(shared_data), out=None,
                          with_hub=tmp / "hub", rules_file=rules, catch_up_s=240.0).run()


def _library() -> dict[str, Scenario]:
    return {p.stem: load_scenario(p) for p in sorted(SCENARIOS.glob("*.yaml"))}


def _verdicts(result: RunResult, layout: list[Part]) -> list[str]:
    out = []
    for part in layout:
        for i in part.expect:
            e = result.score.expected[i]
            if e.status != "on_time":
                out.append(f"{part.name}: {e.code} {e.where} {e.status} (late {e.late_s})")
    return out


def _check(result: RunResult, layout: list[Part]) -> None:
    unexpected = [(u.code, u.where) for u in result.score.unexpected if u.in_scope]
    assert result.meta["all_acknowledged"] and result.meta["published"] > 0
    assert not _verdicts(result, layout) and not unexpected, f"{_verdicts(result, layout)}; unexpected {unexpected}"
    assert result.meta["alert_clock"] == "simulated"


@pytest.mark.services
def test_shipped_incidents_on_one_hub(tmp_path: Path, mosquitto: Mosquitto, influxd: Influxd,
                                      shared_data: Path) -> None:
    lib = _library()
    base = Scenario(name="incidents", start="2026-03-04T02:00:00+08:00", duration=3600.0, seed=5)
    sc, layout = compose("incidents", base, [s for n, s in lib.items() if n not in LONG], sample_community(),
                         margin_s=120.0, time_of_day=False, step_s=300.0, trim=True)
    assert len(layout) == len(lib) - len(LONG) and sc.duration <= 40 * 60
    _check(_run(sc, tmp_path, mosquitto, influxd, shared_data, speed=120.0), layout)


@pytest.mark.services
def test_long_scenarios_at_their_times_of_day(tmp_path: Path, mosquitto: Mosquitto, influxd: Influxd,
                                              shared_data: Path) -> None:
    lib = _library()
    # Lighter backgrounds than the scenarios' own (the hub's cost is its message count; the offline library
    # test runs them in full): ten quiet devices of the resident's building, and the patrol's own devices.
    quiet = tuple(k for k in ("door_controller", "face_gate", "gas", "smoke", "hydrant", "water_meter",
                              "door_contact", "elevator", "fire_door", "electrical", "panic_button"))
    elderly = lib["elderly_no_activity"].model_copy(update={"background": Background(
        buildings=("b01",), kinds=quiet, limit=10)})
    patrol = lib["missed_patrol"].model_copy(update={"background": Background(grids=("g1",), kinds=("patrol",))})
    # Each at a speed its deadline tolerates: the patrol's alert has 15 simulated minutes to spare, which at
    # 2,880x is 0.3 s of wall time (a loaded machine missed it); at 240x it is 3.75 s. The elderly alert has
    # hours to spare, so its 13-hour day runs fast.
    for part, speed in ((elderly, 2880.0), (patrol, 240.0)):
        sc, layout = compose(part.name, part, [], sample_community())
        assert [p.offset for p in layout] == [0.0]
        _check(_run(sc, tmp_path / part.name, mosquitto, influxd, shared_data, speed=speed), layout)


@pytest.mark.services
def test_near_misses_raise_nothing_on_the_hub(tmp_path: Path, mosquitto: Mosquitto, influxd: Influxd,
                                              shared_data: Path) -> None:
    sc = _library()["near_misses"]
    # Only the near misses' own devices (their normal life goes on): the offline library test has the full
    # background, and the hub's cost here is its message count.
    sc = sc.model_copy(update={"background": sc.background.model_copy(update={"limit": 0})})
    result = _run(sc, tmp_path, mosquitto, influxd, shared_data, speed=480.0, grace_s=5.0)
    assert result.meta["all_acknowledged"] and result.meta["published"] > 0
    assert result.score.passed and not result.score.unexpected  # the isolated hub knows only these devices


@pytest.mark.services
def test_runner_reports_misses_against_a_broken_rule_pack(tmp_path: Path, mosquitto: Mosquitto, influxd: Influxd,
                                                          shared_data: Path) -> None:
    rules = yaml.safe_load((Path(__file__).resolve().parents[1] / "configs" / "rules.yaml").read_text())
    for r in rules["rules"]:
        if r["id"] == "duress":
            r["enabled"] = False  # the duress code goes unnoticed
        if r["id"] == "door_held_open":
            r["hold_s"] = 600  # the held door is noticed far too late
    broken = tmp_path / "broken-rules.yaml"
    broken.write_text(yaml.safe_dump(rules))
    lib = _library()
    base = Scenario(name="broken", start="2026-03-04T10:00:00+08:00", duration=3600.0, seed=3)
    sc, layout = compose("broken", base, [lib["duress"], lib["door_held_open"]], sample_community(),
                         margin_s=60.0, time_of_day=False, step_s=300.0, trim=True)
    result = _run(sc, tmp_path, mosquitto, influxd, shared_data, speed=120.0, rules=broken, grace_s=10.0)
    assert not result.score.passed
    duress, held = (result.score.expected[p.expect[0]] for p in layout)
    assert duress.status == "missed"
    assert held.status in ("late", "missed")
