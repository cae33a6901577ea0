"""What rules read (Event, Ctx) and what they emit (Signal), plus the per-key State they keep."""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from commhub.community import Community, Device
from commhub.wire import Envelope
from hub.rules.spec import Hours, KeyBy, Match

MAX_REFS = 10  # triggering events kept per signal/alert
# Two of one device's messages stamped at most this far apart are ordered by the device's seq, not their times:
# two hub workers put one device's messages on their own clocks (a drained backlog at each batch's receive
# time), a batch apart. Farther apart, a lower seq is a device whose counter restarted.
SEQ_ORDER_S = 30.0

OPS: dict[str, Callable[[Any, Any], bool]] = {
    ">": operator.gt, ">=": operator.ge, "<": operator.lt, "<=": operator.le, "==": operator.eq,
    "!=": operator.ne, "contains": lambda a, b: b in a, "in": lambda a, b: a in b,
}


@dataclass(frozen=True, slots=True)
class Place:
    """Where something happened."""

    site: str
    grid: str
    building: str | None = None
    unit: str | None = None
    device: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """For JSON state."""
        return {"site": self.site, "grid": self.grid, "building": self.building, "unit": self.unit,
                "device": self.device}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Place:
        """From JSON state."""
        return cls(d["site"], d["grid"], d.get("building"), d.get("unit"), d.get("device"))


UNASSIGNED = "unassigned"  # grid of a device missing from the registry


# Not frozen: a frozen dataclass takes about five times as long to build (one setattr call per field), and one
# Event is built per message; nothing changes an Event once built (the clock makes a new one with at()).
@dataclass(slots=True)
class Event:
    """One accepted message, as the rules see it."""

    device_id: str
    kind: str
    type: str
    t: float  # device timestamp, seconds since the epoch
    seq: int
    body: Any  # the pydantic body
    place: Place
    device: Device | None = None
    historical: bool = False
    late: bool = False  # delivered well after its own time (a spool replay, a backlog): timers wait for the rest

    @classmethod
    def from_envelope(cls, env: Envelope, kind: str, place: Place, device: Device | None,
                      t: float | None = None) -> Event:
        """Build from a validated envelope; `t` overrides the device's timestamp (a skewed clock)."""
        return cls(env.device_id, kind, env.body.type, env.ts.timestamp() if t is None else t, env.seq, env.body,
                   place, device, env.historical)

    def at(self, t: float, late: bool | None = None) -> Event:
        """The same event at another time (a corrected device clock), and late when said so."""
        # Positional, not dataclasses.replace(), which inspects the fields on every call.
        return Event(self.device_id, self.kind, self.type, t, self.seq, self.body, self.place, self.device,
                     self.historical, self.late if late is None else late)

    def get(self, name: str) -> Any:
        """A body field, or None."""
        # The model's field values, not getattr(): a field the body type lacks would go through pydantic's
        # __getattr__ and an AttributeError, about 3 µs each, and rules ask for absent fields all the time.
        return self.body.__dict__.get(name)

    def ref(self) -> dict[str, Any]:
        """The reference an alert keeps to this event."""
        return {"device_id": self.device_id, "seq": self.seq, "t": self.t, "type": self.type,
                "snapshot": self.body.__dict__.get("snapshot")}


@dataclass(slots=True)
class Signal:
    """A rule's verdict about one subject: fire (or re-fire) or clear."""

    action: str  # "fire" | "clear"
    rule: str
    code: str
    subject: str
    severity: str
    layer: str
    place: Place
    t: float
    refs: list[dict[str, Any]] = field(default_factory=list)
    thresholds: dict[str, Any] = field(default_factory=dict)
    incident: str | None = None
    members: list[tuple[str, str]] = field(default_factory=list)  # (rule, subject) merged into this incident


@dataclass(slots=True)
class State:
    """A rule's JSON-able memory for one key, and when its timer is due (None = no timer)."""

    data: dict[str, Any] = field(default_factory=dict)
    due: float | None = None


