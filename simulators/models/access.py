"""Access control in normal life: door controllers, face gates and turnstiles with daily rhythms."""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Literal

from commhub.community import Device
from commhub.wire import (
    AccessDenied,
    AccessGranted,
    DeviceKind,
    DoorClosed,
    DoorOpened,
    ExitRequest,
    Passage,
    _Body,
)
from simulators.models.common import Event, ModelContext, heartbeats, merge, ref
from simulators.rhythm import ACCESS_PROFILE, arrivals

DOOR = "main"  # the door id in access bodies; one door per controller in the simulated community
RESIDENTS_PER_DOOR = 40
Direction = Literal["in", "out"]
Method = Literal["card", "face", "qr"]
# Normal life never comes close to the invalid-credential burst rule (3 denials in 60 s).
MIN_DENIAL_GAP_S = 300.0


class Residents:
    """The credentials that use one door, each inside or outside, so anti-passback never fires in normal life."""

    def __init__(self, site: str, device_id: str, rng: random.Random, n: int = RESIDENTS_PER_DOOR) -> None:
        self.refs = [ref(site, device_id, "resident", str(i)) for i in range(n)]
        self.inside = [rng.random() < 0.7 for _ in range(n)]

    def pick(self, rng: random.Random) -> tuple[str, Direction]:
        """A resident passing now, and the direction (out when inside)."""
        i = rng.randrange(len(self.refs))
        direction: Direction = "out" if self.inside[i] else "in"
        self.inside[i] = not self.inside[i]
        return self.refs[i], direction


def _passages(dev: Device, rng: random.Random, start: float, ctx: ModelContext) -> Iterator[Event]:
    tune = ctx.tuning
    kind = dev.kind
    peak = tune.door_peak_per_hour if kind is DeviceKind.DOOR_CONTROLLER else tune.gate_peak_per_hour
    people = Residents(ctx.site, dev.id, rng)
    busy_until = start
    last_denial = -1e18
    visitors = 0
    direction: Direction
    method: Method
    for t in arrivals(rng, start, peak, ACCESS_PROFILE, ctx.local):
        t = max(t, busy_until + 0.5)  # one passage at a time: the previous one has finished
        out: list[Event] = []
        if rng.random() < tune.denial_share and t - last_denial >= MIN_DENIAL_GAP_S:
            last_denial = t
            out.append((t, AccessDenied(door=DOOR, credential_ref=ref(ctx.site, dev.id, "unknown", str(t)),
                                        method="face" if kind is DeviceKind.FACE_GATE else "card",
                                        reason="unknown_credential")))
            busy_until = t + 1.0
        elif kind is DeviceKind.DOOR_CONTROLLER:
            first: _Body
            if rng.random() < tune.visitor_share:
                first = ExitRequest(door=DOOR)  # a visitor leaving by the exit button
            else:
                # Residents badge out as well as in, so anti-passback stays quiet in normal life.
                cred, direction = people.pick(rng)
                first = AccessGranted(door=DOOR, credential_ref=cred, method="card", direction=direction)
            opened = t + rng.uniform(0.5, 2.0)
            closed = opened + rng.uniform(2.0, 9.0)
            out += [(t, first), (opened, DoorOpened(door=DOOR)), (closed, DoorClosed(door=DOOR))]
            busy_until = closed
        else:
            visitor = rng.random() < tune.visitor_share
            if visitor:
                # A visitor is a fresh opaque ref each time, so the frequent-stranger rule stays quiet.
                visitors += 1
                cred, direction, method, registered = ref(ctx.site, dev.id, "visitor", str(visitors)), "in", "qr", False
            else:
                cred, direction = people.pick(rng)
                method = "face" if kind is DeviceKind.FACE_GATE else "card"
                registered = True
            passed = t + rng.uniform(0.8, 2.5)
            out += [(t, AccessGranted(door=DOOR, credential_ref=cred, method=method, direction=direction,
                                      registered=registered)),
                    (passed, Passage(door=DOOR, count=1, direction=direction))]
            busy_until = passed
        yield from out


def access(dev: Device, rng: random.Random, start: float, ctx: ModelContext) -> Iterator[Event]:
    """Door controller, face gate or turnstile: passages with morning/evening peaks, plus heartbeats."""
    return merge(heartbeats(dev, rng, start), _passages(dev, rng, start, ctx))
