"""People-layer devices in normal life: household water meters, welfare door contacts, patrol checkpoints."""

from __future__ import annotations

import random
from collections.abc import Iterator

from commhub.community import Device
from commhub.wire import DoorContact, PatrolScan, WaterMeter
from simulators.models.common import Event, ModelContext, episodes, heartbeats, merge, periodic, ref
from simulators.rhythm import ACCESS_PROFILE, WATER_PROFILE, arrivals, profile_at

PATROL_GRACE_S = 15 * 60  # a scan is late after schedule + 15 min; normal rounds stay well inside
PATROL_MAX_LATE_S = 5 * 60
GUARDS = 3


def water_meter(dev: Device, rng: random.Random, start: float, ctx: ModelContext) -> Iterator[Event]:
    """Cumulative litres and the litres used since the last reading, following the household's routine."""
    per_hour = ctx.tuning.household_litres_per_day / sum(WATER_PROFILE)
    total = [round(rng.uniform(10_000, 200_000), 1)]
    last = [start]

    def reading(t: float, _n: int) -> WaterMeter:
        hours = max(0.0, t - last[0]) / 3600.0
        last[0] = t
        flow = per_hour * profile_at(WATER_PROFILE, ctx.local.hour(t)) * hours * rng.uniform(0.3, 1.7)
        total[0] = round(total[0] + flow, 1)
        return WaterMeter(total_l=total[0], flow_l=round(flow, 2))
    return periodic(dev, rng, start, reading)


def door_contact(dev: Device, rng: random.Random, start: float, ctx: ModelContext) -> Iterator[Event]:
    """An opted-in resident's front door: opened several times a day, closed again within a minute."""
    def openings() -> Iterator[tuple[float, list[Event]]]:
        busy = start
        for t in arrivals(rng, start, ctx.tuning.door_contact_peak_per_hour, ACCESS_PROFILE, ctx.local):
            t = max(t, busy + 1.0)
            closed = t + rng.uniform(4.0, 40.0)
            busy = closed
            yield t, [(t, DoorContact(open=True)), (closed, DoorContact(open=False))]
    return merge(heartbeats(dev, rng, start), episodes(openings()))


def patrol(dev: Device, rng: random.Random, start: float, ctx: ModelContext) -> Iterator[Event]:
    """A checkpoint scanned once per interval, on a schedule aligned to local midnight, at most 5 min late."""
    def scans() -> Iterator[Event]:
        guards = [ref(ctx.site, "guard", str(i)) for i in range(GUARDS)]
        period = dev.interval_s
        anchor = ctx.local.midnight_before(start)
        k = int((start - anchor) // period) + 1
        while True:
            slot = anchor + k * period
            yield (slot + rng.uniform(0.0, PATROL_MAX_LATE_S),
                   PatrolScan(checkpoint=dev.id, guard_ref=guards[k % GUARDS]))
            k += 1
    # The checkpoint reader has its own heartbeat, so a missed round is not mistaken for a dead reader.
    return merge(heartbeats(dev, rng, start), scans())


def patrol_slots(dev: Device, start: float, end: float, local_midnight: float) -> list[float]:
    """The scheduled scan times of a checkpoint in [start, end) (what the incident 'skip_patrol' aims at)."""
    period = dev.interval_s
    k = int((start - local_midnight) // period) + 1
    out = []
    while local_midnight + k * period < end:
        out.append(local_midnight + k * period)
        k += 1
    return out


