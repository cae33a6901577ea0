"""Test helpers for the edge agents: a recording MQTT subscriber that survives broker restarts, agent factories."""

from __future__ import annotations

import contextlib
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
from commhub.community import Community, Device, Grid, Site
from commhub.config import Config, MqttConfig
from commhub.topics import parse
from commhub.wire import DeviceKind, DeviceState, Envelope, parse_envelope
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


def make_config(port: int, site: str, devices: list[tuple[str, DeviceKind]], state_dir: Path,
                **agent: Any) -> Config:
    """A config tree with a one-grid community holding `devices` and fast agent settings."""
    community = Community(site=Site(id=site), grids=(Grid(id="g1"),),
                          devices=tuple(Device(id=d, kind=k, grid="g1", interval_s=60) for d, k in devices))
    return Config(mqtt=MqttConfig(port=port), community=community,
                  agent=fast_settings(state_dir=state_dir, **agent))


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


def wait_until(predicate: Callable[[], bool], timeout: float = 60.0) -> bool:
    """Poll a condition."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return predicate()


class ModbusTestServer:
    """pymodbus's own TCP server (unit 1, holding registers 0..199) in a thread, stoppable and restartable."""

    def __init__(self, port: int) -> None:
        self.port = port
        self._loop: Any = None
        self._server: Any = None
        self._thread: threading.Thread | None = None

    def start(self) -> ModbusTestServer:
        """Serve until stop(); registers start at 0."""
        import asyncio

        from pymodbus.server import ModbusTcpServer
        from pymodbus.simulator import DataType, SimData, SimDevice

        device = SimDevice(id=1, simdata=[SimData(address=0, count=200, values=0, datatype=DataType.REGISTERS)])
        ready = threading.Event()
        self._loop = asyncio.new_event_loop()

        def run() -> None:
            asyncio.set_event_loop(self._loop)

            async def main() -> None:
                self._server = ModbusTcpServer(device, address=("127.0.0.1", self.port))
                ready.set()
                await self._server.serve_forever()

            self._loop.run_until_complete(main())

        self._thread = threading.Thread(target=run, daemon=True)
        self._thread.start()
        assert ready.wait(10)
        assert wait_until(self._listening, 60), "modbus server did not listen"
        return self

    def _listening(self) -> bool:
        import socket
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                return True
        except OSError:
            return False

    def write(self, address: int, values: list[int]) -> None:
        """Set holding registers through the protocol, as an engineering tool would."""
        from pymodbus.client import ModbusTcpClient
        client = ModbusTcpClient("127.0.0.1", port=self.port, timeout=2, retries=0)
        assert client.connect()
        try:
            rr = client.write_registers(address, values, device_id=1)
            assert not rr.isError(), rr
        finally:
            client.close()

    def stop(self) -> None:
        """Shut the server down (connections are dropped)."""
        import asyncio
        if self._server is not None:
            asyncio.run_coroutine_threadsafe(self._server.shutdown(), self._loop).result(10)
            self._server = None
        if self._thread is not None:
            self._thread.join(10)
            self._thread = None


class TcpProxy:
    """A loopback TCP relay to a broker whose 'network' a test can black-hole (packets vanish) and restore."""

    def __init__(self, target_port: int) -> None:
        import socket
        self.target_port = target_port
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._listener.getsockname()[1])
        self._forwarding = threading.Event()
        self._forwarding.set()
        self._closed = threading.Event()
        self._conns: list[Any] = []
        self._lock = threading.Lock()

    def start(self) -> TcpProxy:
        """Accept and relay in background threads."""
        threading.Thread(target=self._accept, daemon=True).start()
        return self

    def blackhole(self) -> None:
        """Stop relaying and refuse new connections, but keep sockets open: like a pulled cable upstream."""
        self._forwarding.clear()

    def restore(self) -> None:
        """Close the dead connections (as their TCP would time out) and relay again."""
        with self._lock:
            conns, self._conns = self._conns, []
        for s in conns:
            with contextlib.suppress(OSError):
                s.close()
        self._forwarding.set()

    def close(self) -> None:
        """Stop everything."""
        self._closed.set()
        self._forwarding.set()
        with contextlib.suppress(OSError):
            self._listener.close()
        self.restore()

    def _accept(self) -> None:
        import socket
        while not self._closed.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            if not self._forwarding.is_set():
                client.close()  # no route: the connect fails
                continue
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port), timeout=2)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._conns += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    def _pipe(self, src: Any, dst: Any) -> None:
        while True:
            try:
                data = src.recv(65536)
            except OSError:
                break
            if not data:
                break
            if not self._forwarding.is_set():
                continue  # black-holed: the bytes are lost
            try:
                dst.sendall(data)
            except OSError:
                break
        for s in (src, dst):
            with contextlib.suppress(OSError):
                s.close()
