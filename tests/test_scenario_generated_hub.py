"""A fixed-seed generated set through a real hub (mosquitto, influxd, the hub worker and alerting chain).

One hub session runs a hit and a near miss of each short incident type, overlaid on one timeline
(simulators.scenario.compose), with some deliveries replayed late (some shuffled) and an agent that is killed
(the broker sends its will) next to one that stops cleanly. The full 20-variant figures come from the offline run
(docs/scenario-variants.md).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import influx_query
from scenario_helpers import run_parts_on_hub, sample_community

from commhub.services import Influxd, Mosquitto
from simulators.scenario.generate import variants

SEED = 7
# Short incidents at any hour (loitering needs the night, elderly and stranger last a day and a week: offline).
KINDS = ("forced_open", "tailgate", "credential_burst", "duress", "sos", "beam", "ebike_in_lift",
         "camera_covered", "intrusion", "gas", "hydrant_drop", "agent_crash")


@pytest.mark.services
def test_a_generated_set_on_a_real_hub(tmp_path: Path, mosquitto: Mosquitto, influxd: Influxd,
                                       shared_data: Path) -> None:
    community = sample_community()
    parts = variants(community, SEED, 1, KINDS, background_limit=2, late_share=0.5)
    assert any(p.delivery.late for p in parts) and any(p.incidents[0].action == "agent_crash" for p in parts)
    # Some replays come out of order (a forced door, a tailgate near miss, a gas leak among them).
    assert any(w.order == "shuffled" for p in parts for w in p.delivery.late)
    layout, _ = run_parts_on_hub("gen", parts, SEED, tmp_path, mosquitto, influxd, shared_data)
    assert sum(len(p.expect) for p in layout) >= len(KINDS)
    # The states stored in InfluxDB are in order: the killed agent's will (stamped with its session's
    # connect time, older than its own online) is its last state, and so is the clean stop's offline.
    for crash in (p.incidents[0] for p in parts if p.incidents[0].action == "agent_crash"):
        agent = crash.agent
        last = influx_query(influxd.url, "gen_scenarios",
                            f"SELECT last(status), clean FROM state WHERE device_id = '{agent}'")
        assert last and last[0]["values"][0][1] == "offline", (agent, last)
