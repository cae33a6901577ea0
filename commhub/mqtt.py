"""paho-mqtt client construction shared by the hub, the agents and the simulators."""

from __future__ import annotations

import socket
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from commhub.config import MqttConfig


def _nodelay(_client: paho.Client, _userdata: Any, sock: Any) -> None:
    # paho leaves Nagle on; at 1k msg/s that costs p50 9 ms vs 0.16 ms with TCP_NODELAY.
    if isinstance(sock, socket.socket) and sock.family in (socket.AF_INET, socket.AF_INET6):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def make_client(client_id: str, cfg: MqttConfig, *, manual_ack: bool = False) -> paho.Client:
    """An MQTT 5 client with TCP_NODELAY and the configured credentials; not yet connected."""
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=paho.MQTTv5,
                         manual_ack=manual_ack)
    if cfg.username:
        client.username_pw_set(cfg.username, cfg.password)
    client.on_socket_open = _nodelay
    # No paho in-flight cap: with one, paho 2.2 rescans every queued message on each ack (~115 µs at 1,000).
    client.max_inflight_messages_set(0)
    client.max_queued_messages_set(0)
    return client


def connect_properties(*, session_expiry_s: int = 0, receive_maximum: int | None = None) -> Properties:
    """CONNECT properties: session expiry (a persistent session when > 0) and receive maximum."""
    props = Properties(PacketTypes.CONNECT)
    if session_expiry_s:
        props.SessionExpiryInterval = session_expiry_s
    if receive_maximum:
        props.ReceiveMaximum = receive_maximum
    return props


def connect(client: paho.Client, cfg: MqttConfig, *, clean_start: bool = True, session_expiry_s: int = 0,
            receive_maximum: int | None = None, asynchronous: bool = False) -> None:
    """Connect (or start connecting, when asynchronous) to the configured broker."""
    props = connect_properties(session_expiry_s=session_expiry_s, receive_maximum=receive_maximum)
    if asynchronous:
        client.connect_async(cfg.host, cfg.port, cfg.keepalive_s, clean_start=clean_start, properties=props)
    else:
        client.connect(cfg.host, cfg.port, cfg.keepalive_s, clean_start=clean_start, properties=props)
