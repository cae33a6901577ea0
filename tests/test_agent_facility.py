"""Facility agent: report rules, register decoding, the Modbus adapter against pymodbus's server, the simulator."""

from __future__ import annotations

import struct
import time
from pathlib import Path

import pytest
from agent_helpers import Collector, ModbusTestServer, make_config

from commhub.agent_config import ModbusDeviceMap, ModbusPoint, ModbusServer
from commhub.config import ConfigError
from commhub.ports import free_port
from commhub.services import Mosquitto
from commhub.wire import (
    KIND_BODIES,
    ChargerReading,
    DeviceKind,
    ElevatorEbike,
    GasReading,
    HydrantPressure,
    SmokeState,
    Tamper,
)
from edge_agents.facility.agent import FacilityAgent
from edge_agents.facility.bodies import FACILITY_KINDS, Reporter, build_body
from edge_agents.facility.modbus import blocks, decode

# ---- pure logic ------------------------------------------------------------------------------------


def test_reading_reports_at_interval_or_on_a_jump() -> None:
    r = Reporter(DeviceKind.GAS, interval_s=60)
    assert r.update({"lel_pct": 1.0}, 0.0) == GasReading(lel_pct=1.0), "first value is always sent"
    assert r.update({"lel_pct": 1.5}, 10.0) is None, "small change inside the interval: not sent"
    assert r.update({"lel_pct": 22.0}, 20.0) == GasReading(lel_pct=22.0), "jump >= 5 %LEL: sent at once"
    assert r.update({"lel_pct": 22.1}, 50.0) is None
    assert r.update({"lel_pct": 22.1}, 80.0) is not None, "interval elapsed"


def test_state_reports_on_change_and_edge_on_press() -> None:
    smoke = Reporter(DeviceKind.SMOKE, 3600)
    assert smoke.update({"alarm": False, "obscuration_pct_m": 0.1}, 0) is not None
    assert smoke.update({"alarm": False, "obscuration_pct_m": 0.3}, 1) is None
    assert smoke.update({"alarm": True, "obscuration_pct_m": 9.0}, 2) == SmokeState(alarm=True, obscuration_pct_m=9.0)
    lift = Reporter(DeviceKind.ELEVATOR, 3600)
    assert lift.update({"floor": 5, "detected": False, "source": "rfid"}, 0) is not None
    assert lift.update({"floor": 7, "detected": False, "source": "rfid"}, 1) is None, "the car moving is no news"
    assert lift.update({"floor": 0, "detected": True, "source": "rfid"}, 2) == ElevatorEbike(
        floor=0, detected=True, source="rfid")
    assert lift.update({"floor": -1, "detected": True, "source": "rfid"}, 3) is not None, "e-bike moves floors"
    panic = Reporter(DeviceKind.PANIC_BUTTON, 3600)
    presses = [panic.update({"pressed": p}, t) for t, p in enumerate([False, True, True, False, True])]
    assert [b is not None for b in presses] == [False, True, False, False, True]


def test_build_body_coerces_register_numbers() -> None:
    assert build_body(DeviceKind.CHARGER, {"port": 2.0, "temp_c": 71, "current_a": 3}) == ChargerReading(
        port=2, temp_c=71.0, current_a=3.0)
    assert build_body(DeviceKind.SMOKE, {"alarm": 1.0}) == SmokeState(alarm=True)
    with pytest.raises(ValueError):
        build_body(DeviceKind.HYDRANT, {"pressure_mpa": 12.0})  # beyond the wire model's range
    with pytest.raises(ValueError, match="no fields"):
        build_body(DeviceKind.GAS, {"ppm": 3})
    for kind in FACILITY_KINDS:
        assert kind in KIND_BODIES


