"""Edge agents under a real hub (mosquitto, influxd, `commhub hub` with alerting): one agent process SIGKILLed
by the OS, whose will the broker publishes, and one that stops cleanly. The will is stored as the killed agent's
last state, after its own `online`, and raises one alert grouping its devices; the clean stop raises nothing."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml
from agent_helpers import make_agent
from conftest import influx_query
from hub_helpers import REPO, Collector, wait_for, write_config
from scenario_helpers import RULES, SAMPLE

from commhub import topics
from commhub.hubproc import HubProcess
from commhub.services import Influxd, Mosquitto
from commhub.wire import AlertNotice, DeviceKind, GasReading, HydrantPressure

KILLED = ("edge_b01", ("gas-b01-u1-202", "hydrant-b01-u1"))  # devices of the sample community, both in b01/u1
STOPPED = ("edge_b02", ("gas-b02-u1-202", "hydrant-b02-u1"))
# The shipped will grace (20 s) waits for a broker restart's agents to come back; this test is about what a
# will that stands does, so it waits 1 s (test_broker_restart checks the grace itself).
WILL_GRACE_S = 1.0

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
    agent.wait_connected(60)
    agent.publish({gas!r}, GasReading(lel_pct=1.0))
    agent.publish({hydrant!r}, HydrantPressure(pressure_mpa=0.3))
    agent.sync(60)
    print("ready", flush=True)
    while True:
        time.sleep(1)
""")


def _rules(tmp: Path) -> Path:
    """The shipped rule pack with a short will grace."""
    pack = yaml.safe_load(RULES.read_text())
    rule = next(r for r in pack["rules"] if r["id"] == "device_offline")
    rule["will_grace_s"] = WILL_GRACE_S
    path = tmp / "rules.yaml"
    path.write_text(yaml.safe_dump(pack))
    return path


def _states(influxd: Influxd, db: str, agent: str) -> list[dict[str, object]]:
    """The agent's stored states, oldest first ([] until the hub has created the database)."""
    try:
        rows = influx_query(influxd.url, db, f"SELECT status, session, clean FROM state WHERE device_id = '{agent}'")
    except AssertionError:
        return []
    if not rows:
        return []
    cols = rows[0]["columns"]
    return [dict(zip(cols, v, strict=True)) for v in rows[0]["values"]]


@pytest.mark.services
def test_a_killed_agent_is_stored_offline_last_and_alerted_once_a_clean_stop_never(
        mosquitto: Mosquitto, influxd: Influxd, unique_site: str, tmp_path: Path) -> None:
    db = f"will_{unique_site}"
    config = write_config(tmp_path, mosquitto, influxd, db, community=SAMPLE, site=unique_site,
                          alerts={"enabled": True, "db_path": str(tmp_path / "alerts.db"), "tick_s": 0.1,
                                  "rules_file": str(_rules(tmp_path))})
    hub = HubProcess(config, tmp_path / "hub.log")
    notices = Collector(mosquitto, topics.alerts_filter("commhub"), f"will-{unique_site}")
    agent, devices = KILLED
    code = CHILD.format(tests=str(REPO / "tests"), port=mosquitto.port, site=unique_site, agent=agent,
                        state=str(tmp_path / "killed"), gas=devices[0], hydrant=devices[1])
    # The child imports while the hub starts: both take seconds on a loaded machine.
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, cwd=REPO,
                             env={**os.environ, "PYTHONPATH": str(REPO)})
    quiet = make_agent(mosquitto.port, unique_site, tmp_path / "stopped", name=STOPPED[0], spool_fsync=False)
    try:
        hub.start()
        quiet.add_device(STOPPED[1][0], DeviceKind.GAS)
        quiet.add_device(STOPPED[1][1], DeviceKind.HYDRANT)
        quiet.start()
        assert quiet.wait_connected(60)
        quiet.publish(STOPPED[1][0], GasReading(lel_pct=0.5))
        quiet.publish(STOPPED[1][1], HydrantPressure(pressure_mpa=0.31))
        assert child.stdout is not None and child.stdout.readline().strip() == "ready"
        # Generous bounds: a loaded machine; the verdicts do not depend on its speed.
        def online(name: str) -> bool:
            return any(s["status"] == "online" for s in _states(influxd, db, name))
        assert wait_for(lambda: online(agent) and online(STOPPED[0]), 120), hub.log.read_text()[-2000:]

        quiet.stop()  # a planned stop: announced, raises nothing
        assert wait_for(lambda: any(s["status"] == "offline" for s in _states(influxd, db, STOPPED[0])), 120)
        child.send_signal(signal.SIGKILL)  # the OS ends it: no goodbye, the broker publishes its will
        child.wait(60)

        def offline_alerts() -> list[AlertNotice]:
            got = [AlertNotice.model_validate_json(p) for _t, p in list(notices.messages)]
            return [n for n in got if n.site == unique_site and n.code == "device_offline"]
        assert wait_for(lambda: bool(offline_alerts()), 120), hub.log.read_text()[-2000:]

        # The will carries its session's connect time; stored, it comes after that session's online state.
        got = _states(influxd, db, agent)
        sessions = [s["session"] for s in got if s["status"] == "online"]
        assert got[-1]["status"] == "offline" and got[-1]["session"] == sessions[-1], got
        last = influx_query(influxd.url, db, f"SELECT last(status) FROM state WHERE device_id = '{agent}'")
        assert last[0]["values"][0][1] == "offline"
        stopped = _states(influxd, db, STOPPED[0])
        assert stopped[-1]["status"] == "offline" and stopped[-1]["clean"] is True, stopped
        # One alert for the killed agent, grouping both its devices; none per device, none for the clean stop
        # (announced before the kill, so the hub had handled it before the will it alerted on).
        alerts = {n.alert_id: n for n in offline_alerts()}
        assert len(alerts) == 1, [(n.subject, n.building, n.thresholds) for n in alerts.values()]
        (alert,) = alerts.values()
        assert alert.device_id is None and alert.building == "b01" and alert.unit == "u1"
        assert alert.thresholds["devices"] == 2 and set(str(alert.thresholds["listed"]).split(",")) == set(devices)
        assert alert.route.recipients and {r.role for r in alert.route.recipients} == {"maintenance"}
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        quiet.stop()
        notices.close()
        assert hub.stop() == 0
