"""Camera analytics in normal life: people and vehicles passing through ordinary zones, small crowds."""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Literal

from commhub.community import Device
from commhub.wire import Box, CameraCrowd, CameraObject
from simulators.models.common import Event, ModelContext, episodes, heartbeats, merge, periodic
from simulators.rhythm import ACCESS_PROFILE, arrivals, profile_at

# Zones normal life uses; incident zones (perimeter, fire_lane, plaza crowds) appear only in scenarios.
PERSON_ZONE = "walkway"
VEHICLE_ZONE = "road"
CROWD_ZONE = "plaza"
CROWD_PERIOD_S = 60.0
MAX_NORMAL_CROWD = 4


def _objects(dev: Device, rng: random.Random, start: float, ctx: ModelContext) -> Iterator[tuple[float, list[Event]]]:
    for n, t in enumerate(arrivals(rng, start, ctx.tuning.camera_peak_per_hour, ACCESS_PROFILE, ctx.local), 1):
        vehicle = rng.random() < 0.15
        label: Literal["vehicle", "person"] = "vehicle" if vehicle else "person"
        zone = VEHICLE_ZONE if vehicle else PERSON_ZONE
        dwell = rng.uniform(4.0, 25.0) if vehicle else rng.uniform(3.0, 40.0)
        eid = f"{dev.id}-{n}"
        x, y = rng.randrange(0, 560), rng.randrange(0, 360)
        box = Box(x=x, y=y, w=60 if not vehicle else 140, h=120 if not vehicle else 80)
        score = round(rng.uniform(0.6, 0.95), 3)
        yield t, [
            (t, CameraObject(event_id=eid, phase="new", label=label, score=score, box=box, zones=(zone,),
                             entered_zones=(zone,))),
            (t + dwell / 2, CameraObject(event_id=eid, phase="update", label=label, score=score, box=box,
                                         zones=(zone,), dwell_s=round(dwell / 2, 2))),
            (t + dwell, CameraObject(event_id=eid, phase="end", label=label, score=score, dwell_s=round(dwell, 2))),
        ]


def camera(dev: Device, rng: random.Random, start: float, ctx: ModelContext) -> Iterator[Event]:
    """Tracked objects following the daily rhythm, a crowd count a minute, and heartbeats."""
    def crowd(t: float, _n: int) -> CameraCrowd:
        level = profile_at(ACCESS_PROFILE, ctx.local.hour(t))
        return CameraCrowd(zone=CROWD_ZONE, count=min(MAX_NORMAL_CROWD, int(rng.random() * (level * 5 + 1))))
    crowd_dev = dev.model_copy(update={"interval_s": CROWD_PERIOD_S})
    return merge(heartbeats(dev, rng, start), periodic(crowd_dev, rng, start, crowd),
                 episodes(_objects(dev, rng, start, ctx)))
