"""Scenarios against the real hub worker and alerting chain on real mosquitto and influxd, on simulated time."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from scenario_helpers import SCENARIOS, sample_community

from commhub.config import Config, load
from commhub.services import Influxd, Mosquitto
from simulators.recordings import load as load_recordings
from simulators.scenario.runner import ScenarioRunner
from simulators.scenario.spec import Scenario, load_scenario

# Scenarios whose own speed leaves room are run faster here, to keep the suite short.
FAST = 2.0


def _config(tmp: Path, broker: Mosquitto, influx: Influxd) -> Config:
    tmp.mkdir(parents=True, exist_ok=True)
    (tmp / "community.yaml").write_text(yaml.safe_dump(sample_community().model_dump(mode="json",
                                                                                      exclude_none=True)))
    cfg = tmp / "commhub.yaml"
    cfg.write_text(yaml.safe_dump({
        "community": "community.yaml",
        "mqtt": {"port": broker.port},
        "influx": {"url": influx.url, "transport": "v1", "database": "scn"},
        "agent": {"state_dir": str(tmp / "agent"), "spool_fsync": False},
        "hub": {"spool": {"fsync": False}, "metrics": {"port": 0}},
    }))
    return load(cfg)


def _run(sc: Scenario, tmp: Path, broker: Mosquitto, influx: Influxd, shared_data: Path,
         rules: Path | None = None) -> ScenarioRunner:
    cfg = _config(tmp, broker, influx)
    speed = sc.speed * FAST if sc.speed < 1000 else sc.speed
    return ScenarioRunner(cfg, sc, speed=speed, grace_s=15.0, recordings=load_recordings(shared_data), out=None,
                          with_hub=tmp / "hub", rules_file=rules)


@pytest.mark.services
@pytest.mark.parametrize("path", sorted(SCENARIOS.glob("*.yaml")), ids=lambda p: p.stem)
def test_shipped_scenario_passes_against_the_hub(path: Path, tmp_path: Path, mosquitto: Mosquitto,
                                                 influxd: Influxd, shared_data: Path) -> None:
    sc = load_scenario(path)
    result = _run(sc, tmp_path, mosquitto, influxd, shared_data).run()
    report = [(e.code, e.status, e.late_s) for e in result.score.expected]
    unexpected = [(u.code, u.where) for u in result.score.unexpected if u.in_scope]
    assert result.meta["all_acknowledged"] and result.meta["published"] > 0
    assert result.score.passed, f"expected: {report}; unexpected: {unexpected}"
    if sc.expect:
        assert result.meta["alert_clock"] == "simulated"
    else:
        assert not result.score.unexpected  # the isolated hub knows only the simulated devices


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
    sc = load_scenario(SCENARIOS / "duress.yaml")
    result = _run(sc, tmp_path / "a", mosquitto, influxd, shared_data, rules=broken).run()
    assert not result.score.passed
    assert [e.status for e in result.score.expected] == ["missed"]
    sc = load_scenario(SCENARIOS / "door_held_open.yaml")
    result = _run(sc, tmp_path / "b", mosquitto, influxd, shared_data, rules=broken).run()
    (held,) = result.score.expected
    assert held.status in ("late", "missed") and not result.score.passed
