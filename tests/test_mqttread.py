"""hub.ingest.mqttread: the worker's buffered MQTT reader against paho's own handling, on a real socket pair."""

from __future__ import annotations

import random
import socket
import struct
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.properties import Properties

from hub.ingest.mqttread import PacketReader


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b, n = n & 127, n >> 7
        out.append(b | (128 if n else 0))
        if not n:
            return bytes(out)


def _publish(topic: bytes, payload: bytes, mid: int, qos: int, props: bytes = b"") -> bytes:
    body = struct.pack("!H", len(topic)) + topic + (struct.pack("!H", mid) if qos else b"")
    body += _varint(len(props)) + props + payload
    return bytes([0x30 | qos << 1]) + _varint(len(body)) + body


class _Pair:
    """A paho client whose socket is one end of a socket pair; the test writes the broker's side."""

    def __init__(self) -> None:
        self.broker, mine = socket.socketpair()
        mine.setblocking(False)
        self.broker.settimeout(10)
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id="t", protocol=paho.MQTTv5,
                                  manual_ack=True)
        c: Any = self.client
        c._sock = mine
        c._state = paho._ConnectionState.MQTT_CS_CONNECTED  # as after a CONNACK
        self.got: list[tuple[str, bytes, int, int, str]] = []
        self.disconnected: list[Any] = []
        self.client.on_message = lambda _c, _u, m: self.got.append((m.topic, bytes(m.payload), m.mid, m.qos, "paho"))
        self.client.on_disconnect = lambda *a: self.disconnected.append(a)
        self.reader = PacketReader(self.client, mine, lambda t, p, mid, q: self.got.append((t, p, mid, q, "ours")))

    def feed(self, data: bytes, piece: int | None = None) -> None:
        """Send data in pieces (all at once by default), reading after each piece until the socket is empty."""
        step = piece or len(data)
        for i in range(0, len(data), step):
            chunk = memoryview(data[i:i + step])
            while chunk:
                sent = self.broker.send(chunk)  # no more than the pair's buffer takes: read in between
                chunk = chunk[sent:]
                while not self.reader.read():
                    pass


def test_publishes_cut_anywhere_arrive_whole_in_order_and_the_unusual_ones_go_to_paho() -> None:
    rnd = random.Random(7)
    alias = Properties(paho.PacketTypes.PUBLISH)
    alias.UserProperty = ("k#", "v")  # a property block holding the byte 0x23: left to paho (conservative)
    expected: list[tuple[str, bytes, int, int, str]] = []
    stream = bytearray()
    for i in range(300):
        topic = f"commhub/v1/s1/gas/gas-{i % 7}/tele"
        payload = bytes(rnd.randrange(256) for _ in range(rnd.randrange(0, 400)))
        qos = i % 2
        mid = i + 1 if qos else 0
        if i % 50 == 25:
            stream += _publish(topic.encode(), payload, mid, qos, alias.pack()[1:])
            expected.append((topic, payload, mid, qos, "paho"))
        else:
            stream += _publish(topic.encode(), payload, mid, qos)
            expected.append((topic, payload, mid, qos, "ours"))
    big = b"x" * 300_000  # longer than one recv(): a 3-byte remaining length, read over several calls
    stream += _publish(b"commhub/v1/s1/camera/cam-1/snap", big, 999, 1)
    expected.append(("commhub/v1/s1/camera/cam-1/snap", big, 999, 1, "ours"))
    p = _Pair()
    p.feed(bytes(stream[:5000]), piece=1)  # byte by byte: every cut inside a header, a length, a topic
    p.feed(bytes(stream[5000:20000]), piece=7)
    p.feed(bytes(stream[20000:]))
    assert p.got == expected
    assert p.client.socket() is not None and not p.disconnected


def test_other_packets_are_paho_s_a_qos2_publish_included() -> None:
    p = _Pair()
    c: Any = p.client
    c._ping_t = 123.0  # a PINGREQ is outstanding
    p.feed(b"\xd0\x00")  # PINGRESP
    assert c._ping_t == 0, "paho handled the PINGRESP"
    p.feed(_publish(b"commhub/v1/s1/panic_button/pb-1/evt", b"{}", 42, 2))
    p.client.loop_write()
    assert p.broker.recv(16) == b"\x50\x02\x00\x2a", "paho answered the QoS 2 PUBLISH with its PUBREC"
    p.feed(b"\x62\x02\x00\x2a")  # PUBREL: paho hands the message on
    assert p.got == [("commhub/v1/s1/panic_button/pb-1/evt", b"{}", 42, 2, "paho")]


def test_a_closed_connection_and_a_malformed_length_run_paho_s_disconnect() -> None:
    p = _Pair()
    p.feed(_publish(b"a/b", b"1", 1, 1) + _publish(b"a/b", b"2", 2, 1)[:4])  # the second cut short
    p.broker.close()
    assert p.reader.read()
    assert [g[1] for g in p.got] == [b"1"] and p.client.socket() is None and len(p.disconnected) == 1
    q = _Pair()
    q.feed(b"\x32\xff\xff\xff\xff\x01")  # a remaining length of five bytes: not MQTT
    assert q.client.socket() is None and len(q.disconnected) == 1 and not q.got
