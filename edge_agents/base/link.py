"""The agent's MQTT connection: connect, keep alive, reconnect with backoff; a fresh paho client each time.

A fresh client per connection means paho never re-sends messages of an old connection by itself: the
spool is the only source of re-sends, so the order on the wire stays the order of the spool. Each
connection gets a new session number (persisted before CONNECT), and a will carrying that number.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.reasoncodes import ReasonCode

from commhub.agent_config import AgentSettings
from commhub.config import MqttConfig
from commhub.mqtt import make_client
from edge_agents.base.backoff import Backoff
from edge_agents.base.statedir import StateDir

log = logging.getLogger(__name__)

WillFactory = Callable[[int], tuple[str, bytes]]
AckCallback = Callable[[int, int, int], None]  # (generation, mid, PUBACK reason code)


class Link:
    """One MQTT connection at a time, re-made with exponential backoff and jitter."""

    def __init__(self, mqtt: MqttConfig, client_id: str, settings: AgentSettings, state_dir: StateDir,
                 will: WillFactory, on_change: Callable[[], None], on_ack: AckCallback) -> None:
        self.mqtt = mqtt
        self.client_id = client_id
        self.settings = settings
        self.state_dir = state_dir
        self._will = will
        self._on_change = on_change
        self._on_ack = on_ack
        self._stopping = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._client: paho.Client | None = None
        self._lock = threading.Lock()
        self._with_will_on_stop = False
        self.generation = 0  # grows per established connection
        self.session = 0
        self.up = False
        self.receive_maximum = 65535
        self.connects = 0
        self.failures = 0

    def start(self) -> None:
        """Start connecting in the background; returns at once."""
        self._thread = threading.Thread(target=self._run, name=f"mqtt-{self.client_id}", daemon=True)
        self._thread.start()

    def stop(self, *, send_will: bool = False, timeout: float = 5.0) -> None:
        """Disconnect (asking the broker to publish the will when send_will) and end the thread."""
        self._with_will_on_stop = send_will
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def status(self) -> tuple[bool, int, int]:
        """(up, generation, session), read together."""
        with self._lock:
            return self.up, self.generation, self.session

    def publish(self, generation: int, topic: str, payload: bytes, retain: bool) -> int | None:
        """Queue a QoS 1 publish on connection `generation`; the mid, or None when that connection is gone."""
        with self._lock:
            client = self._client if (self.up and self.generation == generation) else None
        if client is None:
            return None
        info = client.publish(topic, payload, qos=1, retain=retain)
        if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
            return None
        return int(info.mid)

    # ---- the connection thread -------------------------------------------------------------------

    def _new_client(self, session: int, generation: int) -> tuple[paho.Client, list[Any]]:
        client = make_client(self.client_id, self.mqtt, account=self.client_id)
        # The pump keeps its own window; paho's (when > 0) rescans every queued message on each PUBACK.
        client.max_inflight_messages_set(0)
        client.connect_timeout = self.settings.connect_timeout_s
        will_topic, will_payload = self._will(session)
        client.will_set(will_topic, will_payload, qos=1, retain=True)
        connack: list[Any] = []

        def on_connect(_c: paho.Client, _u: Any, _f: Any, rc: ReasonCode, props: Any) -> None:
            connack.append((rc, props))

        def on_publish(_c: paho.Client, _u: Any, mid: int, rc: ReasonCode, _p: Any) -> None:
            self._on_ack(generation, mid, int(rc.value))

        def on_register_write(_c: paho.Client, _u: Any, _s: Any) -> None:
            # Only this thread writes to the socket: paho's _packet_write is not safe from two threads,
            # so publishes from the pump just queue the packet and wake our select() via paho's sockpair.
            return None

        client.on_connect = on_connect
        client.on_publish = on_publish
        client.on_socket_register_write = on_register_write
        return client, connack

    def _sleep(self, seconds: float) -> None:
        self._wake.wait(seconds)
        self._wake.clear()

    def _run(self) -> None:
        backoff = Backoff(self.settings.backoff_initial_s, self.settings.backoff_max_s, self.settings.backoff_jitter)
        while not self._stopping.is_set():
            session = self.state_dir.next_session()
            generation = self.generation + 1
            client, connack = self._new_client(session, generation)
            if not self._connect(client, connack):
                self.failures += 1
                self._close(client)
                delay = backoff.next()
                log.info("broker %s:%d unreachable; retrying in %.2fs", self.mqtt.host, self.mqtt.port, delay)
                self._on_change()
                self._sleep(delay)
                continue
            backoff.reset()
            props = connack[0][1]
            with self._lock:
                self._client = client
                self.session = session
                self.generation = generation
                self.receive_maximum = int(getattr(props, "ReceiveMaximum", 65535) or 65535)
                self.up = True
            self.connects += 1
            log.info("connected to %s:%d (session %d)", self.mqtt.host, self.mqtt.port, session)
            self._on_change()
            rc = MQTTErrorCode.MQTT_ERR_SUCCESS
            while not self._stopping.is_set():
                rc = client.loop(0.1)
                if rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
                    break
            with self._lock:
                self.up = False
                self._client = None
            if self._stopping.is_set():
                self._disconnect(client)
                self._on_change()
                break
            log.warning("connection to %s:%d lost (session %d): %s", self.mqtt.host, self.mqtt.port, session,
                        paho.error_string(rc))
            self._close(client)
            self._on_change()
            self._sleep(backoff.next())

    def _connect(self, client: paho.Client, connack: list[Any]) -> bool:
        try:
            client.connect(self.mqtt.host, self.mqtt.port, self.mqtt.keepalive_s, clean_start=True)
        except (OSError, ValueError) as e:
            log.debug("connect to %s:%d failed: %s", self.mqtt.host, self.mqtt.port, e)
            return False
        deadline = time.monotonic() + self.settings.connect_timeout_s
        while not connack and time.monotonic() < deadline and not self._stopping.is_set():
            if client.loop(0.05) != MQTTErrorCode.MQTT_ERR_SUCCESS:
                return False
        if not connack:
            return False
        rc = connack[0][0]
        if rc.is_failure:
            log.error("broker refused the connection: %s", rc)
            return False
        return True

    def _disconnect(self, client: paho.Client) -> None:
        # 0x04 makes the broker publish our will (agent offline) when the clean offline state did not get out.
        code = 4 if self._with_will_on_stop else 0
        client.disconnect(reasoncode=ReasonCode(PacketTypes.DISCONNECT, identifier=code))
        deadline = time.monotonic() + 1.0
        while client.want_write() and time.monotonic() < deadline:
            if client.loop(0.05) != MQTTErrorCode.MQTT_ERR_SUCCESS:
                break
        self._close(client)

    @staticmethod
    def _close(client: paho.Client) -> None:
        sock = client.socket()
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.close()
