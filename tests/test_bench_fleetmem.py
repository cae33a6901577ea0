"""bench/fleetmem.py on a fleet smaller than the sample community: it used to fail with a KeyError."""

from __future__ import annotations

from pathlib import Path

from bench.fleetmem import fleet_community, measure
from commhub.config import load
from simulators.fleet import select

REPO = Path(__file__).resolve().parents[1]


def test_a_smaller_fleet_keeps_only_the_residents_devices_still_registered() -> None:
    community = load(REPO / "configs" / "commhub.yaml").community
    watched = {d for r in community.residents for d in r.devices}
    fleet = select(community.devices, 500)
    small = fleet_community(community, fleet)
    ids = {d.id for d in small.devices}
    assert ids == {d.id for d in fleet}
    kept = {d for r in small.residents for d in r.devices}
    assert kept <= ids and kept == watched & ids
    assert watched - ids, "the sample's residents watch devices a 500-device fleet leaves out (the old KeyError)"
    assert [r.ref for r in small.residents] == [r.ref for r in community.residents]


def test_fleetmem_runs_on_500_devices_and_every_device_reaches_the_hot_path() -> None:
    out = measure(500, 20)
    assert out["devices"] == 500 and out["hot_path_points"] == 500
    assert 0 < out["dedup_bytes_per_device"] < 1000

