"""Two communities on one broker (a district): each hub takes its own site's traffic and nothing else.

A hub used to subscribe to every site under the root and refuse the others' messages as `site_mismatch`: on a
broker several communities share, each hub received every community's traffic and dead-lettered all but its own.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import paho.mqtt.client as paho
import pytest
from conftest import influx_count
from hub_helpers import Collector, HubProcess, publish_stream, raw_client, wait_for, write_config
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from commhub import topics
from commhub.services import Influxd, Mosquitto

pytestmark = pytest.mark.services

DEVICES = [("gas", "gas-b01-u1-202"), ("hydrant", "hydrant-b01-u1"), ("gas", "gas-b02-u2-902")]
N = 150  # messages per site


def _body(i: int) -> dict[str, object]:
    if DEVICES[i % len(DEVICES)][0] == "gas":
        return {"type": "gas_reading", "lel_pct": (i % 40) / 10}
    return {"type": "hydrant_pressure", "pressure_mpa": round(0.3 + (i % 7) / 100, 3)}


def _older_hubs_session(broker: Mosquitto, worker_id: str) -> None:
    """Leave a persistent session under the hub's client id subscribed as a hub before the per-site filter was."""
    c = paho.Client(CallbackAPIVersion.VERSION2, client_id=worker_id, protocol=paho.MQTTv5)
    subscribed = threading.Event()
    c.on_subscribe = lambda *a: subscribed.set()
    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = 3600
    c.connect(broker.host, broker.port, clean_start=False, properties=props)
    c.loop_start()
    try:
        c.subscribe(topics.shared("hub", topics.devices_filter("commhub")), qos=1)
        assert subscribed.wait(10), "the older hub's subscription was not acknowledged"
    finally:
        c.disconnect()
        c.loop_stop()


def _count(influx: Influxd, db: str) -> int:
    try:
        return influx_count(influx.url, db, "/^(gas_reading|hydrant_pressure)$/")
    except Exception:
        return -1


def test_two_communities_on_one_broker_each_hub_takes_only_its_own_site(
        tmp_path: Path, own_mosquitto: Mosquitto, influxd: Influxd, unique_site: str) -> None:
    sites = [f"{unique_site}a", f"{unique_site}b"]
    hubs: list[HubProcess] = []
    # Community a's hub was upgraded: its broker session still holds the older all-sites subscription.
    old_id = f"hub-{sites[0]}"
    _older_hubs_session(own_mosquitto, old_id)
    for site in sites:
        folder = tmp_path / site
        folder.mkdir()
        hub = {"worker_id": old_id} if site == sites[0] else {}
        cfg = write_config(folder, own_mosquitto, influxd, f"db_{site}", site=site, hub=hub)
        hubs.append(HubProcess(cfg, folder / "hub.log"))
    dlq = Collector(own_mosquitto, topics.dead_letter("commhub"), f"dlq-{unique_site}")
    pub = raw_client(own_mosquitto, f"pub-{unique_site}")
    try:
        for h in hubs:
            h.start(timeout=120)
        for site in sites:
            publish_stream(pub, site, DEVICES, N, _body)
        def stored() -> list[int]:
            return [_count(influxd, f"db_{site}") for site in sites]
        assert wait_for(lambda: min(stored()) >= N, 60), stored()
        time.sleep(1.5)  # anything misrouted would have arrived by now
        for site, h in zip(sites, hubs, strict=True):
            assert _count(influxd, f"db_{site}") == N, site  # its own, each once
            assert h.metric("commhub_messages_in_total") == N, site  # the neighbour's never arrive here ...
            assert (h.metric("commhub_messages_invalid_total") or 0.0) == 0, site  # ... so none is refused
        assert [json.loads(p)["reason"] for _, p in dlq.messages] == []
        for h in hubs:
            assert h.stop() == 0
    finally:
        pub.disconnect()
        dlq.close()
        for h in hubs:
            h.stop()
