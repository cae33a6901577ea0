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

from commhub.wire import KIND_LAYER, DeadLetter, DeviceKind
from hub.ingest.message import Accepted
from hub.ingest.validate import safe_topic
from hub.store.lineproto import LineProtocolError, escape_measurement, line, tag_set, write_fields

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
    """One device's cached tag set, valid for the topic site and kind it was built from."""

    __slots__ = ("heads", "kind", "site", "tags")

    def __init__(self, site: str, kind: str, tags: str) -> None:
        self.site = site
        self.kind = kind
        self.tags = tags
        self.heads: dict[str, str] = {}  # body type -> "measurement,tags seq="


class PointBuilder:
    """Turns accepted messages into lines; caches each device's tag set and line heads."""

    def __init__(self, max_devices: int = 200_000) -> None:
        # device id -> its tags and line heads: a message only formats its fields and timestamp. The registry
        # is the community model the worker started with (a changed model takes a restart), so a device's
        # entry never changes; an entry is used only for the topic site and kind it was built from, since an
        # unregistered device (an agent, or any device with hub.discovery) may change kind on the wire.
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
        series = _Series(t.site, t.device_kind, tags)
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
        if series is None or series.kind != t.device_kind or series.site != t.site:
            series = self._new_series(msg)
        body_type = body.type
        head = series.heads.get(body_type)
        if head is None:
            head = series.heads[body_type] = f"{escape_measurement(body_type)}{series.tags} seq="
        # seq is bounded to int64 by the wire model.
        out = f"{head}{env.seq}i,historical=true" if env.historical else f"{head}{env.seq}i,historical=false"
        out += write_fields(body.__dict__.items(), "type", _expand)
        # A state is stamped by _state_us (a will after its agent's online); every other body by its own ts.
        return f"{out} {self._state_us(msg) if body_type == 'state' else to_us(env.ts)}"


def _expand(name: str, value: object) -> list[tuple[str, object]]:
    """A body value that is no plain field: a list of zones as one string, a nested box as one field a member."""
    if type(value) is tuple:
        return [(name, ",".join(value))]
    if hasattr(value, "__dict__"):
        return [(f"{name}_{sub}", v) for sub, v in value.__dict__.items()]
    raise LineProtocolError(f"unsupported field type {type(value).__name__}")


def dead_letter_point(dl: DeadLetter, site: str = "") -> str:
    """A dead letter as a point (reason as tag; the untrusted topic only as a field; no payload)."""
    tags = {"reason": dl.reason, "worker": dl.worker}
    if site:
        tags["site"] = site
    return line("hub_dead_letter", tags, {"topic": safe_topic(dl.topic)[:512], "payload_bytes": dl.payload_bytes,
                                          "detail": dl.detail[:512]}, to_us(dl.received_at))

