"""Modbus TCP adapter: polls holding registers of one server per a register map and emits facility bodies.

Hydrant-pressure transmitters, fire panels and pump-room PLCs commonly speak Modbus. Each configured point is
decoded (uint16, int16, uint32, int32, float32, bool) and scaled: value = raw * scale + offset. When the server
stays unreachable for `fail_after` polls, every device on it gets a `tamper` (signal_lost) event and its
heartbeats stop, so the hub sees the loss; the recovery clears the tamper. An unexpected error in a poll (a
bug, an odd answer) counts as a failed poll: the poller keeps running, backs off, and counts it in `errors`.
"""

from __future__ import annotations

import logging
import struct
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from pymodbus.client import ModbusTcpClient
from pymodbus.exceptions import ModbusException

from commhub.agent_config import ModbusPoint, ModbusServer
from commhub.wire import DeviceKind, Tamper
from edge_agents.base.adapter import Emit
from edge_agents.base.backoff import Backoff
from edge_agents.facility.bodies import Reporter

log = logging.getLogger(__name__)

_WIDTH = {"uint16": 1, "int16": 1, "bool": 1, "uint32": 2, "int32": 2, "float32": 2}
_MAX_BACKOFF_S = 60.0  # longest pause between polls after unexpected errors
_MAX_REGS = 125  # per Read Holding Registers request (Modbus spec)


def decode(point: ModbusPoint, regs: list[int]) -> float:
    """A point's scaled value from its registers."""
    if point.type in ("uint16", "bool"):
        raw: float = regs[0]
        if point.type == "bool":
            return 1.0 if raw else 0.0
    elif point.type == "int16":
        raw = struct.unpack(">h", struct.pack(">H", regs[0]))[0]
    else:
        words = regs[:2] if point.word_order == "big" else regs[1::-1]
        data = struct.pack(">HH", *words)
        raw = struct.unpack({"uint32": ">I", "int32": ">i", "float32": ">f"}[point.type], data)[0]
    # Rounded so that 12 * 0.1 stores as 1.2, not 1.2000000000000002; no transmitter resolves 1e-9.
    return round(raw * point.scale + point.offset, 9)


def blocks(points: Iterable[ModbusPoint], max_gap: int = 8) -> list[tuple[int, int]]:
    """(start, count) reads covering every point; near neighbours share one request."""
    spans = sorted((p.address, p.address + _WIDTH[p.type]) for p in points)
    out: list[tuple[int, int]] = []
    for start, end in spans:
        if out:
            s, c = out[-1]
            if start <= s + c + max_gap and max(end, s + c) - s <= _MAX_REGS:
                out[-1] = (s, max(end, s + c) - s)
                continue
        out.append((start, end - start))
    return out


