"""Test helpers for the edge agents: a recording MQTT subscriber that survives broker restarts, agent factories."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho

from commhub import mqtt as mq
from commhub.agent_config import AgentSettings
from commhub.config import MqttConfig
from commhub.topics import parse
from commhub.wire import DeviceState, Envelope, parse_envelope
from edge_agents.base import BaseAgent


@dataclass(frozen=True)
class Received:
    """One message as the subscriber saw it."""

    topic: str
    payload: bytes
    retain: bool

    @property
    def envelope(self) -> Envelope:
        """The payload parsed as a wire envelope."""
        return parse_envelope(self.payload)

    @property
    def state(self) -> DeviceState:
        """The body of a state message."""
        body = self.envelope.body
        assert isinstance(body, DeviceState), f"not a state message: {self.topic}"
        return body

    @property
    def channel(self) -> str:
        """The topic's channel."""
        return parse(self.topic).channel.value


class Collector:
    """Subscribes with a persistent QoS 1 session (so a broker restart loses nothing it queued) and records."""

    def __init__(self, port: int, topic_filter: str = "commhub/#") -> None:
        self.cfg = MqttConfig(port=port)
        self.filter = topic_filter
        self.messages: list[Received] = []
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        self.client = mq.make_client("collector-" + uuid.uuid4().hex[:8], self.cfg)

    def start(self) -> Collector:
        """Connect, subscribe and wait until the subscription is in place."""
        def on_connect(c: paho.Client, _u: Any, _f: Any, rc: Any, _p: Any) -> None:
            c.subscribe(self.filter, qos=1)

        def on_subscribe(*_a: Any) -> None:
            self._subscribed.set()

        def on_message(_c: paho.Client, _u: Any, m: paho.MQTTMessage) -> None:
            with self._lock:
                self.messages.append(Received(m.topic, bytes(m.payload), bool(m.retain)))

        self.client.on_connect = on_connect
        self.client.on_subscribe = on_subscribe
        self.client.on_message = on_message
        self.client.reconnect_delay_set(1, 1)
        mq.connect(self.client, self.cfg, clean_start=False, session_expiry_s=3600)
        self.client.loop_start()
        assert self._subscribed.wait(10), "collector did not subscribe"
        return self

    def stop(self) -> None:
        """Disconnect."""
        self.client.disconnect()
        self.client.loop_stop()

    def snapshot(self) -> list[Received]:
        """Everything so far."""
        with self._lock:
            return list(self.messages)

    def envelopes(self, device_id: str, channels: tuple[str, ...] = ("evt", "tele")) -> list[Envelope]:
        """Parsed envelopes of one device on the given channels, in arrival order."""
        out = []
        for m in self.snapshot():
            if m.channel in channels and parse(m.topic).device_id == device_id:
                out.append(m.envelope)
        return out

    def wait_for(self, predicate: Callable[[list[Received]], bool], timeout: float = 20.0) -> bool:
        """Poll until predicate(messages) is true."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate(self.snapshot()):
                return True
            time.sleep(0.05)
        return predicate(self.snapshot())


def fast_settings(**kw: Any) -> AgentSettings:
    """Agent settings for tests: quick reconnects and a short stop."""
    base: dict[str, Any] = {"backoff_initial_s": 0.05, "backoff_max_s": 0.3, "stop_timeout_s": 2.0,
                            "commit_interval_ms": 5.0, "spool_fsync": False, "heartbeats": False}
    base.update(kw)
    return AgentSettings(**base)


def make_agent(port: int, site: str, state_dir: Path, name: str = "testagent", **settings: Any) -> BaseAgent:
    """A BaseAgent on the loopback broker at `port` (not yet started)."""
    return BaseAgent(MqttConfig(port=port), site, name, state_dir, fast_settings(**settings))


def first_occurrences(seqs: list[int]) -> list[int]:
    """The seqs in order of first arrival (QoS 1 and replays may repeat some)."""
    seen: set[int] = set()
    out = []
    for s in seqs:
        if s not in seen:
            seen.add(s)
            out.append(s)
    return out


def wait_until(predicate: Callable[[], bool], timeout: float = 10.0) -> bool:
    """Poll a condition."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return predicate()
