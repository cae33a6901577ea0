"""The ingest path's shortcuts (route lookup, cached tag sets, inline field formatting) against a hostile world.

Each test drives Worker.process_batch (or the worker's own MQTT hand-over on a socket pair) and reads what the
spool really holds; no services are needed, the spool is a real directory.
"""

from __future__ import annotations

import calendar
import json
import socket
import struct
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from commhub import topics
from commhub.community import Device
from commhub.config import Config, load
from commhub.wire import KIND_LAYER, DeviceKind, body_channel
from hub.ingest.mqttread import PacketReader
from hub.worker import Worker

REPO = Path(__file__).resolve().parents[1]
NOW = 1_790_000_000.0


@pytest.fixture(scope="module")
def cfg() -> Config:
    return load(REPO / "configs" / "commhub.yaml")


def _worker(cfg: Config, tmp: Path, **hub_update: Any) -> Worker:
    hub = cfg.hub.model_copy(update={"spool": cfg.hub.spool.model_copy(update={"dir": tmp / "spool"}),
                                     "metrics": cfg.hub.metrics.model_copy(update={"port": 0}), **hub_update})
    w = Worker(cfg.model_copy(update={"hub": hub}))
    w.spool.open()
    return w


def _device(cfg: Config, kind: str, n: int = 0) -> Device:
    return [d for d in cfg.community.devices if d.kind.value == kind][n]


def _msg(cfg: Config, device: Device | str, body: dict[str, Any], seq: int, ts: str = "2026-03-02T08:00:00Z",
         kind: str = "", channel: str = "") -> tuple[str, bytes]:
    """(topic, payload) with the number formatting left to json (callers patch in what json cannot write)."""
    dev_id = device if isinstance(device, str) else device.id
    kind = kind or (device.kind.value if isinstance(device, Device) else "")
    channel = channel or body_channel(body["type"])
    topic = topics.device(cfg.mqtt.root, cfg.community.site.id, kind, dev_id, channel)
    return topic, json.dumps({"schema": 1, "device_id": dev_id, "ts": ts, "seq": seq, "body": body}).encode()


def _lines(w: Worker) -> list[str]:
    return [ln for seg in w.spool.take(max_points=100_000, timeout=0) for ln in seg.path.read_text().splitlines()]


def _metric(w: Worker, name: str, **labels: str) -> float:
    return w.metrics.registry.get_sample_value(name, {"worker": w.cfg.hub.worker_id, **labels}) or 0.0


def _tag(line: str, key: str) -> str:
    return line.split(" ", 1)[0].split(f",{key}=")[1].split(",")[0]


def test_poison_values_inside_a_good_batch_are_dead_lettered_and_the_good_ones_stored(cfg: Config,
                                                                                      tmp_path: Path) -> None:
    w = _worker(cfg, tmp_path)
    gas, cam = _device(cfg, "gas"), _device(cfg, "camera")
    good = [_msg(cfg, gas, {"type": "gas_reading", "lel_pct": 1.5 + i}, i) for i in range(6)]
    obj = {"type": "camera_object", "event_id": "e1", "phase": "new", "label": "person", "score": 0.9,
           "box": {"x": 1, "y": 2, "w": 3, "h": 4}, "dwell_s": 7.25}
    t, p = _msg(cfg, cam, obj, 1)
    inf_dwell = (t, p.replace(b'"dwell_s": 7.25', b'"dwell_s": 1e999'))  # ge=0 holds for inf: refused as not finite
    t, p = _msg(cfg, cam, obj, 2)
    huge_box = (t, p.replace(b'"x": 1', b'"x": %d' % 2**70))  # a nested field past int64
    t, p = _msg(cfg, cam, obj, 3)
    nan_score = (t, p.replace(b'"score": 0.9', b'"score": NaN'))  # outside 0..1 whatever a parser makes of it
    fine = _msg(cfg, cam, obj, 4)
    batch = [good[0], good[1], inf_dwell, good[2], huge_box, good[3], nan_score, good[4], fine, good[5]]
    assert w.process_batch(batch, NOW)
    lines = _lines(w)
    points = [ln for ln in lines if not ln.startswith("hub_dead_letter,")]
    dead = [ln for ln in lines if ln.startswith("hub_dead_letter,")]
    assert [ln.split("lel_pct=")[1].split(" ")[0] for ln in points if ln.startswith("gas_reading,")] == \
        [repr(1.5 + i) for i in range(6)]
    cams = [ln for ln in points if ln.startswith("camera_object,")]
    assert len(cams) == 1 and "box_x=1i,box_y=2i,box_w=3i,box_h=4i" in cams[0] and "dwell_s=7.25" in cams[0]
    assert sorted(_tag(ln, "reason") for ln in dead) == ["schema", "schema", "unstorable"]
    assert _metric(w, "commhub_messages_unstorable_total") == 1
    assert _metric(w, "commhub_messages_in_total") == len(batch)
    # the unstorable seqs were not kept as seen: corrected resends are stored
    assert w.process_batch([_msg(cfg, cam, obj, 1), _msg(cfg, cam, obj, 2)], NOW)
    assert sorted(ln.split(" seq=")[1].split("i")[0] for ln in _lines(w) if ln.startswith("camera_object,")) == \
        ["1", "2", "4"]  # the spool still holds the first batch: nothing drains it here


