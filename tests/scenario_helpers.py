"""Helpers for the scenario tests: the sample community with an opted-in resident, and a rules-in-the-loop run."""

from __future__ import annotations

from pathlib import Path

from commhub.community import Community
from commhub.config import load_community
from simulators.scenario.offline import RulesLoop, run_offline

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


__all__ = ["RESIDENT", "SAMPLE", "SCENARIOS", "RulesLoop", "run_offline", "sample_community"]
