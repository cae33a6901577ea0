"""`commhub agent ...` and the `agent:` config section, run as a user would."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from agent_helpers import Collector

from commhub.cli import main
from commhub.config import ConfigError, load
from commhub.services import Mosquitto
from edge_agents import cli as agent_cli

ROOT = Path(__file__).resolve().parents[1]
COMMUNITY = """
site: {{id: {site}}}
grids: [{{id: g1}}]
devices:
  - {{id: smoke1, kind: smoke, grid: g1}}
  - {{id: gas1, kind: gas, grid: g1}}
  - {{id: door1, kind: door_controller, grid: g1}}
"""


def _write(tmp_path: Path, site: str, port: int, agent: str) -> Path:
    (tmp_path / "community.yaml").write_text(COMMUNITY.format(site=site))
    cfg = tmp_path / "commhub.yaml"
    cfg.write_text(f"community: community.yaml\nmqtt: {{port: {port}}}\nagent:\n{agent}")
    return cfg


def test_agent_section_loads_and_errors_name_the_key(tmp_path: Path) -> None:
    cfg = _write(tmp_path, "s1", 1883, "  state_dir: state\n  spool_max_bytes: 1048576\n"
                                      "  access: {site_secret: '${TEST_SECRET:-abcdefghijklmnopq}'}\n")
    config = load(cfg)
    assert config.agent.spool_max_bytes == 1048576
    assert config.agent.access.site_secret == "abcdefghijklmnopq"
    assert config.agent.backoff_max_s == 30.0, "defaults keep older configs valid"
    bad = _write(tmp_path, "s1", 1883, "  spool_max_bytes: 12\n  backoff_jiter: 0.1\n")
    with pytest.raises(ConfigError) as err:
        load(bad)
    assert "agent.spool_max_bytes" in str(err.value) and "agent.backoff_jiter" in str(err.value)


@pytest.mark.broker
def test_facility_agent_runs_from_the_command_line(mosquitto: Mosquitto, unique_site: str, tmp_path: Path) -> None:
    cfg = _write(tmp_path, unique_site, mosquitto.port, "  state_dir: state\n  facility: {sim_speed: 20}\n")
    col = Collector(mosquitto.port, f"commhub/v1/{unique_site}/#").start()
    proc = subprocess.run([sys.executable, "-m", "commhub.cli", "agent", "facility", "--config", str(cfg),
                           "--simulate", "--duration", "1.5", "--seed", "1"], capture_output=True, text=True,
                          cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=60)
    assert proc.returncode == 0, proc.stderr
    stats = json.loads(proc.stdout.strip().splitlines()[-1])
    assert stats["agent"] == "facility" and stats["spooled"] == 0 and stats["acked"] == stats["published"] > 0
    assert (tmp_path / "state" / "facility" / "spool.sqlite3").exists(), "state dir is relative to the config"
    assert col.wait_for(lambda ms: {"smoke1", "gas1"} <= {m.envelope.device_id for m in ms if m.channel == "birth"})
    assert "door1" not in {m.envelope.device_id for m in col.snapshot()}
    col.stop()


def test_access_agent_without_secret_exits_with_a_reason(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = _write(tmp_path, "s1", 1, "  state_dir: state\n")
    assert main(["agent", "access", "--config", str(cfg), "--duration", "0"]) == 2
    assert "site_secret" in capsys.readouterr().err


def test_camera_missing_is_said_clearly(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(agent_cli, "CAMERA_CLI", "edge_agents.camera_not_built.cli")
    with pytest.raises(SystemExit) as exc:
        main(["agent", "camera", "--config", "x.yaml"])
    assert exc.value.code == 2
    assert "camera agent is not available" in capsys.readouterr().err


def test_example_config_is_valid(monkeypatch: pytest.MonkeyPatch) -> None:
    from edge_agents.base.devices import select_devices
    from edge_agents.facility.agent import check_modbus
    from edge_agents.facility.bodies import FACILITY_KINDS

    monkeypatch.setenv("COMMHUB_SITE_SECRET", "an-example-secret-of-some-length")
    config = load(ROOT / "configs" / "agents.example.yaml")
    assert config.agent.access.site_secret == "an-example-secret-of-some-length"
    devices = select_devices(config.community, FACILITY_KINDS)
    check_modbus(config.agent.facility.modbus, devices)  # raises ConfigError on a wrong map
    assert config.agent.facility.modbus[0].devices[0].device == "hydrant-b01-u1"
