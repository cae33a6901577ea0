"""The generated facility incidents and the high-altitude throw through a real hub (mosquitto, influxd, the hub
worker and alerting chain): a hit and a near miss of each, overlaid on one timeline, several replayed late."""

from __future__ import annotations

from pathlib import Path

import pytest
from scenario_helpers import run_parts_on_hub, sample_community

from commhub.services import Influxd, Mosquitto
from simulators.scenario import generate_facility as facility
from simulators.scenario.generate import variants

SEED = 11  # its parts last at most 25 simulated minutes, and half replay the incident device late


@pytest.mark.services
def test_generated_facility_incidents_on_a_real_hub(tmp_path: Path, mosquitto: Mosquitto, influxd: Influxd,
                                                    shared_data: Path) -> None:
    community = sample_community()
    parts = variants(community, SEED, 1, tuple(facility.KINDS), background_limit=2, late_share=0.5)
    assert sum(bool(p.delivery.late) for p in parts) >= 3
    layout, _ = run_parts_on_hub("fac", parts, SEED, tmp_path, mosquitto, influxd, shared_data)
    assert sum(len(p.expect) for p in layout) == len(facility.KINDS)