class Ctx:
    """Read-only lookups the rules need: the community, its timezone and residents."""

    def __init__(self, community: Community) -> None:
        self.community = community
        self.tz = ZoneInfo(community.site.timezone)
        self.devices = community.device_index()
        self.resident_of = {d: r for r in community.residents for d in r.devices}
        self._places: dict[str, Place] = {}  # registered devices only: bounded by the community model
        self.cameras_of = _coverage(community)
        seen: dict[str, list[str]] = {}
        for door, cams in self.cameras_of.items():
            for cam in cams:
                seen.setdefault(cam, []).append(door)
        self.doors_seen_by = {k: tuple(v) for k, v in seen.items()}
        # When the events being fed were received (the hub's clock; set by the engine's caller): a settle is due
        # no sooner than settle_s after it, even when device time runs ahead of the wall clock (a backlog).
        self.received: float | None = None

    def place(self, device_id: str) -> Place:
        """The place of a device; unregistered devices land in the 'unassigned' grid."""
        place = self._places.get(device_id)
        if place is not None:
            return place
        d = self.devices.get(device_id)
        if d is None:
            return Place(self.community.site.id, UNASSIGNED, device=device_id)
        place = self._places[device_id] = Place(self.community.site.id, d.grid, d.building, d.unit, d.id)
        return place

    def local(self, t: float) -> datetime:
        """A timestamp in the site's timezone."""
        return datetime.fromtimestamp(t, UTC).astimezone(self.tz)

    def in_hours(self, hours: Hours | None, t: float) -> bool:
        """Whether t falls inside a daily window (always, when there is none)."""
        if hours is None:
            return True
        h = self.local(t).hour
        if hours.start <= hours.end:
            return hours.start <= h < hours.end
        return h >= hours.start or h < hours.end


_ACCESS = ("door_controller", "face_gate", "turnstile")


def _coverage(community: Community) -> dict[str, tuple[str, ...]]:
    """Door/gate id -> the cameras that see it (a camera's `covers`, else the access devices of its unit)."""
    out: dict[str, list[str]] = {}
    access = [d for d in community.devices if d.kind.value in _ACCESS]
    for cam in community.devices:
        if cam.kind.value != "camera":
            continue
        if cam.covers is not None:
            doors = list(cam.covers)
        else:
            doors = [d.id for d in access if d.grid == cam.grid and d.building == cam.building
                     and (cam.building is None or d.unit == cam.unit)]
        for door in doors:
            out.setdefault(door, []).append(cam.id)
    return {k: tuple(v) for k, v in out.items()}


def matches(ms: tuple[Match, ...], ev: Event) -> bool:
    """Whether any matcher accepts the event."""
    # Type and kind tested here and the body's fields read straight from its dict: this runs for several rules
    # per message, and most matchers are turned away by type or kind.
    body_type = ev.type
    kind = ev.kind
    for m in ms:
        if body_type not in m.type or (m.kinds and kind not in m.kinds):
            continue
        if not m.where or _where(m.where, ev.body.__dict__):
            return True
    return False


def may_match(ms: tuple[Match, ...], kind: str, body_type: str) -> bool:
    """Whether any matcher could accept some event of this device kind and body type (its `where` aside)."""
    return any(body_type in m.type and (not m.kinds or kind in m.kinds) for m in ms)


def _where(where: dict[str, Any], fields: dict[str, Any]) -> bool:
    """Whether a body's field values (as Event.get reads them) meet every condition."""
    for name, cond in where.items():
        value = fields.get(name)
        if isinstance(cond, dict):
            for op, ref in cond.items():
                if value is None or not OPS[op](value, ref):
                    return False
        elif value != cond:
            return False
    return True


def subject_key(key: KeyBy, ev: Event, ctx: Ctx) -> str | None:
    """The subject an event is about under a rule's `key`, or None when it has none."""
    if key == "device":
        return ev.device_id
    if key == "door":
        door = ev.get("door")
        return f"{ev.device_id}/{door}" if door else ev.device_id
    if key == "zone":
        zone = ev.get("zone")
        zones = ev.get("zones")
        z = zone or (zones[0] if zones else None)
        return f"{ev.device_id}/{z}" if z else ev.device_id
    if key == "port":
        return f"{ev.device_id}/{ev.get('port')}"
    if key == "ref":
        ref = ev.get("credential_ref")
        return str(ref) if ref else None
    if key == "building":
        return ev.place.building
    if key == "grid":
        return ev.place.grid
    if key == "resident":
        r = ctx.resident_of.get(ev.device_id)
        return r.ref if r else None
    return f"{ev.device_id}/{ev.seq}"


def add_ref(refs: list[dict[str, Any]], ref: dict[str, Any]) -> list[dict[str, Any]]:
    """Append a triggering-event ref, keeping the first one and the latest ones."""
    out = [*refs, ref]
    if len(out) > MAX_REFS:
        out = [out[0], *out[-(MAX_REFS - 1):]]
    return out
