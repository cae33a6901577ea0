"""The generated facility incidents and the high-altitude throw through a real hub (mosquitto, influxd, the hub
worker and alerting chain): a hit and a near miss of each, overlaid on one timeline, several replayed late."""

from __future__ import annotations

from pathlib import Path

import pytest
from scenario_helpers import hub_run_config, sample_community

from commhub.services import Influxd, Mosquitto
from simulators.recordings import load as load_recordings
from simulators.scenario import generate_facility as facility
from simulators.scenario.compose import compose
from simulators.scenario.generate import variants
from simulators.scenario.runner import ScenarioRunner
from simulators.scenario.spec import Background, Scenario

SEED = 11  # its parts last at most 25 simulated minutes, and half replay the incident device late


@pytest.mark.services
def test_generated_facility_incidents_on_a_real_hub(tmp_path: Path, mosquitto: Mosquitto, influxd: Influxd,
                                                    shared_data: Path) -> None:
    community = sample_community()
    parts = variants(community, SEED, 1, tuple(facility.KINDS), background_limit=2, late_share=0.5)
    assert sum(bool(p.delivery.late) for p in parts) >= 3
    base = Scenario(name="facility", start="2026-03-05T10:00:00+08:00", duration=3 * 3600.0, seed=SEED,
                    background=Background(devices=()))
    sc, layout = compose("facility", base, parts, community, margin_s=120.0, time_of_day=False, step_s=300.0,
                         trim=True)
    assert len(layout) == len(parts) and sc.delivery.late
    # 120x on the harness's event clock: deadlines are judged on simulated time; the waits are generous.
    result = ScenarioRunner(hub_run_config(tmp_path, mosquitto, influxd, "fac"), sc, speed=120.0, grace_s=60.0,
                            recordings=load_recordings(shared_data), out=None, with_hub=tmp_path / "hub",
                            catch_up_s=240.0).run()
    misses = [f"{p.name}: {e.code} {e.where} {e.status} (late {e.late_s})" for p in layout for e in
              (result.score.expected[i] for i in p.expect) if e.status != "on_time"]
    unexpected = [(u.code, u.where) for u in result.score.unexpected if u.in_scope]
    assert result.meta["all_acknowledged"] and result.meta["published"] > 0
    assert not misses and not unexpected, f"{misses}; unexpected {unexpected}"
    assert sum(len(p.expect) for p in layout) == len(facility.KINDS)
