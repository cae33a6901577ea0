"""A simulated facility adapter: normal readings with noise and occasional incidents, through the same Reporter."""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from commhub.wire import DeviceKind
from edge_agents.base.adapter import Emit, ThreadedAdapter
from edge_agents.facility.bodies import PRESSED, Reporter

log = logging.getLogger(__name__)


@dataclass
class _Sim:
    kind: DeviceKind
    reporter: Reporter
    incident_until: float = 0.0  # simulated seconds
    total_l: float = 0.0
    state: dict[str, Any] = field(default_factory=dict)


def _normal(kind: DeviceKind, rng: random.Random, sim: _Sim, dt: float) -> dict[str, Any]:
    match kind:
        case DeviceKind.SMOKE:
            return {"alarm": False, "obscuration_pct_m": round(rng.uniform(0.0, 0.5), 2)}
        case DeviceKind.GAS:
            return {"lel_pct": round(rng.uniform(0.0, 2.0), 2)}
        case DeviceKind.WATER_LEAK:
            return {"wet": False}
        case DeviceKind.HYDRANT:
            return {"pressure_mpa": round(rng.gauss(0.30, 0.005), 3)}
        case DeviceKind.FIRE_DOOR:
            return {"open": False}
        case DeviceKind.MANHOLE:
            return {"tilt_deg": round(abs(rng.gauss(1.0, 0.3)), 2)}
        case DeviceKind.ELEVATOR:
            return {"floor": rng.randrange(0, 18), "detected": False, "source": "rfid"}
        case DeviceKind.CHARGER:
            return {"port": 1, "temp_c": round(rng.uniform(25.0, 40.0), 1), "current_a": round(rng.uniform(0, 3), 2)}
        case DeviceKind.ELECTRICAL:
            return {"residual_ma": round(rng.uniform(5.0, 20.0), 1), "temp_c": round(rng.uniform(30.0, 38.0), 1)}
        case DeviceKind.WATER_METER:
            flow = max(0.0, rng.gauss(0.05, 0.05)) * dt
            sim.total_l += flow
            return {"total_l": round(sim.total_l, 3), "flow_l": round(flow, 3)}
        case DeviceKind.PANIC_BUTTON:
            return {PRESSED: False}
        case DeviceKind.DOOR_CONTACT:
            # A resident's front door: opened about twice an hour, for a few seconds.
            if sim.state.get("open_left", 0.0) <= 0 and rng.random() < dt / 1800.0:
                sim.state["open_left"] = rng.uniform(3.0, 15.0)
            sim.state["open_left"] = sim.state.get("open_left", 0.0) - dt
            return {"open": sim.state["open_left"] > 0}
        case DeviceKind.ENV:
            return {"temp_c": round(rng.uniform(20.0, 26.0), 1), "humidity_pct": round(rng.uniform(30, 60), 1)}
    raise ValueError(f"no simulation for {kind.value}")


def _incident(kind: DeviceKind, values: dict[str, Any]) -> dict[str, Any]:
    # What each kind looks like during an incident (alarms from the event catalogue).
    changes: dict[DeviceKind, dict[str, Any]] = {
        DeviceKind.SMOKE: {"alarm": True, "obscuration_pct_m": 12.0},
        DeviceKind.GAS: {"lel_pct": 25.0},
        DeviceKind.WATER_LEAK: {"wet": True},
        DeviceKind.HYDRANT: {"pressure_mpa": 0.05},
        DeviceKind.FIRE_DOOR: {"open": True},
        DeviceKind.MANHOLE: {"tilt_deg": 30.0},
        DeviceKind.ELEVATOR: {"floor": 0, "detected": True},
        DeviceKind.CHARGER: {"temp_c": 80.0},
        DeviceKind.ELECTRICAL: {"residual_ma": 350.0},
        DeviceKind.PANIC_BUTTON: {PRESSED: True},
        DeviceKind.DOOR_CONTACT: {"open": True},
    }
    return {**values, **changes.get(kind, {})}


class SimulatedFacilityAdapter(ThreadedAdapter):
    """Ticks every device once per simulated second; incidents start at `incidents_per_hour` per device."""

    thread_name = "facility-sim"

    def __init__(self, devices: Mapping[str, tuple[DeviceKind, float]], speed: float = 1.0,
                 incidents_per_hour: float = 0.2, incident_s: float = 120.0, seed: int | None = None,
                 tick_s: float = 1.0) -> None:
        self.devices = dict(devices)
        self.speed = speed
        self.incidents_per_hour = incidents_per_hour
        self.incident_s = incident_s
        self.seed = seed
        self.tick_s = tick_s
        super().__init__()

    def _run(self, emit: Emit) -> None:
        rng = random.Random(self.seed)
        sims = {d: _Sim(kind, Reporter(kind, interval)) for d, (kind, interval) in sorted(self.devices.items())}
        p_incident = self.incidents_per_hour * self.tick_s / 3600.0
        sim_t = 0.0
        while not self._stop.is_set():
            started = time.monotonic()
            sim_t += self.tick_s
            for device_id, sim in sims.items():
                values = _normal(sim.kind, rng, sim, self.tick_s)
                if sim.incident_until <= sim_t and rng.random() < p_incident:
                    sim.incident_until = sim_t + self.incident_s
                if sim.incident_until > sim_t:
                    values = _incident(sim.kind, values)
                body = sim.reporter.update(values, sim_t)
                if body is None:
                    continue
                try:
                    emit(device_id, body)
                    self.emitted += 1
                except RuntimeError:
                    return  # the agent is stopping
                except ValueError as e:
                    log.error("simulated reading refused: %s", e)
            self._stop.wait(max(0.0, self.tick_s / self.speed - (time.monotonic() - started)))
