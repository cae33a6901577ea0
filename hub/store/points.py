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
from hub.store.lineproto import FORMAT, escape_measurement, field_key, format_value, line, tag_set

PRECISION = "us"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)
UNASSIGNED = "_unassigned"


def to_us(ts: datetime) -> int:
    """A timezone-aware datetime as integer microseconds since the epoch, exactly."""
    return (ts - _EPOCH) // _US


class PointBuilder:
    """Turns accepted messages into lines; caches each device's and body type's line head."""

    def __init__(self) -> None:
        # (site, device_kind, device_id, body type) -> "measurement,tags seq=": the series key is built once
        # per device and body type, and a message only formats its fields and timestamp.
        self._heads: dict[tuple[str, str, str, str], str] = {}
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
            if len(self._states) > 200_000:
                self._states.clear()
            self._states[env.device_id] = us
        return us

    def _head(self, msg: Accepted, key: tuple[str, str, str, str]) -> str:
        t = msg.topic
        d = msg.device
        if d is not None:
            grid, building, layer = d.grid, d.building or UNASSIGNED, d.effective_layer.value
        else:
            grid, building = UNASSIGNED, UNASSIGNED
            layer = KIND_LAYER[DeviceKind(t.device_kind)].value
        tags = tag_set([("site", t.site), ("grid", grid), ("building", building), ("layer", layer),
                        ("device_kind", t.device_kind), ("device_id", t.device_id)])
        head = f"{escape_measurement(key[3])}{tags} seq="
        if len(self._heads) > 200_000:
            self._heads.clear()
        self._heads[key] = head
        return head

    def build(self, msg: Accepted) -> str:
        """The point for one message."""
        env = msg.envelope
        body = env.body
        t = msg.topic
        key = (t.site, t.device_kind, t.device_id, body.type)
        head = self._heads.get(key) or self._head(msg, key)
        # seq is bounded to int64 by the wire model; fields go straight to text (no dict, no generator).
        parts = [f"{head}{env.seq}i", "historical=true" if env.historical else "historical=false"]
        add = parts.append
        fmt = FORMAT.get
        keq = _KEY_EQ.get
        for name, value in body.__dict__.items():
            if value is None or name == "type":
                continue
            f = fmt(type(value))
            if f is not None:
                add((keq(name) or _key_eq(name)) + f(value))
            elif isinstance(value, tuple):
                add((keq(name) or _key_eq(name)) + format_value(",".join(value)))
            elif hasattr(value, "__dict__") and not isinstance(value, str | int | float | bool):
                for sub, v in value.__dict__.items():
                    if v is not None:
                        add(f"{field_key(f'{name}_{sub}')}={format_value(v)}")
            else:
                add((keq(name) or _key_eq(name)) + format_value(value))
        # A state is stamped by _state_us (a will after its agent's online); every other body by its own ts.
        us = self._state_us(msg) if body.type == "state" else to_us(env.ts)
        return f"{','.join(parts)} {us}"


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

