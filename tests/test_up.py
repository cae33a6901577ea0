"""The README's main command: `commhub up` brings up broker, InfluxDB, hub and simulator, and data flows."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import influx_query

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.services
def test_up_runs_the_main_job(tmp_path: Path) -> None:
    log_path = tmp_path / "up.out"
    with log_path.open("w") as log:
        proc = subprocess.Popen([sys.executable, "-m", "commhub.cli", "up", "--run-dir", str(tmp_path / "run"),
                                 "--speed", "120"], cwd=REPO, stdout=log, stderr=subprocess.STDOUT, text=True)
    # Output goes to a file, never a pipe nobody reads (a full pipe would block `up` while we wait).
    lines: list[str] = []
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and proc.poll() is None:
        lines = log_path.read_text().splitlines(keepends=True)
        if any("Press Ctrl-C" in x for x in lines):
            break
        time.sleep(0.5)
    url = next((m.group(1) for x in lines if (m := re.search(r"InfluxDB\s+(http://127\.0\.0\.1:\d+)", x))), None)
    if not url:
        proc.kill()
    assert url, "".join(lines)
    assert any("hub metrics" in x for x in lines) and any("MQTT broker" in x for x in lines)
    # Wait for the outcome, not for a fixed time: on a loaded machine the first points can take long to come.
    wanted = {"camera_motion", "access_granted", "hydrant_pressure", "heartbeat"}
    measurements: set[str] = set()
    deadline = time.monotonic() + 240
    try:
        while time.monotonic() < deadline and not (wanted <= measurements and _snapshots(tmp_path / "run")):
            try:
                series = influx_query(url, "commhub", "SHOW MEASUREMENTS")
                measurements = {v[0] for s in series for v in s["values"]}
            except (OSError, AssertionError):
                pass
            time.sleep(1)
        me = _api_login(lines)
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=120)
    assert proc.returncode == 0, log_path.read_text()
    # the simulated community covers all three layers: facility, technical (access) and people readings
    assert {"hydrant_pressure", "heartbeat"} <= measurements, measurements
    assert measurements & {"access_granted", "door_opened", "door_closed", "passage"}, measurements
    assert "hub_dead_letter" not in measurements, "the simulator produced invalid messages"
    # the real camera agent analyses the recorded footage (../shared/data/video) as two cameras
    assert any("cameras " in x and "OpenCV" in x for x in lines), "".join(lines)
    assert "camera_motion" in measurements, measurements
    assert _snapshots(tmp_path / "run"), "no snapshot reached the hub"
    # the operator API answered at the printed URL, for a printed demo login, with the roster's cells
    assert me is not None and me["role"] == "grid_worker" and me["grids"], me


def _api_login(lines: list[str]) -> dict[str, Any] | None:
    """Log in at the printed API URL with the printed grid-worker demo login; `up` printed after it answered."""
    import httpx
    api = next((m.group(1) for x in lines if (m := re.search(r"API and console (http://\S+)/", x))), None)
    demo = next((x.split() for x in lines if x.strip().startswith("demo-grid ")), None)
    assert api and demo, "".join(lines)
    r = httpx.post(f"{api}/api/v1/auth/token", data={"username": demo[0], "password": demo[1]}, timeout=60)
    assert r.status_code == 200, r.text
    me = httpx.get(f"{api}/api/v1/auth/me", headers={"Authorization": f"Bearer {r.json()['access_token']}"},
                   timeout=60)
    return me.json() if me.status_code == 200 else None


def _snapshots(run_dir: Path) -> list[Path]:
    return list((run_dir / "hub" / "snapshots").rglob("*.jpg"))
