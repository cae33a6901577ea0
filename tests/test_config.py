"""Configuration: one validated tree; errors name the file, the key and the reason."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from commhub.config import ConfigError, load

REPO = Path(__file__).resolve().parents[1]


def _write(tmp: Path, hub: str, community: str | None = None) -> Path:
    (tmp / "c.yaml").write_text(community or """
site: {id: s}
grids: [{id: g1, buildings: [{id: b1, units: [u1]}]}]
devices: [{id: gas-1, kind: gas, grid: g1, building: b1, unit: u1}]
""")
    path = tmp / "hub.yaml"
    path.write_text(hub)
    return path


def test_shipped_config_loads() -> None:
    cfg = load(REPO / "configs" / "commhub.yaml")
    assert len(cfg.community.grids) >= 3
    assert sum(len(g.buildings) for g in cfg.community.grids) >= 10
    assert len(cfg.community.devices) >= 300
    assert cfg.hub.spool.dir.is_absolute()


@pytest.mark.parametrize("hub_yaml,expected", [
    ("community: c.yaml\ninflux: {transport: v3}\n", "influx.transport: Input should be 'auto', 'v1' or 'v2'"),
    ("community: c.yaml\nmqtt: {port: 70000}\n", "mqtt.port: Input should be less than or equal to 65535"),
    ("community: c.yaml\nhub: {batch_mx: 3}\n", "hub.batch_mx: Extra inputs are not permitted"),
    ("community: c.yaml\nmqtt: {host: '${NOT_SET_ANYWHERE_X}'}\n",
     "mqtt.host: environment variable NOT_SET_ANYWHERE_X"),
    ("mqtt: {}\n", "community: expected the path of a community file"),
    ("community: c.yaml\nmqtt: [1, 2\n", "not valid YAML"),
])
def test_errors_name_file_key_and_reason(tmp_path: Path, hub_yaml: str, expected: str) -> None:
    path = _write(tmp_path, hub_yaml)
    with pytest.raises(ConfigError) as e:
        load(path)
    assert str(path) in str(e.value)
    assert expected in str(e.value)


def test_community_errors_name_the_community_file(tmp_path: Path) -> None:
    path = _write(tmp_path, "community: c.yaml\n", """
site: {id: s}
grids: [{id: g1, buildings: [{id: b1, units: [u1]}]}]
devices: [{id: gas-1, kind: gas, grid: g9}, {id: x-1, kind: toaster, grid: g1}]
""")
    with pytest.raises(ConfigError) as e:
        load(path)
    text = str(e.value)
    assert str(tmp_path / "c.yaml") in text
    assert "devices[1].kind" in text


def test_env_defaults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _write(tmp_path, "community: c.yaml\nmqtt: {port: '${T_PORT:-1999}'}\n")
    assert load(path).mqtt.port == 1999
    monkeypatch.setenv("T_PORT", "2883")
    assert load(path).mqtt.port == 2883


def test_cli_reports_bad_config(tmp_path: Path) -> None:
    path = _write(tmp_path, "community: c.yaml\nhub: {spool: {fsync: maybe}}\n")
    r = subprocess.run([sys.executable, "-m", "commhub.cli", "hub", "--config", str(path)],
                       capture_output=True, text=True, timeout=60, cwd=REPO)
    assert r.returncode == 2
    assert f"{path}: hub.spool.fsync: Input should be a valid boolean" in r.stderr
