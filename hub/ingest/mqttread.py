"""The hub worker's MQTT reader: PUBLISH packets parsed from a buffer here, every other packet handed to paho.

paho reads a packet with at least three recv() calls (command byte, each length byte, the rest) and builds an
MQTTMessage, a Properties object and a topic match per message: in `bench ingest` a raw paho subscriber spends
more CPU per message than the hub's whole in-process path. This reader takes what the socket holds in one
recv(), cuts it into packets, and hands QoS 0/1 PUBLISHes straight to the worker as (topic, payload, mid, qos).
Anything else (CONNACK, SUBACK, PINGRESP, PUBACK of our own publishes, DISCONNECT, a QoS 2 PUBLISH, a topic
alias, a topic that is not UTF-8) goes to paho's own packet handler, so the session logic stays paho's.

It uses paho's private `_in_packet`, `_packet_handle`, `_loop_rc_handle` and `_last_bytes_received` (paho is
pinned exactly; tests/test_mqttread.py fails if they change). Plain TCP sockets only: TLS keeps paho's reader.
"""

from __future__ import annotations

import contextlib
import logging
import socket
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.exception import MalformedPacket

log = logging.getLogger(__name__)

_CHUNK = 256 * 1024
_PUBLISH = 0x30
_TOPIC_ALIAS = 0x23
_INCOMPLETE, _TOO_LONG = -1, -2
OnPublish = Callable[[str, bytes, int, int], None]  # (topic, payload, mid, qos)


def _varint(buf: bytes, i: int, end: int) -> tuple[int, int]:
    """(index after it, value) of the MQTT variable byte integer at i; index _INCOMPLETE or _TOO_LONG else."""
    value = 0
    for k in range(4):
        if i + k >= end:
            return _INCOMPLETE, 0
        b = buf[i + k]
        value |= (b & 127) << (7 * k)
        if not b & 128:
            return i + k + 1, value
    return _TOO_LONG, 0


class PacketReader:
    """Reads one connection's packets; make a new one for each connection (it keeps a partial packet)."""

    def __init__(self, client: paho.Client, sock: socket.socket, on_publish: OnPublish) -> None:
        self.client = client
        self.sock = sock
        self.on_publish = on_publish
        self.v5 = client.protocol == paho.MQTTv5
        self._buf = bytearray()  # the start of a packet the last recv() cut off
        self._need = 0  # that packet's whole length, when known

    def read(self) -> bool:
        """One recv() and every whole packet in the buffer; True when the socket had nothing more for now."""
        try:
            data = self.sock.recv(_CHUNK)
        except BlockingIOError:
            return True
        except OSError:
            data = b""
        if not data:
            self._lost()
            return True
        got = len(data)
        # Packets are cut from immutable bytes, so a payload is one slice (one copy). A packet cut off by the last
        # recv() grows in a bytearray until it is whole (a large snapshot takes many recv()s), then is joined.
        if self._buf:
            self._buf += data
            if len(self._buf) < self._need:
                self.client._last_bytes_received = paho.time_func()
                return got < _CHUNK
            data = bytes(self._buf)
        buf = data
        n = len(buf)
        pos = 0
        self._need = 0
        on_publish = self.on_publish
        while n - pos >= 2:
            cmd = buf[pos]
            length = buf[pos + 1]
            if length < 128:  # a packet under 128 bytes: its length is one byte
                body_at = pos + 2
            elif n - pos > 2 and buf[pos + 2] < 128:  # under 16 kB: two bytes (most of a community's messages)
                length = (length & 127) | (buf[pos + 2] << 7)
                body_at = pos + 3
            else:
                body_at, length = _varint(buf, pos + 1, n)
            if body_at < 0:
                if body_at == _TOO_LONG:
                    self._protocol_error("a remaining length longer than 4 bytes")
                    return True
                break  # the length itself is not all here yet
            end = body_at + length
            if end > n:
                self._need = end - pos
                break
            handled = cmd & 0xF0 == _PUBLISH and self._publish(cmd, buf, body_at, end, on_publish)
            if not handled and not self._to_paho(cmd, buf, pos + 1, body_at, end):
                return True  # the connection is gone, and this reader with it
            pos = end
        self._buf = bytearray(buf[pos:])
        self.client._last_bytes_received = paho.time_func()  # paho's keepalive counts any byte received
        return got < _CHUNK

    def _publish(self, cmd: int, buf: bytes, i: int, end: int, on_publish: OnPublish) -> bool:
        """Handle a QoS 0/1 PUBLISH with a plain topic; False leaves the packet to paho."""
        qos = (cmd >> 1) & 3
        if qos == 2 or end - i < 2:
            return False
        tlen = (buf[i] << 8) | buf[i + 1]
        j = i + 2 + tlen
        if tlen == 0 or j > end:
            return False
        try:
            topic = buf[i + 2:j].decode()
        except UnicodeDecodeError:
            return False
        mid = 0
        if qos:
            if j + 2 > end:
                return False
            mid = (buf[j] << 8) | buf[j + 1]
            j += 2
        if self.v5:
            if j < end and buf[j] == 0:  # no properties, as nearly always: skip _varint
                j += 1
                plen = 0
            else:
                j, plen = _varint(buf, j, end)
                if j < 0:
                    return False
            if plen:
                if j + plen > end or self._has_alias(buf, j, j + plen):
                    return False
                j += plen
        on_publish(topic, buf[j:end], mid, qos)
        return True

    @staticmethod
    def _has_alias(buf: bytes, j: int, end: int) -> bool:
        # A topic alias changes what the topic is; paho resolves those (we never ask for them, so rare).
        return _TOPIC_ALIAS in buf[j:end]

    def _to_paho(self, cmd: int, buf: bytes, len_at: int, body_at: int, end: int) -> bool:
        """Let paho handle one whole packet as if it had read it itself; False when the connection is gone."""
        c: Any = self.client
        remaining = end - body_at
        c._in_packet = {"command": cmd, "have_remaining": 1, "remaining_count": list(buf[len_at:body_at]),
                        "remaining_mult": 1, "remaining_length": remaining, "packet": bytearray(buf[body_at:end]),
                        "to_process": 0, "pos": 0}
        try:
            rc = c._packet_handle()
        except MalformedPacket as e:
            log.warning("malformed packet from the broker: %s", e)
            rc = paho.MQTT_ERR_PROTOCOL
        finally:
            c._in_packet = {"command": 0, "have_remaining": 0, "remaining_count": [], "remaining_mult": 1,
                            "remaining_length": 0, "packet": bytearray(b""), "to_process": 0, "pos": 0}
        if rc > 0:
            c._loop_rc_handle(rc)
            return False
        return c.socket() is self.sock

    def _protocol_error(self, what: str) -> None:
        log.warning("protocol error from the broker (%s): dropping the connection", what)
        self._buf.clear()
        self.client._loop_rc_handle(paho.MQTT_ERR_PROTOCOL)

    def _lost(self) -> None:
        """The peer closed or reset the connection: paho's own read sees it and runs its disconnect path."""
        self._buf.clear()
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.client.loop_read()
