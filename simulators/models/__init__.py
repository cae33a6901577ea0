"""Behaviour models of normal life, one per device kind: pure, seeded generators on a simulated clock."""

from __future__ import annotations

import random
import zlib
from collections.abc import Iterator

from commhub.community import Device
from commhub.wire import DeviceKind
from simulators.models import access, camera, facility, people
from simulators.models.common import Event, Model, ModelContext, Tuning

MODELS: dict[DeviceKind, Model] = {
    DeviceKind.DOOR_CONTROLLER: access.access,
    DeviceKind.FACE_GATE: access.access,
    DeviceKind.TURNSTILE: access.access,
    DeviceKind.CAMERA: camera.camera,
    DeviceKind.INTRUSION: facility.quiet,
    DeviceKind.SMOKE: facility.smoke,
    DeviceKind.GAS: facility.gas,
    DeviceKind.WATER_LEAK: facility.quiet,
    DeviceKind.HYDRANT: facility.hydrant,
    DeviceKind.FIRE_DOOR: facility.fire_door,
    DeviceKind.MANHOLE: facility.manhole,
    DeviceKind.ELEVATOR: facility.quiet,
    DeviceKind.CHARGER: facility.charger,
    DeviceKind.ELECTRICAL: facility.electrical,
    DeviceKind.WATER_METER: people.water_meter,
    DeviceKind.PANIC_BUTTON: facility.quiet,
    DeviceKind.DOOR_CONTACT: people.door_contact,
    DeviceKind.PATROL: people.patrol,
    DeviceKind.ENV: facility.env,
    DeviceKind.REPORT_DESK: facility.quiet,  # reports come from people through the API, not from a model
}


def device_rng(seed: int, device_id: str) -> random.Random:
    """A generator private to one device, so its life does not depend on which other devices exist."""
    return random.Random((seed << 32) ^ zlib.crc32(device_id.encode()))


def stream(dev: Device, seed: int, start: float, ctx: ModelContext) -> Iterator[Event]:
    """The normal life of one device from start on (infinite, time-ordered)."""
    return MODELS[dev.kind](dev, device_rng(seed, dev.id), start, ctx)


__all__ = ["MODELS", "Event", "ModelContext", "Tuning", "device_rng", "stream"]
