"""Helpers for the scenario tests: the sample community with an opted-in resident, and a rules-in-the-loop run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from commhub.community import Community
from commhub.config import Config, load, load_community
from commhub.services import Influxd, Mosquitto
from simulators.recordings import load as load_recordings
from simulators.scenario.compose import compose
from simulators.scenario.offline import RulesLoop, run_offline
from simulators.scenario.runner import RunResult, ScenarioRunner
from simulators.scenario.spec import Background, Scenario

ROOT = Path(__file__).resolve().parents[1]
SCENARIOS = ROOT / "scenarios"
RULES = ROOT / "configs" / "rules.yaml"
SAMPLE = ROOT / "configs" / "community" / "sample.yaml"
RESIDENT = "e1de71e5e1de71e5"


def sample_community() -> Community:
    """The shipped sample community, with an opted-in resident at b01/u1/902 (added if the sample has none)."""
    base = load_community(SAMPLE)
    data = base.model_dump(mode="json", exclude_none=True)
    if not any("dc-b01-u1-902" in r.get("devices", ()) for r in data.get("residents", [])):
        data.setdefault("residents", []).append(
            {"ref": RESIDENT, "grid": "g1", "building": "b01", "unit": "u1",
             "devices": ["dc-b01-u1-902", "wmeter-b01-u1-902"]})
    return Community.model_validate(data)


def hub_run_config(tmp: Path, broker: Mosquitto, influx: Influxd, database: str) -> Config:
    """The config a scenario run on a real hub uses: the sample community, no fsync (speed, not durability)."""
    tmp.mkdir(parents=True, exist_ok=True)
    (tmp / "community.yaml").write_text(yaml.safe_dump(sample_community().model_dump(mode="json",
                                                                                      exclude_none=True)))
    cfg = tmp / "commhub.yaml"
    cfg.write_text(yaml.safe_dump({
        "community": "community.yaml",
        "mqtt": {"port": broker.port},
        "influx": {"url": influx.url, "transport": "v1", "database": database},
        "agent": {"state_dir": str(tmp / "agent"), "spool_fsync": False},
        "hub": {"spool": {"fsync": False}, "metrics": {"port": 0}},
    }))
    return load(cfg)


def run_parts_on_hub(name: str, parts: list[Scenario], seed: int, tmp: Path, broker: Mosquitto, influx: Influxd,
                     shared_data: Path) -> tuple[list[Any], RunResult]:
    """Generated parts overlaid on one timeline through a real hub; asserts every expectation on time, no false alert.

    Returns the layout (which expectations are each part's) and the run's result for further checks.
    """
    # No life of its own: each part brings its device and two around it.
    base = Scenario(name=name, start="2026-03-05T10:00:00+08:00", duration=3 * 3600.0, seed=seed,
                    background=Background(devices=()))
    sc, layout = compose(name, base, parts, sample_community(), margin_s=120.0, time_of_day=False, step_s=300.0,
                         trim=True)
    assert len(layout) == len(parts) and sc.delivery.late
    # 120x on the harness's event clock: deadlines are judged on simulated time; the waits are generous.
    result = ScenarioRunner(hub_run_config(tmp, broker, influx, name), sc, speed=120.0, grace_s=60.0,
                            recordings=load_recordings(shared_data), out=None, with_hub=tmp / "hub",
                            catch_up_s=240.0).run()
    misses = [f"{p.name}: {e.code} {e.where} {e.status} (late {e.late_s})" for p in layout for e in
              (result.score.expected[i] for i in p.expect) if e.status != "on_time"]
    unexpected = [(u.code, u.where) for u in result.score.unexpected if u.in_scope]
    assert result.meta["all_acknowledged"] and result.meta["published"] > 0
    assert not misses and not unexpected, f"{misses}; unexpected {unexpected}"
    return layout, result


__all__ = ["RESIDENT", "SAMPLE", "SCENARIOS", "RulesLoop", "hub_run_config", "run_offline", "run_parts_on_hub",
           "sample_community"]
