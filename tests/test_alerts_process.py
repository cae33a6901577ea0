"""`commhub hub` as a real process with alerting on: SIGKILL in the middle of a sequence loses nothing."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from hub_helpers import Collector, HubProcess, envelope_json, raw_client, wait_for, write_config

from commhub import topics

pytestmark = pytest.mark.broker
RULES = Path(__file__).resolve().parents[1] / "configs" / "rules.yaml"


def _opened(col: Collector, rule: str) -> set[int]:
    out = set()
    for _, payload in list(col.messages):
        n = json.loads(payload)
        if n["rule"] == rule and n["transition"] == "opened":
            out.add(n["notice_id"])
    return out


def test_sigkill_mid_sequence_then_restart_gives_exactly_one_alert(tmp_path: Path, mosquitto_factory: Any) -> None:
    broker = mosquitto_factory()
    pack = yaml.safe_load(RULES.read_text())
    for r in pack["rules"]:
        if r["id"] == "door_held_open":
            r["hold_s"] = 3  # real time here: a short hold keeps the test fast
    rules = tmp_path / "rules.yaml"
    rules.write_text(yaml.safe_dump(pack, allow_unicode=True))
    cfg = write_config(tmp_path, broker, None, "alerts", alerts={
        "enabled": True, "db_url": f"sqlite:///{tmp_path}/alerts.db", "rules_file": str(rules), "tick_s": 0.1})
    col = Collector(broker, topics.alerts_filter("commhub"), "alert-listener")
    pub = raw_client(broker, "door-sim")
    hub = HubProcess(cfg, tmp_path / "hub.log")
    hub.start()
    try:
        topic = topics.event("commhub", "sunrise", "door_controller", "door-b01-u1")
        now = datetime.now(UTC)
        grant = {"type": "access_granted", "door": "d1", "credential_ref": "a11ce000a11ce000", "method": "card"}
        pub.publish(topic, envelope_json("door-b01-u1", 1, grant, now), qos=1).wait_for_publish(5)
        pub.publish(topic, envelope_json("door-b01-u1", 2, {"type": "door_opened", "door": "d1"}, now),
                    qos=1).wait_for_publish(5)
        time.sleep(1.0)
        hub.kill()  # the door stays open while the hub is dead
        time.sleep(1.0)
        hub2 = HubProcess(cfg, tmp_path / "hub2.log", metrics_port=hub.metrics_port)
        hub2.start()
        assert wait_for(lambda: len(_opened(col, "door_held_open")) >= 1, 15), (tmp_path / "hub2.log").read_text()
        time.sleep(1.5)
        assert len(_opened(col, "door_held_open")) == 1
        assert len(_opened(col, "door_forced_open")) == 0  # the grant was remembered across the kill
        hub2.stop()
    finally:
        hub.stop()
        col.close()
        pub.disconnect()
        pub.loop_stop()
