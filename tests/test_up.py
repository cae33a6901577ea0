"""The README's main command: `commhub up` brings up broker, InfluxDB, hub and simulator, and data flows."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import influx_query

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.services
def test_up_runs_the_main_job(tmp_path: Path) -> None:
    proc = subprocess.Popen([sys.executable, "-m", "commhub.cli", "up", "--run-dir", str(tmp_path),
                             "--duration", "30", "--speed", "120"], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    assert proc.stdout is not None
    lines: list[str] = []
    url = None
    for line in proc.stdout:
        lines.append(line)
        m = re.search(r"InfluxDB\s+(http://127\.0\.0\.1:\d+)", line)
        if m:
            url = m.group(1)
        if "Press Ctrl-C" in line:
            break
    assert url, "".join(lines)
    assert any("hub metrics" in x for x in lines) and any("MQTT broker" in x for x in lines)
    measurements: set[str] = set()
    deadline = time.monotonic() + 25
    while time.monotonic() < deadline and not ({"camera_motion", "access_granted"} <= measurements):
        try:
            series = influx_query(url, "commhub", "SHOW MEASUREMENTS")
            measurements = {v[0] for s in series for v in s["values"]}
        except (OSError, AssertionError):
            pass
        time.sleep(1)
    # the operator API answers at the printed URL, with a printed demo login
    api = next((m.group(1) for x in lines if (m := re.search(r"API and console (http://\S+)/", x))), None)
    demo = next((x.split() for x in lines if x.strip().startswith("demo-grid ")), None)
    assert api and demo, "".join(lines)
    import httpx
    me = None
    while time.monotonic() < deadline + 60 and me is None:
        try:
            r = httpx.post(f"{api}/api/v1/auth/token", data={"username": demo[0], "password": demo[1]}, timeout=10)
            me = httpx.get(f"{api}/api/v1/auth/me", headers={"Authorization": f"Bearer {r.json()['access_token']}"},
                           timeout=10).json()
        except (httpx.HTTPError, KeyError, ValueError):
            time.sleep(1)
    assert me is not None and me["role"] == "grid_worker" and me["grids"], me
    out, _ = proc.communicate(timeout=90)
    assert proc.returncode == 0, "".join(lines) + out
    # the simulated community covers all three layers: facility, technical (access) and people readings
    assert {"hydrant_pressure", "heartbeat"} <= measurements, measurements
    assert measurements & {"access_granted", "door_opened", "door_closed", "passage"}, measurements
    assert "hub_dead_letter" not in measurements, "the simulator produced invalid messages"
    # the real camera agent analyses the recorded footage (../shared/data/video) as two cameras
    assert any("cameras " in x and "OpenCV" in x for x in lines), "".join(lines)
    assert "camera_motion" in measurements, measurements
    assert list((tmp_path / "hub" / "snapshots").rglob("*.jpg")), "no snapshot reached the hub"
