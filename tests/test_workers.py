"""Several hub workers on one shared subscription: each message stored once; a retired worker loses nothing."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import influx_count
from hub_helpers import REPO, HubProcess, publish_stream, raw_client, wait_for, write_config

from commhub.ports import free_port
from commhub.services import Influxd, Mosquitto

pytestmark = pytest.mark.services

def _devices(phase: int) -> list[tuple[str, str]]:
    # new devices each phase: publish_stream numbers seqs from 0, and repeats would be dropped as duplicates
    return [("gas", f"gas-w{phase}-{i}") for i in range(6)]


def _count(influx: Influxd, db: str) -> int:
    try:
        return influx_count(influx.url, db, '"gas_reading"')
    except AssertionError:  # the hub creates the database with its first write
        return 0


def _body(i: int) -> dict[str, object]:
    return {"type": "gas_reading", "lel_pct": (i % 90) / 10}


def test_two_workers_share_and_a_retired_worker_keeps_its_share(tmp_path: Path, own_mosquitto: Mosquitto,
                                                                 influxd: Influxd, unique_site: str) -> None:
    mosquitto = own_mosquitto
    db = f"db_{unique_site}"
    # a group of our own, so other tests' workers on the session broker do not take part
    cfg = write_config(tmp_path, mosquitto, influxd, db, site=unique_site,
                       hub={"share_group": f"g{unique_site}", "discovery": True})
    a = HubProcess(cfg, tmp_path / "a.log", worker_id=f"a-{unique_site}", metrics_port=free_port())
    b = HubProcess(cfg, tmp_path / "b.log", worker_id=f"b-{unique_site}", metrics_port=free_port())
    a.start()
    b.start()
    pub = raw_client(mosquitto, f"pub-{unique_site}")
    try:
        publish_stream(pub, unique_site, _devices(1), 1200, _body)
        assert wait_for(lambda: _count(influxd, db) >= 1200, 30)
        share_a, share_b = a.metric("commhub_messages_in_total"), b.metric("commhub_messages_in_total")
        assert share_a and share_b and share_a + share_b == 1200, (share_a, share_b)  # both worked, none twice

        assert b.stop() == 0  # b is switched off; its session (and its share of what follows) stays
        publish_stream(pub, unique_site, _devices(2), 1200, _body)
        time.sleep(1.0)
        assert _count(influxd, db) < 2400, "b's share should wait for b"

        retire = subprocess.run([sys.executable, "-m", "commhub.cli", "hub", "--config", str(cfg), "--worker-id",
                                 f"b-{unique_site}", "--metrics-port", "0", "--retire"], cwd=REPO,
                                capture_output=True, text=True, timeout=120)
        assert retire.returncode == 0, retire.stdout + retire.stderr
        assert "retired: session ended" in retire.stderr
        assert wait_for(lambda: _count(influxd, db) >= 2400, 30), (
            _count(influxd, db), retire.stderr[-3000:])

        # with b gone for good, everything goes to a
        publish_stream(pub, unique_site, _devices(3), 600, _body)
        assert wait_for(lambda: _count(influxd, db) >= 3000, 30)
        time.sleep(0.5)
        assert _count(influxd, db) == 3000
    finally:
        pub.disconnect()
        a.stop()
        b.stop()