def test_register_decoding_and_blocks() -> None:
    hi, lo = struct.unpack(">HH", struct.pack(">f", 71.25))
    assert decode(ModbusPoint(address=0, type="float32"), [hi, lo]) == 71.25
    assert decode(ModbusPoint(address=0, type="float32", word_order="little"), [lo, hi]) == 71.25
    assert decode(ModbusPoint(address=0, type="int16"), [0xFFFE]) == -2
    assert decode(ModbusPoint(address=0, type="uint32"), [1, 2]) == 65538
    assert decode(ModbusPoint(address=0, type="int32", word_order="little"), [0xFFFF, 0xFFFF]) == -1
    assert decode(ModbusPoint(address=0, type="uint16", scale=0.001, offset=-0.1), [350]) == pytest.approx(0.25)
    assert decode(ModbusPoint(address=0, type="bool"), [7]) == 1.0
    pts = [ModbusPoint(address=a, type=t) for a, t in ((0, "uint16"), (3, "float32"), (40, "uint16"), (200, "int32"))]
    assert blocks(pts) == [(0, 5), (40, 1), (200, 2)]
    # Neighbours 7 registers apart share requests, but no request exceeds the spec's 125 registers.
    assert blocks([ModbusPoint(address=a) for a in range(0, 129, 8)]) == [(0, 121), (128, 1)]


DEVICES = [("hyd1", DeviceKind.HYDRANT), ("smk1", DeviceKind.SMOKE), ("chg1", DeviceKind.CHARGER),
           ("pan1", DeviceKind.PANIC_BUTTON), ("dc1", DeviceKind.DOOR_CONTROLLER)]


def _modbus(port: int, poll_s: float = 0.1) -> dict[str, object]:
    return {"modbus": [ModbusServer(name="pumproom", host="127.0.0.1", port=port, poll_s=poll_s, timeout_s=0.5,
                                    devices=(
        ModbusDeviceMap(device="hyd1", fields={"pressure_mpa": ModbusPoint(address=0, scale=0.001)}),
        ModbusDeviceMap(device="smk1", fields={"alarm": ModbusPoint(address=1, type="bool")}),
        ModbusDeviceMap(device="chg1", fields={"temp_c": ModbusPoint(address=2, type="float32"),
                                              "current_a": ModbusPoint(address=4, scale=0.1)},
                        constants={"port": 1}),
        ModbusDeviceMap(device="pan1", fields={"pressed": ModbusPoint(address=5, type="bool")}),
    )).model_dump()]}


def test_register_map_errors_name_the_place(tmp_path: Path) -> None:
    good = _modbus(free_port())
    bad_field = {"modbus": [{**good["modbus"][0], "devices": [  # type: ignore[index]
        {"device": "hyd1", "fields": {"pressure_bar": {"address": 0}}}]}]}
    cfg = make_config(free_port(), "s1", DEVICES, tmp_path, facility=bad_field)
    with pytest.raises(ConfigError, match=r"modbus\[0\]\.devices\[0\].*'pressure_bar' is not an input of a hydrant"):
        FacilityAgent(cfg).start()
    missing = {"modbus": [{**good["modbus"][0], "devices": [  # type: ignore[index]
        {"device": "chg1", "fields": {"temp_c": {"address": 0}}}]}]}
    cfg = make_config(free_port(), "s1", DEVICES, tmp_path, facility=missing)
    with pytest.raises(ConfigError, match=r"needs \['current_a', 'port'\]"):
        FacilityAgent(cfg).start()
    other = {"modbus": [{**good["modbus"][0], "devices": [  # type: ignore[index]
        {"device": "dc1", "fields": {"open": {"address": 0}}}]}]}
    cfg = make_config(free_port(), "s1", DEVICES, tmp_path, facility=other)
    with pytest.raises(ConfigError, match="'dc1' is not a facility device"):
        FacilityAgent(cfg).start()


# ---- against real servers ---------------------------------------------------------------------------

