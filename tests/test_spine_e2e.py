"""End to end on a real mosquitto and a real influxd: publish -> hub -> InfluxDB, with outages and crashes."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest
from conftest import influx_count, influx_query
from hub_helpers import Collector, HubProcess, envelope_json, publish_stream, raw_client, wait_for, write_config

from commhub.services import Influxd, Mosquitto

pytestmark = pytest.mark.services

DEVICES = [("gas", "gas-b01-u1-202"), ("hydrant", "hydrant-b01-u1"), ("gas", "gas-b02-u2-902"),
           ("hydrant", "hydrant-b05-u1"), ("gas", "not-in-registry-1")]


def _mixed_body(i: int) -> dict[str, object]:
    kind = DEVICES[i % len(DEVICES)][0]
    return {"type": "gas_reading", "lel_pct": (i % 50) / 10} if kind == "gas" else {
        "type": "hydrant_pressure", "pressure_mpa": round(0.3 + (i % 7) / 100, 3)}


def _count(influx: Influxd, db: str) -> int:
    try:
        return influx_count(influx.url, db, "/^(gas_reading|hydrant_pressure)$/")
    except Exception:
        return -1


MALFORMED = [
    ("commhub/v1/SITE/gas/gas-b01-u1-202/tele", b"{not json"),  # json
    ("commhub/v1/SITE/gas/gas-b01-u1-202/tele",  # schema: lel_pct out of range
     b'{"schema":1,"device_id":"gas-b01-u1-202","ts":"2026-01-01T00:00:00Z","seq":999999,'
     b'"body":{"type":"gas_reading","lel_pct":250}}'),
    ("commhub/v1/SITE/gas/gas-b01-u1-202/tele",  # device_mismatch
     b'{"schema":1,"device_id":"someone-else","ts":"2026-01-01T00:00:00Z","seq":1,'
     b'"body":{"type":"gas_reading","lel_pct":1}}'),
    ("commhub/v1/SITE/smoke/smoke-b01-u1-101/evt",  # kind_body
     b'{"schema":1,"device_id":"smoke-b01-u1-101","ts":"2026-01-01T00:00:00Z","seq":1,'
     b'"body":{"type":"gas_reading","lel_pct":1}}'),
    ("commhub/v1/SITE/gas/tele", b"{}"),  # topic: too few levels
    ("commhub/v1/SITE/toaster/t-1/tele", b"{}"),  # unknown kind
    ("commhub/v1/SITE/gas/gas-b01-u1-202/evt",  # channel_body: a reading sent as an event
     b'{"schema":1,"device_id":"gas-b01-u1-202","ts":"2026-01-01T00:00:00Z","seq":2,'
     b'"body":{"type":"gas_reading","lel_pct":1}}'),
    ("commhub/v1/SITE/gas/gas-b01-u1-202/tele",  # naive timestamp
     b'{"schema":1,"device_id":"gas-b01-u1-202","ts":"2026-01-01T00:00:00","seq":3,'
     b'"body":{"type":"gas_reading","lel_pct":1}}'),
]


# Both MQTT readers: the buffered one (the default) and paho's own, its fallback (hub.buffered_reader: false).
@pytest.mark.parametrize("buffered", [True, False], ids=["buffered_reader", "paho_reader"])
def test_valid_stored_malformed_dead_lettered(tmp_path: Path, own_mosquitto: Mosquitto, influxd: Influxd,
                                              unique_site: str, buffered: bool) -> None:
    mosquitto = own_mosquitto
    db = f"db_{unique_site}"
    cfg = write_config(tmp_path, mosquitto, influxd, db, site=unique_site,
                       hub={"discovery": True, "buffered_reader": buffered})
    hub = HubProcess(cfg, tmp_path / "hub.log")
    hub.start()
    dlq = Collector(mosquitto, "commhub/hub/v1/deadletter", f"dlq-{unique_site}")
    pub = raw_client(mosquitto, f"pub-{unique_site}")
    try:
        n = 1000
        half = n // 2
        publish_stream(pub, unique_site, DEVICES, half, _mixed_body)
        for topic, payload in MALFORMED:
            pub.publish(topic.replace("SITE", unique_site), payload, qos=1).wait_for_publish(10)
        # the rest of the valid stream after the bad ones: the hub must keep going
        seqs = {d: half // len(DEVICES) for _, d in DEVICES}
        for i in range(half, n):
            kind, dev = DEVICES[i % len(DEVICES)]
            pub.publish(f"commhub/v1/{unique_site}/{kind}/{dev}/tele", envelope_json(dev, seqs[dev], _mixed_body(i)),
                        qos=1).wait_for_publish(10)
            seqs[dev] += 1
        m = len(MALFORMED)
        assert wait_for(lambda: _count(influxd, db) >= n, 60), f"only {_count(influxd, db)} of {n} points"
        assert wait_for(lambda: len(dlq.messages) >= m, 60)
        time.sleep(1.0)  # anything extra would have arrived by now
        assert _count(influxd, db) == n
        assert len(dlq.messages) == m
        reasons = sorted(json.loads(p)["reason"] for _, p in dlq.messages)
        assert reasons == sorted(["json", "schema", "device_mismatch", "kind_body", "topic", "topic",
                                  "channel_body", "schema"])
        dead = influx_query(influxd.url, db, 'SELECT count("payload_bytes") FROM "hub_dead_letter"')
        assert int(dead[0]["values"][0][1]) == m
        assert hub.alive
        assert hub.metric("commhub_messages_invalid_total") == m
        assert hub.metric("commhub_points_written_total") == n + m
        # registry tags come from the community model; the unregistered device is tagged _unassigned
        tags = influx_query(influxd.url, db, 'SHOW TAG VALUES FROM "gas_reading" WITH KEY = "grid"')
        assert {v[1] for v in tags[0]["values"]} == {"g1", "_unassigned"}
        assert hub.stop() == 0
    finally:
        pub.disconnect()
        dlq.close()
        hub.stop()


def test_influxd_outage_loses_nothing(tmp_path: Path, own_mosquitto: Mosquitto, influxd_factory,
                                      unique_site: str) -> None:
    mosquitto = own_mosquitto
    influx = influxd_factory()
    db = f"db_{unique_site}"
    cfg = write_config(tmp_path, mosquitto, influx, db, site=unique_site,
                       hub={"discovery": True, "spool": {"dir": str(tmp_path / "spool"), "retry_max_s": 1.0}})
    hub = HubProcess(cfg, tmp_path / "hub.log")
    hub.start()
    pub = raw_client(mosquitto, f"pub-{unique_site}")
    n = 3000
    outage = threading.Event()

    def progress(i: int) -> None:
        if i == n // 3:
            influx.stop()
            outage.set()
        if i == 2 * n // 3:
            assert hub.metric("commhub_spool_points") is not None
            influx.start()

    try:
        publish_stream(pub, unique_site, DEVICES, n, _mixed_body, rate=1500, on_progress=progress)
        assert outage.is_set()
        assert wait_for(lambda: _count(influx, db) >= n, 60), f"only {_count(influx, db)} of {n}"
        time.sleep(1.0)
        assert _count(influx, db) == n
        assert (hub.metric("commhub_write_errors_total") or 0) >= 1, "the outage was not noticed"
        assert hub.metric("commhub_spool_points") == 0
    finally:
        pub.disconnect()
        hub.stop()


def test_hub_sigkill_midstream_loses_nothing(tmp_path: Path, own_mosquitto: Mosquitto, influxd: Influxd,
                                             unique_site: str) -> None:
    mosquitto = own_mosquitto
    db = f"db_{unique_site}"
    cfg = write_config(tmp_path, mosquitto, influxd, db, site=unique_site, hub={"discovery": True})
    hub = HubProcess(cfg, tmp_path / "hub.log")
    hub.start()
    pub = raw_client(mosquitto, f"pub-{unique_site}")
    n = 4000
    killed = threading.Event()

    def progress(i: int) -> None:
        if i == n // 2:
            hub.kill()
            killed.set()

    try:
        publish_stream(pub, unique_site, DEVICES, n, _mixed_body, rate=2000, on_progress=progress)
        assert killed.is_set() and not hub.alive
        before = _count(influxd, db)
        assert before < n
        hub.start()  # same worker id: resumes its persistent session and its spool
        assert wait_for(lambda: _count(influxd, db) >= n, 60), f"only {_count(influxd, db)} of {n}"
        time.sleep(1.0)
        # Messages spooled but not yet acknowledged at the kill come back and are written again with the
        # same tags and timestamp, so InfluxDB overwrites them: the count stays exactly n.
        assert _count(influxd, db) == n
    finally:
        pub.disconnect()
        hub.stop()


def test_retained_messages_are_not_replayed_to_the_hub(tmp_path: Path, own_mosquitto: Mosquitto, influxd: Influxd,
                                                       unique_site: str) -> None:
    db = f"db_{unique_site}"
    pub = raw_client(own_mosquitto, f"pub-{unique_site}")
    state = envelope_json("gas-b01-u1-202", 0, {"type": "state", "status": "online", "session": 1})
    pub.publish(f"commhub/v1/{unique_site}/gas/gas-b01-u1-202/state", state, qos=1, retain=True).wait_for_publish(10)
    hub = HubProcess(write_config(tmp_path, own_mosquitto, influxd, db, site=unique_site), tmp_path / "hub.log")
    hub.start()  # subscribes after the retained state was set: it must not be delivered again
    try:
        publish_stream(pub, unique_site, DEVICES[:1], 10, _mixed_body)
        assert wait_for(lambda: hub.metric("commhub_points_written_total") == 10, 20)
        time.sleep(0.5)
        assert hub.metric("commhub_messages_in_total") == 10
    finally:
        pub.disconnect()
        hub.stop()
