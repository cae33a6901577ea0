"""Publishing on the device topics for people: patrol check-ins and residents' reports take the hub's normal path."""

from __future__ import annotations

import logging
import os
import threading
import time

from paho.mqtt.client import MQTTMessageInfo

from commhub.config import MqttConfig
from commhub.mqtt import connect, make_client
from commhub.wire import Envelope

log = logging.getLogger(__name__)


class Publisher:
    """One MQTT connection per API process; publish() waits for the broker's PUBACK (QoS 1)."""

    def __init__(self, cfg: MqttConfig, client_id: str, ack_timeout_s: float = 10.0) -> None:
        self.cfg = cfg
        self.client_id = client_id
        self.ack_timeout_s = ack_timeout_s
        self._client = make_client(client_id, cfg)
        self._lock = threading.Lock()
        self._last_seq: dict[str, int] = {}
        self._started = False

    def start(self) -> None:
        """Connect in the background (the API serves while the broker is away; publish() then reports it)."""
        connect(self._client, self.cfg, asynchronous=True)
        self._client.loop_start()
        self._started = True

    def stop(self) -> None:
        """Disconnect."""
        if self._started:
            self._client.disconnect()
            self._client.loop_stop()
            self._started = False

    def next_seq(self, device_id: str) -> int:
        """A seq above every earlier one of this device from this process: the clock in microseconds."""
        with self._lock:
            seq = max(time.time_ns() // 1000 + os.getpid() % 1000, self._last_seq.get(device_id, 0) + 1)
            self._last_seq[device_id] = seq
            return seq

    def publish(self, topic: str, env: Envelope) -> bool:
        """Send at QoS 1; True once the broker acknowledged it, False when it did not within the timeout."""
        if not self._started or not self._client.is_connected():
            return False
        info: MQTTMessageInfo = self._client.publish(topic, env.to_json(), qos=1)
        try:
            info.wait_for_publish(self.ack_timeout_s)
        except (RuntimeError, ValueError):
            return False
        return info.is_published()
