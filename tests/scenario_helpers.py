"""Helpers for the scenario tests: the sample community with an opted-in resident, and a rules-in-the-loop run."""

from __future__ import annotations

from pathlib import Path

import yaml

from commhub.community import Community
from commhub.config import Config, load, load_community
from commhub.services import Influxd, Mosquitto
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


__all__ = ["RESIDENT", "SAMPLE", "SCENARIOS", "RulesLoop", "hub_run_config", "run_offline", "sample_community"]
