"""docker-compose.yml and its config: hub workers share a subscription group but never a client id or spool."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from commhub.config import load

REPO = Path(__file__).resolve().parents[1]


def test_compose_config_loads(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COMMHUB_INFLUX_TOKEN", "t")
    cfg = load(REPO / "deploy" / "compose.yaml")
    assert cfg.influx.transport == "v2" and cfg.mqtt.host == "mosquitto"
    assert cfg.alerts.enabled


def test_compose_workers_are_distinct() -> None:
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    services = compose["services"]
    hubs = {name: s for name, s in services.items() if s.get("command", [None])[0] == "hub"}
    assert len(hubs) >= 2
    ids = [s["command"][s["command"].index("--worker-id") + 1] for s in hubs.values()]
    assert len(set(ids)) == len(ids)
    volumes = [next(v for v in s["volumes"] if v.endswith(":/data")) for s in hubs.values()]
    assert len(set(volumes)) == len(volumes), "workers must not share a spool volume"
    for s in services.values():
        for v in s.get("volumes", []):
            src = v.split(":")[0]
            if src.startswith("./"):
                assert (REPO / src).exists(), v