class ModbusAdapter:
    """Polls one Modbus TCP server every poll_s."""

    def __init__(self, server: ModbusServer, devices: Mapping[str, tuple[DeviceKind, float]],
                 on_reachable: Callable[[str, bool], None] | None = None, fail_after: int = 3) -> None:
        self.server = server
        self.devices = dict(devices)
        self.on_reachable = on_reachable
        self.fail_after = fail_after
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._client: ModbusTcpClient | None = None
        self._reporters = {m.device: Reporter(*self.devices[m.device]) for m in server.devices}
        self._blocks = blocks(p for m in server.devices for p in m.fields.values())
        self.failures = 0  # consecutive failed polls
        self.reachable = True
        self.polls = 0
        self.errors = 0  # polls that failed with an unexpected error (the poller retried with backoff)

    def start(self, emit: Emit) -> None:
        """Start polling in a thread."""
        self._stop.clear()
        self._client = ModbusTcpClient(self.server.host, port=self.server.port, timeout=self.server.timeout_s,
                                       retries=0, reconnect_delay=0)
        self._thread = threading.Thread(target=self._run, args=(emit,), name=f"modbus-{self.server.name}",
                                        daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop polling and close the connection."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(self.server.timeout_s + 5)
            self._thread = None
        if self._client is not None:
            self._client.close()
            self._client = None

    def _run(self, emit: Emit) -> None:
        backoff = Backoff(self.server.poll_s, max(self.server.poll_s, _MAX_BACKOFF_S), jitter=0.2)
        try:
            while not self._stop.is_set():
                started = time.monotonic()
                delay = self.server.poll_s
                try:
                    self.poll_once(emit)
                    backoff.reset()
                except RuntimeError:
                    if self._stop.is_set():
                        return  # the agent is stopping
                    delay = self._crashed(emit, backoff)
                except Exception:
                    delay = self._crashed(emit, backoff)
                self._stop.wait(max(0.0, delay - (time.monotonic() - started)))
        finally:
            if not self._stop.is_set():
                # The poller is gone for good (nothing above should let this happen): the devices must not
                # go on looking alive through heartbeats nobody backs.
                log.error("modbus %s: poller thread ended unexpectedly; its devices are marked unreachable",
                          self.server.name)
                self.reachable = False
                for dmap in self.server.devices:
                    if self.on_reachable is not None:
                        self.on_reachable(dmap.device, False)

    def _crashed(self, emit: Emit, backoff: Backoff) -> float:
        """An unexpected error in a poll: count it as a failed poll, reconnect, and retry after a backoff."""
        self.errors += 1
        # The first error with its traceback, then one line each, so a persistent fault does not flood the log.
        log.error("modbus %s: poll failed unexpectedly (%d so far); retrying with backoff", self.server.name,
                  self.errors, exc_info=self.errors == 1)
        if self._client is not None:
            self._client.close()
        self._poll_failed(emit)
        return backoff.next()

    def _read(self) -> dict[int, int] | None:
        client = self._client
        assert client is not None
        if not client.connected and not client.connect():
            return None
        regs: dict[int, int] = {}
        try:
            for start, count in self._blocks:
                rr = client.read_holding_registers(start, count=count, device_id=self.server.unit)
                if rr.isError():
                    log.warning("modbus %s: read %d+%d refused: %s", self.server.name, start, count, rr)
                    return None
                regs.update(zip(range(start, start + count), rr.registers, strict=False))
        except (ModbusException, OSError) as e:
            log.warning("modbus %s: %s", self.server.name, e)
            client.close()
            return None
        return regs

    def poll_once(self, emit: Emit) -> int:
        """Read every block once and emit what the reporters want sent; returns the number emitted."""
        self.polls += 1
        regs = self._read()
        if regs is None:
            self._poll_failed(emit)
            return 0
        readings = []
        for dmap in self.server.devices:
            values: dict[str, Any] = dict(dmap.constants)
            for name, point in dmap.fields.items():
                width = _WIDTH[point.type]
                values[name] = decode(point, [regs[a] for a in range(point.address, point.address + width)])
            readings.append((dmap, values))
        # Only a poll that got every value through counts as a success (an error above is a failed poll).
        self.failures = 0
        if not self.reachable:
            self._set_reachable(True, emit)
        now = time.monotonic()
        sent = 0
        for dmap, values in readings:
            try:
                body = self._reporters[dmap.device].update(values, now)
            except ValueError as e:  # out of range for the wire model: a wrong scale or a broken sensor
                log.warning("modbus %s: device %s: reading refused: %s", self.server.name, dmap.device,
                            str(e).splitlines()[0])
                continue
            if body is not None:
                emit(dmap.device, body)
                sent += 1
        return sent

    def _poll_failed(self, emit: Emit) -> None:
        self.failures += 1
        if self.reachable and self.failures >= self.fail_after:
            self._set_reachable(False, emit)

    def _set_reachable(self, reachable: bool, emit: Emit) -> None:
        self.reachable = reachable
        log.warning("modbus %s at %s:%d is %s", self.server.name, self.server.host, self.server.port,
                    "reachable again" if reachable else "unreachable")
        for dmap in self.server.devices:
            if self.on_reachable is not None:
                self.on_reachable(dmap.device, reachable)
            emit(dmap.device, Tamper(kind="signal_lost", active=not reachable))
