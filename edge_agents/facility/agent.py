"""The facility agent: smoke, gas, leak, hydrant, fire door, manhole, elevator, charger, meter and panic devices."""

from __future__ import annotations

import logging
from pathlib import Path

from commhub.agent_config import ModbusServer
from commhub.community import Device
from commhub.config import Config, ConfigError
from commhub.wire import DeviceKind
from edge_agents.base.devices import select_devices
from edge_agents.base.host import AdapterHost
from edge_agents.facility.bodies import FACILITY_KINDS, SPECS, input_fields, required_fields
from edge_agents.facility.modbus import ModbusAdapter
from edge_agents.facility.simulated import SimulatedFacilityAdapter

log = logging.getLogger(__name__)


def check_modbus(servers: tuple[ModbusServer, ...], devices: dict[str, Device]) -> None:
    """Every register map names a served device and exactly the inputs its kind takes; else ConfigError."""
    seen: dict[str, str] = {}
    for i, server in enumerate(servers):
        for j, dmap in enumerate(server.devices):
            where = f"agent.facility.modbus[{i}].devices[{j}]"
            dev = devices.get(dmap.device)
            if dev is None:
                raise ConfigError(f"{where}.device: {dmap.device!r} is not a facility device served by this agent")
            if dmap.device in seen:
                raise ConfigError(f"{where}.device: {dmap.device!r} is already read from {seen[dmap.device]}")
            seen[dmap.device] = server.name
            allowed = input_fields(dev.kind)
            given = set(dmap.fields) | set(dmap.constants)
            for name in sorted(given - set(allowed)):
                raise ConfigError(f"{where}: {name!r} is not an input of a {dev.kind.value} "
                                  f"(inputs: {sorted(allowed)})")
            both = set(dmap.fields) & set(dmap.constants)
            if both:
                raise ConfigError(f"{where}: {sorted(both)} both read and constant")
            missing = required_fields(dev.kind) - given
            if missing:
                raise ConfigError(f"{where}: a {dev.kind.value} needs {sorted(missing)} (as fields or constants)")


class FacilityAgent(AdapterHost):
    """Publishes facility readings and states from Modbus servers and/or the simulator through one BaseAgent."""

    def __init__(self, config: Config, name: str = "facility", *, simulate: bool = False, modbus: bool = True,
                 state_dir: Path | None = None, seed: int | None = None) -> None:
        super().__init__(config, name, state_dir)
        self.simulate = simulate
        self.modbus = modbus
        self.seed = seed

    def start(self) -> None:
        """Validate the register maps, start the base agent, then the adapters."""
        settings = self.config.agent.facility
        devices = select_devices(self.config.community, FACILITY_KINDS, settings.devices, "agent.facility")
        servers = settings.modbus if self.modbus else ()
        check_modbus(servers, devices)
        if not devices:
            raise ValueError("no facility devices in the community")
        if not (self.simulate or servers):
            raise ValueError("nothing to run: configure agent.facility.modbus or use the simulated adapter")
        base = self._start_base(devices)
        kinds: dict[str, tuple[DeviceKind, float]] = {d.id: (d.kind, d.interval_s) for d in devices.values()}
        polled = set()
        for server in servers:
            on_server = {m.device: kinds[m.device] for m in server.devices}
            polled |= set(on_server)
            self.adapters.append(ModbusAdapter(server, on_server, on_reachable=base.set_reachable))
        if self.simulate:
            # Devices read over Modbus are real: the simulator only covers the others.
            rest = {d: k for d, k in kinds.items() if d not in polled}
            self.adapters.append(SimulatedFacilityAdapter(rest, speed=settings.sim_speed, seed=self.seed,
                                                          incidents_per_hour=settings.sim_incidents_per_hour))
        self._start_adapters(base)
        log.info("facility agent %r serves %d devices (%d over Modbus, kinds: %s)", self.name, len(devices),
                 len(polled), sorted({k.value for k, _ in kinds.values()} & {k.value for k in SPECS}))
