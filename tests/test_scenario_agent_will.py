"""An edge agent SIGKILLed under a real hub (mosquitto, influxd, `commhub hub` with alerting): the broker's will
is stored as the agent's last state, after its own `online`, and raises one alert for the agent's devices."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import influx_query
from hub_helpers import REPO, HubProcess, wait_for, write_config

from commhub.config import load
from commhub.services import Influxd, Mosquitto
from simulators.scenario.alerts import AlertListener

DEVICES = ("gas-b01-u1-202", "hydrant-b01-u1")  # registered in the sample community, both in b01/u1
AGENT = "edge_b01"

CHILD = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    sys.path.insert(0, {tests!r})
    from agent_helpers import make_agent
    from commhub.wire import DeviceKind, GasReading, HydrantPressure
    agent = make_agent({port}, {site!r}, Path({state!r}), name={agent!r}, spool_fsync=False)
    agent.add_device({gas!r}, DeviceKind.GAS)
    agent.add_device({hydrant!r}, DeviceKind.HYDRANT)
    agent.start()
    agent.wait_connected(30)
    agent.publish({gas!r}, GasReading(lel_pct=1.0))
    agent.publish({hydrant!r}, HydrantPressure(pressure_mpa=0.3))
    agent.sync(30)
    print("ready", flush=True)
    while True:
        time.sleep(1)
""")


@pytest.mark.services
def test_a_killed_agent_is_stored_offline_last_and_alerted_once(mosquitto: Mosquitto, influxd: Influxd,
                                                                 unique_site: str, tmp_path: Path) -> None:
    db = f"will_{unique_site}"
    config = write_config(tmp_path, mosquitto, influxd, db, site=unique_site,
                          alerts={"enabled": True, "db_path": str(tmp_path / "alerts.db"), "tick_s": 0.1})
    hub = HubProcess(config, tmp_path / "hub.log")
    hub.start(60)
    listener = AlertListener(load(config).mqtt, unique_site)
    listener.start(30)
    code = CHILD.format(tests=str(REPO / "tests"), port=mosquitto.port, site=unique_site, agent=AGENT,
                        state=str(tmp_path / "agent"), gas=DEVICES[0], hydrant=DEVICES[1])
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, cwd=REPO,
                             env={**os.environ, "PYTHONPATH": str(REPO)})
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "ready"

        def states() -> list[dict[str, object]]:
            try:
                rows = influx_query(influxd.url, db, f"SELECT status, session FROM state WHERE device_id = '{AGENT}'")
            except AssertionError:  # the hub creates the database with its first write
                return []
            if not rows:
                return []
            cols = rows[0]["columns"]
            return [dict(zip(cols, v, strict=True)) for v in rows[0]["values"]]
        # Generous bounds: a loaded machine; the verdicts do not depend on speed.
        assert wait_for(lambda: any(s["status"] == "online" for s in states()), 90), hub.log.read_text()[-2000:]
        child.send_signal(signal.SIGKILL)
        child.wait()
        assert wait_for(lambda: any(s["status"] == "offline" for s in states()), 90), hub.log.read_text()[-2000:]
        got = states()
        online = [s for s in got if s["status"] == "online"]
        # The will carries its session's connect time; stored, it comes after that session's online state.
        assert got[-1]["status"] == "offline" and got[-1]["session"] == online[-1]["session"]
        last = influx_query(influxd.url, db, f"SELECT last(status) FROM state WHERE device_id = '{AGENT}'")
        assert last[0]["values"][0][1] == "offline"
        # One alert for the agent, naming both devices; none per device.
        assert wait_for(lambda: any(a.code == "device_offline" for a in listener.snapshot()), 90)
        offline = {a.alert_id: a for a in listener.snapshot() if a.code == "device_offline"}
        assert len(offline) == 1
        (alert,) = offline.values()
        assert alert.device_id is None and alert.building == "b01" and alert.unit == "u1"
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        listener.stop()
        hub.stop()