@pytest.mark.broker
def test_modbus_adapter_against_pymodbus_server(mosquitto: Mosquitto, unique_site: str, tmp_path: Path) -> None:
    port = free_port()
    server = ModbusTestServer(port).start()
    hi, lo = struct.unpack(">HH", struct.pack(">f", 36.5))
    server.write(0, [300, 0, hi, lo, 12, 0])  # 0.300 MPa, no smoke, 36.5 degC, 1.2 A, panic not pressed
    cfg = make_config(mosquitto.port, unique_site, DEVICES, tmp_path, facility=_modbus(port))
    col = Collector(mosquitto.port, f"commhub/v1/{unique_site}/#").start()
    agent = FacilityAgent(cfg)
    agent.start()
    try:
        assert col.wait_for(lambda ms: {"hyd1", "smk1", "chg1"} <= {m.envelope.device_id for m in ms
                                                                     if m.channel in ("evt", "tele")})
        assert col.envelopes("hyd1")[0].body == HydrantPressure(pressure_mpa=0.3)
        assert col.envelopes("smk1")[0].body == SmokeState(alarm=False)
        assert col.envelopes("chg1")[0].body == ChargerReading(port=1, temp_c=36.5, current_a=1.2)
        assert col.envelopes("pan1") == [], "not pressed: nothing to say"
        # The site changes: pressure drops, the smoke detector alarms, someone presses the panic button.
        server.write(0, [40, 1])
        server.write(5, [1])
        assert col.wait_for(lambda ms: len(col.envelopes("pan1")) == 1 and len(col.envelopes("smk1")) == 2
                            and len(col.envelopes("hyd1")) == 2)
        assert col.envelopes("hyd1")[1].body == HydrantPressure(pressure_mpa=0.04)
        assert col.envelopes("smk1")[1].body == SmokeState(alarm=True)
        assert col.envelopes("pan1")[0].body.type == "panic_press"
        # The server dies: after 3 failed polls every device on it reports signal_lost; recovery clears it.
        server.stop()
        assert col.wait_for(lambda ms: all(any(isinstance(e.body, Tamper) and e.body.active
                                               for e in col.envelopes(d)) for d in ("hyd1", "smk1", "chg1", "pan1")),
                            10)
        server = ModbusTestServer(port).start()
        server.write(0, [40, 1, hi, lo, 12, 1])
        assert col.wait_for(lambda ms: all(any(isinstance(e.body, Tamper) and not e.body.active
                                               for e in col.envelopes(d)) for d in ("hyd1", "smk1")), 15)
        tampers = [e.body for e in col.envelopes("hyd1") if isinstance(e.body, Tamper)]
        assert [t.active for t in tampers] == [True, False] and tampers[0].kind == "signal_lost"
    finally:
        agent.stop()
        server.stop()
        col.stop()


@pytest.mark.broker
def test_simulated_facility_covers_every_kind(mosquitto: Mosquitto, unique_site: str, tmp_path: Path) -> None:
    kinds = sorted(FACILITY_KINDS, key=lambda k: k.value)
    devices = [(f"d{i}", k) for i, k in enumerate(kinds)]
    # At 50x speed with an incident starting about every 6 simulated seconds, 2 s show each kind's alarm.
    cfg = make_config(mosquitto.port, unique_site, devices, tmp_path,
                      facility={"sim_speed": 50.0, "sim_incidents_per_hour": 600.0})
    col = Collector(mosquitto.port, f"commhub/v1/{unique_site}/#").start()
    agent = FacilityAgent(cfg, simulate=True, seed=5)
    agent.start()
    try:
        time.sleep(2.0)
    finally:
        agent.stop()
    got = [m.envelope for m in col.snapshot() if m.channel in ("evt", "tele")]
    by_kind = dict(devices)
    seen = {by_kind[e.device_id] for e in got if e.body.type != "heartbeat"}
    assert seen == set(kinds), f"missing kinds: {set(kinds) - seen}"
    assert {e.body.type for e in got} >= {"panic_press", "smoke_state", "gas_reading", "elevator_ebike"}
    assert any(isinstance(e.body, SmokeState) and e.body.alarm for e in got), "incidents happen"
    col.stop()
