"""Facility sensors in normal life: readings on their own intervals, replayed from recordings where we have them."""

from __future__ import annotations

import random
from collections.abc import Iterator

from commhub.community import Device
from commhub.wire import (
    ChargerReading,
    ElectricalReading,
    EnvReading,
    FireDoorState,
    GasReading,
    HydrantPressure,
    ManholeTilt,
    SmokeState,
)
from simulators.models.common import Event, ModelContext, episodes, heartbeats, merge, periodic
from simulators.rhythm import ACCESS_PROFILE, CHARGING_PROFILE, arrivals, profile_at

HYDRANT_MPA = (0.25, 0.35)
HYDRANT_STEP_MPA = 0.004  # far below the 0.05 MPa-in-a-minute drop rule
PANEL_HEAT_C = 8.0  # an electrical cabinet runs a little warmer than the room around it


def smoke(dev: Device, rng: random.Random, start: float, ctx: ModelContext) -> Iterator[Event]:
    """A quiet detector reporting its clear state every interval."""
    return periodic(dev, rng, start,
                    lambda _t, _n: SmokeState(alarm=False, obscuration_pct_m=round(rng.uniform(0, 0.3), 2)))


def gas(dev: Device, rng: random.Random, start: float, ctx: ModelContext) -> Iterator[Event]:
    """Background %LEL, well below any alarm."""
    return periodic(dev, rng, start, lambda _t, _n: GasReading(lel_pct=round(rng.uniform(0.0, 1.5), 2)))


def hydrant(dev: Device, rng: random.Random, start: float, ctx: ModelContext) -> Iterator[Event]:
    """Main pressure on a slow bounded random walk."""
    state = [rng.uniform(*HYDRANT_MPA)]

    def reading(_t: float, _n: int) -> HydrantPressure:
        lo, hi = HYDRANT_MPA
        state[0] = min(hi, max(lo, state[0] + rng.uniform(-HYDRANT_STEP_MPA, HYDRANT_STEP_MPA)))
        return HydrantPressure(pressure_mpa=round(state[0], 4))
    return periodic(dev, rng, start, reading)


def manhole(dev: Device, rng: random.Random, start: float, ctx: ModelContext) -> Iterator[Event]:
    """A cover lying flat, with sensor noise."""
    return periodic(dev, rng, start, lambda _t, _n: ManholeTilt(tilt_deg=round(rng.uniform(0.2, 2.0), 2)))


def charger(dev: Device, rng: random.Random, start: float, ctx: ModelContext) -> Iterator[Event]:
    """Port temperature and current following the charging rhythm (overnight and after work)."""
    def reading(t: float, _n: int) -> ChargerReading:
        load = profile_at(CHARGING_PROFILE, ctx.local.hour(t)) * rng.uniform(0.6, 1.0)
        return ChargerReading(port=rng.randrange(10), temp_c=round(24.0 + 20.0 * load + rng.uniform(-1, 1), 2),
                              current_a=round(3.0 * load, 2))
    return periodic(dev, rng, start, reading)


def electrical(dev: Device, rng: random.Random, start: float, ctx: ModelContext) -> Iterator[Event]:
    """Residual current and cabinet temperature; the temperature replays NAB's ambient series."""
    temps = ctx.recordings.temp_c if ctx.recordings else None
    offset = rng.randrange(len(temps)) if temps else 0

    def reading(t: float, n: int) -> ElectricalReading:
        if temps:
            # NAB is hourly: advance one row per simulated hour.
            room = temps[(offset + int((t - start) // 3600)) % len(temps)]
        else:
            room = 22.0 + 3.0 * profile_at(ACCESS_PROFILE, ctx.local.hour(t))
        return ElectricalReading(residual_ma=round(rng.uniform(5.0, 30.0), 1),
                                 temp_c=round(room + PANEL_HEAT_C + rng.uniform(-0.3, 0.3), 2))
    return periodic(dev, rng, start, reading)


def env(dev: Device, rng: random.Random, start: float, ctx: ModelContext) -> Iterator[Event]:
    """Room climate replayed from the UCI occupancy recordings (one-minute rows), one row per reading."""
    rows = ctx.recordings.env if ctx.recordings else None
    offset = rng.randrange(len(rows)) if rows else 0

    def reading(t: float, n: int) -> EnvReading:
        if rows:
            r = rows[(offset + n) % len(rows)]
            return EnvReading(temp_c=r.temp_c, humidity_pct=r.humidity_pct, light_lux=r.light_lux,
                              co2_ppm=r.co2_ppm)
        level = profile_at(ACCESS_PROFILE, ctx.local.hour(t))
        return EnvReading(temp_c=round(21.0 + 2.0 * level, 2), humidity_pct=round(rng.uniform(25, 35), 2),
                          light_lux=round(400.0 * level, 1), co2_ppm=round(430 + 400 * level, 1))
    return periodic(dev, rng, start, reading)


def fire_door(dev: Device, rng: random.Random, start: float, ctx: ModelContext) -> Iterator[Event]:
    """A normally-closed fire door that people pass through now and then, closing within a minute."""
    def passes() -> Iterator[tuple[float, list[Event]]]:
        busy = start
        for t in arrivals(rng, start, 2.0, ACCESS_PROFILE, ctx.local):
            t = max(t, busy + 1.0)
            closed = t + rng.uniform(3.0, 50.0)
            busy = closed
            yield t, [(t, FireDoorState(open=True)), (closed, FireDoorState(open=False))]
    return merge(heartbeats(dev, rng, start), episodes(passes()))


def quiet(dev: Device, rng: random.Random, start: float, ctx: ModelContext) -> Iterator[Event]:
    """Devices whose normal life is silence (intrusion beams, leak sensors, panic buttons, lift cameras)."""
    return heartbeats(dev, rng, start)