def test_a_topic_that_changes_kind_gets_its_own_route_and_tags_never_the_cached_ones(cfg: Config,
                                                                                   tmp_path: Path) -> None:
    # A registered gas detector is a gas detector whatever its topic says; an unregistered device (discovery on)
    # is what its topic says, message by message: its cached tag set (layer, device_kind) must follow it.
    w = _worker(cfg, tmp_path, discovery=True)
    w.points.max_devices = 2  # the tag cache restarts under a flood of ids: still no stale entry
    gas, other = _device(cfg, "gas"), _device(cfg, "gas", 1)
    reading = {"type": "gas_reading", "lel_pct": 1.0}
    beat = {"type": "heartbeat", "uptime_s": 5.0}
    batch = [_msg(cfg, gas, reading, 1),
             _msg(cfg, gas, beat, 2, kind="water_leak"),  # a registered id under another kind: refused
             _msg(cfg, gas, reading, 3),
             _msg(cfg, "stray-1", reading, 1, kind="gas"),
             _msg(cfg, "stray-1", beat, 2, kind="water_leak"),  # the same unregistered id, now as a water sensor
             _msg(cfg, "stray-1", reading, 3, kind="gas"),  # and back, in the same batch
             _msg(cfg, other, reading, 1), _msg(cfg, "stray-2", beat, 1, kind="smoke"),
             _msg(cfg, "stray-1", beat, 4, kind="water_leak")]  # after the cache restarted
    assert w.process_batch(batch, NOW)
    lines = _lines(w)
    dead = [ln for ln in lines if ln.startswith("hub_dead_letter,")]
    assert [_tag(ln, "reason") for ln in dead] == ["kind_mismatch"]
    points = [ln for ln in lines if not ln.startswith("hub_dead_letter,")]
    kinds = [(_tag(ln, "device_id"), _tag(ln, "device_kind"), _tag(ln, "layer"), _tag(ln, "building"))
             for ln in points]
    layer = {k: KIND_LAYER[DeviceKind(k)].value for k in ("gas", "water_leak", "smoke")}
    stray = [("stray-1", k, layer[k], "_unassigned") for k in ("gas", "water_leak", "gas")]
    assert kinds == [(gas.id, "gas", gas.effective_layer.value, gas.building)] * 2 + stray + [
        (other.id, "gas", other.effective_layer.value, other.building),
        ("stray-2", "smoke", layer["smoke"], "_unassigned"),
        ("stray-1", "water_leak", layer["water_leak"], "_unassigned")]
    assert len(w.points._series) <= 2


