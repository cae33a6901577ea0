"""The time-series schema: an accepted message becomes one line-protocol point.

Measurement: the body type (e.g. `gas_reading`, `access_denied`), so field types never clash across types.
Tags: site, grid, building, layer, device_kind, device_id (bounded, never a person or free text).
Fields: the body's values (nested boxes flattened, zone lists joined), plus `seq` and `historical`.
Timestamp: the device's `ts` in microseconds, so points from one device never overwrite each other. A will
(an agent's `offline` state that is no planned stop) is stamped when the hub received it, and never before the
last state stored for that agent: its own `ts` is its session's connect time, older than that session's
`online`, so the last stored state would still read online after the agent died.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from commhub.community import Device
from commhub.wire import KIND_LAYER, DeadLetter, DeviceKind
from hub.ingest.message import Accepted
from hub.ingest.validate import safe_topic
from hub.store.lineproto import (
    FORMAT,
    STR_TABLE,
    LineProtocolError,
    escape_measurement,
    field_key,
    format_value,
    line,
    tag_set,
)

PRECISION = "us"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)
UNASSIGNED = "_unassigned"


def to_us(ts: datetime) -> int:
    """A timezone-aware datetime as integer microseconds since the epoch, exactly."""
    d = ts - _EPOCH
    # The same integer as `d // timedelta(microseconds=1)`, without timedelta division.
    return (d.days * 86_400 + d.seconds) * 1_000_000 + d.microseconds


class _Series:
    """One device's cached tag set, valid for the registry entry and topic it was built from."""

    __slots__ = ("device", "heads", "kind", "site", "tags")

    def __init__(self, site: str, kind: str, device: Device | None, tags: str) -> None:
        self.site = site
        self.kind = kind
        self.device = device
        self.tags = tags
        self.heads: dict[str, str] = {}  # body type -> "measurement,tags seq="


class PointBuilder:
    """Turns accepted messages into lines; caches each device's tag set and line heads."""

    def __init__(self, max_devices: int = 200_000) -> None:
        # device id -> its tags and line heads: a message only formats its fields and timestamp. An entry
        # is used only for the very registry entry (by identity) and topic site and kind it was built from,
        # so a re-registered device (a new Device, e.g. after a config reload) gets fresh tags at once.
        self._series: dict[str, _Series] = {}
        self.max_devices = max_devices
        self._states: dict[str, int] = {}  # device id -> the newest state point's time (us)

    def _state_us(self, msg: Accepted) -> int:
        """A state's time: its own, but a will's no earlier than its receipt or the device's last state."""
        env = msg.envelope
        us = to_us(env.ts)
        body = env.body
        last = self._states.get(env.device_id)
        if body.status == "offline" and not body.clean:  # type: ignore[union-attr]
            us = max(us, int(msg.received_at * 1_000_000), last + 1 if last is not None else us)
        if last is None or us > last:
            if len(self._states) > self.max_devices:
                self._states.clear()
            self._states[env.device_id] = us
        return us

    def _new_series(self, msg: Accepted) -> _Series:
        t = msg.topic
        d = msg.device
        if d is not None:
            grid, building, layer = d.grid, d.building or UNASSIGNED, d.effective_layer.value
        else:
            grid, building = UNASSIGNED, UNASSIGNED
            layer = KIND_LAYER[DeviceKind(t.device_kind)].value
        tags = tag_set([("site", t.site), ("grid", grid), ("building", building), ("layer", layer),
                        ("device_kind", t.device_kind), ("device_id", t.device_id)])
        series = _Series(t.site, t.device_kind, d, tags)
        if len(self._series) >= self.max_devices:
            self._series.clear()
        self._series[t.device_id] = series
        return series

    def build(self, msg: Accepted) -> str:
        """The point for one message."""
        env = msg.envelope
        body = env.body
        t = msg.topic
        series = self._series.get(t.device_id)
        if series is None or series.device is not msg.device or series.site != t.site or series.kind != t.device_kind:
            series = self._new_series(msg)
        body_type = body.type
        head = series.heads.get(body_type)
        if head is None:
            head = series.heads[body_type] = f"{escape_measurement(body_type)}{series.tags} seq="
        # seq is bounded to int64 by the wire model; fields go straight onto one string (CPython appends in
        # place), with the common exact types formatted inline rather than through a call each.
        out = f"{head}{env.seq}i,historical=true" if env.historical else f"{head}{env.seq}i,historical=false"
        keq = _KEY_EQ.get
        for name, value in body.__dict__.items():
            kind = type(value)
            if kind is float:
                if value - value != 0.0:  # inf - inf and nan - nan are nan: not storable
                    raise LineProtocolError(f"float {value} cannot be stored")
                out += f",{keq(name) or _key_eq(name)}{value!r}"
            elif kind is str:
                if name != "type":
                    out += f",{keq(name) or _key_eq(name)}\"{value.translate(STR_TABLE)}\""
            elif value is None:
                continue
            elif kind is bool or kind is int:
                out += f",{keq(name) or _key_eq(name)}{FORMAT[kind](value)}"
            elif kind is tuple:
                out += f",{keq(name) or _key_eq(name)}{format_value(','.join(value))}"
            elif hasattr(value, "__dict__") and not isinstance(value, str | int | float | bool):
                for sub, v in value.__dict__.items():
                    if v is not None:
                        out += f",{field_key(f'{name}_{sub}')}={format_value(v)}"
            else:
                out += f",{keq(name) or _key_eq(name)}{format_value(value)}"
        # A state is stamped by _state_us (a will after its agent's online); every other body by its own ts.
        return f"{out} {self._state_us(msg) if body_type == 'state' else to_us(env.ts)}"


_KEY_EQ: dict[str, str] = {}  # field name -> "escaped_name=": the wire models' few dozen names


def _key_eq(name: str) -> str:
    out = field_key(name) + "="
    if len(_KEY_EQ) < 4096:
        _KEY_EQ[name] = out
    return out


def dead_letter_point(dl: DeadLetter, site: str = "") -> str:
    """A dead letter as a point (reason as tag; the untrusted topic only as a field; no payload)."""
    tags = {"reason": dl.reason, "worker": dl.worker}
    if site:
        tags["site"] = site
    return line("hub_dead_letter", tags, {"topic": safe_topic(dl.topic)[:512], "payload_bytes": dl.payload_bytes,
                                          "detail": dl.detail[:512]}, to_us(dl.received_at))

