"""The Modbus poller under unexpected errors, against pymodbus's real TCP server: it never dies quietly.

A poll that fails with an error nobody planned for (injected into the decoder) counts as a failed poll: the
devices lose their liveness and get signal_lost, the poller backs off and counts the errors, and it recovers
by itself. If the thread ends anyway, it takes its devices' liveness with it.
"""

from __future__ import annotations

import threading
import time
from datetime import datetime
from typing import Any

import pytest
from agent_helpers import ModbusTestServer

from commhub.agent_config import ModbusDeviceMap, ModbusPoint, ModbusServer
from commhub.ports import free_port
from commhub.wire import DeviceKind, HydrantPressure, Tamper
from edge_agents.facility import modbus
from edge_agents.facility.modbus import ModbusAdapter

WAIT_S = 30.0  # generous: the machine is shared and loaded


class Recorder:
    """Stands in for the base agent: what was emitted and the liveness it was told."""

    def __init__(self) -> None:
        self.bodies: list[tuple[str, Any]] = []
        self.reachable: dict[str, bool] = {}
        self.lock = threading.Lock()

    def __call__(self, device_id: str, body: Any, *, ts: datetime | None = None) -> int:
        with self.lock:
            self.bodies.append((device_id, body))
            return len(self.bodies)

    def set_reachable(self, device_id: str, reachable: bool) -> None:
        self.reachable[device_id] = reachable

    def tampers(self, device_id: str) -> list[bool]:
        with self.lock:
            return [b.active for d, b in self.bodies if d == device_id and isinstance(b, Tamper)]


def _wait(cond: Any, what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while not cond():
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


@pytest.fixture
def server() -> Any:
    srv = ModbusTestServer(free_port()).start()
    srv.write(0, [300, 120])
    yield srv
    srv.stop()


def _adapter(port: int) -> tuple[ModbusAdapter, Recorder]:
    cfg = ModbusServer(name="pumproom", host="127.0.0.1", port=port, poll_s=0.1, timeout_s=0.5, devices=(
        ModbusDeviceMap(device="hyd1", fields={"pressure_mpa": ModbusPoint(address=0, scale=0.001)}),
        ModbusDeviceMap(device="hyd2", fields={"pressure_mpa": ModbusPoint(address=1, scale=0.001)})))
    rec = Recorder()
    adapter = ModbusAdapter(cfg, {"hyd1": (DeviceKind.HYDRANT, 60.0), "hyd2": (DeviceKind.HYDRANT, 60.0)},
                            on_reachable=rec.set_reachable)
    adapter.start(rec)
    return adapter, rec


def test_unexpected_poll_errors_take_liveness_and_the_poller_recovers(server: Any,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    adapter, rec = _adapter(server.port)
    real_decode = modbus.decode
    broken = threading.Event()

    def decode(point: ModbusPoint, regs: list[int]) -> float:
        if broken.is_set():
            raise ZeroDivisionError("injected: a fault nobody planned for")
        return real_decode(point, regs)

    monkeypatch.setattr(modbus, "decode", decode)
    try:
        _wait(lambda: any(isinstance(b, HydrantPressure) for _, b in rec.bodies), "no reading before the fault")
        broken.set()
        _wait(lambda: rec.reachable.get("hyd1") is False and rec.reachable.get("hyd2") is False,
              "liveness kept while every poll fails")
        assert rec.tampers("hyd1") == [True] and rec.tampers("hyd2") == [True]
        assert adapter._thread is not None and adapter._thread.is_alive(), "the poller must survive the errors"
        errors = adapter.errors
        assert errors >= adapter.fail_after
        # Backoff: the poller slows down while the fault lasts (0.1 s polls would make ~10 errors a second).
        time.sleep(2.0)
        assert adapter.errors - errors <= 8
        server.write(0, [250])
        broken.clear()
        _wait(lambda: rec.reachable.get("hyd1") is True and rec.tampers("hyd1") == [True, False],
              "the poller did not recover by itself")
        _wait(lambda: (("hyd1", HydrantPressure(pressure_mpa=0.25)) in rec.bodies), "no reading after recovery")
    finally:
        adapter.stop()


# The injected SystemExit ends the thread, which pytest reports as an unhandled thread exception: expected.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_a_poller_thread_that_ends_takes_its_devices_liveness(server: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    adapter, rec = _adapter(server.port)

    def poll_once(emit: Any) -> int:
        raise SystemExit("injected: the thread ends")

    try:
        _wait(lambda: adapter.polls >= 1, "no poll")
        monkeypatch.setattr(adapter, "poll_once", poll_once)
        _wait(lambda: rec.reachable.get("hyd1") is False and rec.reachable.get("hyd2") is False,
              "a dead poller left its devices looking alive")
        assert adapter._thread is not None
        adapter._thread.join(WAIT_S)
        assert not adapter._thread.is_alive()
    finally:
        adapter.stop()