def test_values_at_exactly_their_limits_are_stored_and_one_past_is_dead_lettered(cfg: Config,
                                                                                  tmp_path: Path) -> None:
    w = _worker(cfg, tmp_path)
    gas = _device(cfg, "gas")
    batch = [
        _msg(cfg, gas, {"type": "gas_reading", "lel_pct": 100.0}, 2**63 - 1),  # le=100, seq < 2**63
        _msg(cfg, gas, {"type": "gas_reading", "lel_pct": 0.0}, 0, ts="1970-01-01T00:00:00Z"),  # the first us
        _msg(cfg, gas, {"type": "gas_reading", "lel_pct": 1.0}, 1, ts="2262-04-10T23:59:59.999999Z"),
        _msg(cfg, gas, {"type": "gas_reading", "lel_pct": 100.00000000000001}, 2),
        _msg(cfg, gas, {"type": "gas_reading", "lel_pct": 1.0}, 2**63),
        _msg(cfg, gas, {"type": "gas_reading", "lel_pct": 1.0}, 3, ts="2262-04-11T00:00:00Z"),
        _msg(cfg, gas, {"type": "gas_reading", "lel_pct": 1.0}, 4, ts="1969-12-31T23:59:59.999999Z"),
    ]
    assert w.process_batch(batch, NOW)
    lines = _lines(w)
    points = [ln for ln in lines if ln.startswith("gas_reading,")]
    us = calendar.timegm((2026, 3, 2, 8, 0, 0)) * 10**6
    last_us = calendar.timegm((2262, 4, 10, 23, 59, 59)) * 10**6 + 999_999  # independent of the code's arithmetic
    assert [ln.split(" ", 1)[1] for ln in points] == [
        f"seq={2**63 - 1}i,historical=false,lel_pct=100.0 {us}",
        "seq=0i,historical=false,lel_pct=0.0 0",
        f"seq=1i,historical=false,lel_pct=1.0 {last_us}",
    ]
    dead = [ln for ln in lines if ln.startswith("hub_dead_letter,")]
    assert [_tag(ln, "reason") for ln in dead] == ["schema"] * 4


def test_a_duplicate_inside_one_batch_is_stored_once_and_counted(cfg: Config, tmp_path: Path) -> None:
    w = _worker(cfg, tmp_path)
    gas = _device(cfg, "gas")
    m1, m2, m3 = (_msg(cfg, gas, {"type": "gas_reading", "lel_pct": float(i)}, i) for i in (1, 2, 3))
    again = (m1[0], m1[1].replace(b'"lel_pct": 1.0', b'"lel_pct": 9.0'))  # same seq, other value: still a repeat
    assert w.process_batch([m1, m2, again, m1, m3], NOW)
    assert [ln.split("lel_pct=")[1].split(" ")[0] for ln in _lines(w)] == ["1.0", "2.0", "3.0"]
    assert _metric(w, "commhub_messages_duplicate_total") == 2
    assert _metric(w, "commhub_messages_in_total") == 5


def _publish(topic: bytes, payload: bytes, mid: int) -> bytes:
    body = struct.pack("!H", len(topic)) + topic + struct.pack("!H", mid) + b"\x00" + payload  # QoS 1, MQTT 5
    return bytes([0x32, len(body)]) + body if len(body) < 128 else bytes([0x32, len(body) & 127 | 128,
                                                                          len(body) >> 7]) + body


def test_a_topic_that_is_not_utf8_is_dead_lettered_and_acknowledged_and_the_loop_goes_on(cfg: Config,
                                                                                         tmp_path: Path) -> None:
    w = _worker(cfg, tmp_path)
    broker, mine = socket.socketpair()
    mine.setblocking(False)
    broker.settimeout(10)
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id="t", protocol=paho.MQTTv5, manual_ack=True)
    c: Any = client
    c._sock = mine
    c._state = paho._ConnectionState.MQTT_CS_CONNECTED
    client.on_message = w._on_message
    w._client = client
    reader = PacketReader(client, mine, w._on_publish)
    gas = _device(cfg, "gas")
    good_topic, good = _msg(cfg, gas, {"type": "gas_reading", "lel_pct": 3.0}, 1)
    bad_topic = good_topic.encode().replace(gas.id.encode(), b"gas-\xff\xfe")
    broker.sendall(_publish(bad_topic, good, 7) + _publish(good_topic.encode(), good, 8))
    while not reader.read():
        pass
    w._flush()
    lines = _lines(w)
    assert [_tag(ln, "reason") for ln in lines if ln.startswith("hub_dead_letter,")] == ["topic"]
    assert len([ln for ln in lines if ln.startswith("gas_reading,")]) == 1
    assert _metric(w, "commhub_messages_invalid_total", reason="topic") == 1
    # Both acknowledged, after the dead letter went out (a QoS 1 PUBLISH to the dead-letter topic).
    sent = b""
    while not sent.endswith(b"\x40\x02\x00\x08"):
        sent += broker.recv(65536)
    assert sent[0] == 0x32 and topics.dead_letter(cfg.mqtt.root).encode() in sent
    assert sent.endswith(b"\x40\x02\x00\x07\x40\x02\x00\x08")
    broker.close()
    mine.close()
