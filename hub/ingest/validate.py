"""Turn (topic, payload) into an Accepted message or a DeadLetter saying why not.

A topic must name this community's site, a device of the community model and that device's kind (unknown
devices are accepted only with hub.discovery on; an edge agent's own pseudo-device, kind `agent`, always).
Nothing from a payload, and no topic level that is not an identifier, is ever quoted in a dead letter's detail
or a log line: a detail names the field and the rule it broke. The topic cache is bounded by bytes, and only
topics that passed are cached.
"""

from __future__ import annotations

import base64
import functools
import re
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from commhub import topics
from commhub.community import Device
from commhub.topics import Channel, TopicError, TopicParts
from commhub.wire import KIND_BODIES, DeadLetter, DeviceKind, body_channel, parse_envelope
from hub.ingest.message import Accepted

_KINDS = {k.value: k for k in DeviceKind}
_AGENT = DeviceKind.AGENT.value
_CHANNELS = {c.value for c in Channel}
_LEVEL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$")
_LEVEL_NAMES = ("root", "version", "site", "device_kind", "device_id", "channel", "extra")
_FIELD = re.compile(r"^[a-z][a-z0-9_]{0,47}$")
# pydantic ctx entries that hold our own limits (never the input).
_LIMITS = ("gt", "ge", "lt", "le", "min_length", "max_length", "expected", "pattern")
_ENTRY_BYTES = 400  # a cached topic's bookkeeping besides its text (dict slot, TopicParts, tuple)


class Refusal(tuple[str, str]):
    """(reason, detail) for a topic the community model refuses."""

    __slots__ = ()

    @property
    def reason(self) -> str:
        """The dead-letter reason."""
        return self[0]

    @property
    def detail(self) -> str:
        """What was wrong, quoting nothing from the message."""
        return self[1]


def safe_topic(topic: str) -> str:
    """The topic for logs: identifier levels as they are, anything else as <invalid>, at most 7 levels."""
    levels = topic.split("/")
    out = [lv if _LEVEL.match(lv) else "<invalid>" for lv in levels[:7]]
    if len(levels) > 7:
        out.append(f"<{len(levels) - 7} more levels>")
    return "/".join(out)


def schema_detail(e: ValidationError) -> tuple[str, str]:
    """(reason, detail) for a payload that failed the schema: the field and the rule, never the input."""
    errs = e.errors(include_input=False, include_url=False, include_context=True)
    reason = "json" if any(x["type"] == "json_invalid" for x in errs) else "schema"
    return reason, "; ".join(_describe(x) for x in errs[:5])


def _describe(err: Any) -> str:
    loc = list(err["loc"])
    kind = str(err["type"])
    if kind == "extra_forbidden" and loc:
        loc = loc[:-1]  # the unexpected key itself is the sender's text
    path = ".".join(str(p) if isinstance(p, int) or _FIELD.match(str(p)) else "<key>" for p in loc) or "<root>"
    if kind == "extra_forbidden":
        return f"{path}: unexpected field (extra_forbidden)"
    ctx = err.get("ctx") or {}
    if kind == "union_tag_invalid":  # its ctx also holds the sender's tag: name only what we expect
        limits = f"expected one of: {ctx.get('expected_tags', '')}"
    else:
        limits = ", ".join(f"{k}={ctx[k]}" for k in _LIMITS if k in ctx)
    return f"{path}: {kind}" + (f" ({limits})" if limits else "")


class Route:
    """What a cached topic admits: its parts, its registry entry, and the body types it may carry."""

    __slots__ = ("accepts", "device", "parts")

    def __init__(self, parts: TopicParts, device: Device | None) -> None:
        self.parts = parts
        self.device = device
        # The kind's body types that travel on this channel: a valid message is one set lookup.
        self.accepts = _accepts(parts.device_kind, parts.channel.value)


@functools.cache
def _accepts(kind: str, channel: str) -> frozenset[str]:
    """Body types a device kind may send on a channel (one shared set per pair, not one per cached topic)."""
    return frozenset(t for t in KIND_BODIES[_KINDS[kind]] if body_channel(t) == channel)


class Validator:
    """Checks topic grammar, the community model, payload schema and the agreement between them.

    The registry is the community model the worker started with: the hub has no reload (a changed model takes
    a restart, as every other setting does), so a cached route's registry entry is never stale.
    """

    def __init__(self, root: str, registry: dict[str, Device], worker: str, site: str | None = None,
                 discovery: bool = False, cache_bytes: int = 8_000_000) -> None:
        self.root = root
        self.registry = registry
        self.worker = worker
        self.site = site
        self.discovery = discovery
        self.cache_bytes = cache_bytes
        self._topics: dict[str, Route] = {}
        self._cached_bytes = 0

    def parse_topic(self, topic: str) -> TopicParts | Refusal:
        """Parsed parts of a topic the community model admits, or the refusal (cached when admitted)."""
        route = self.route(topic)
        return route if isinstance(route, Refusal) else route.parts

    def route(self, topic: str) -> Route | Refusal:
        """What a topic admits (cached when admitted), or the refusal; check() takes it, saving a lookup."""
        cached = self._topics.get(topic)
        if cached is not None:
            return cached
        verdict = self._parse(topic)
        if isinstance(verdict, Refusal):
            return verdict
        route = Route(verdict, self.registry.get(verdict.device_id))
        size = len(topic) + _ENTRY_BYTES
        if self._cached_bytes + size > self.cache_bytes:
            self._topics.clear()
            self._cached_bytes = 0
        self._topics[topic] = route
        self._cached_bytes += size
        return route

    def _parse(self, topic: str) -> TopicParts | Refusal:
        levels = topic.split("/")
        if len(levels) not in (6, 7):
            return Refusal(("topic", f"expected root/v1/site/device_kind/device_id/channel, got {len(levels)} "
                                     "levels"))
        for i, level in enumerate(levels):
            if not _LEVEL.match(level):
                return Refusal(("topic", f"topic level {i + 1} ({_LEVEL_NAMES[i]}) is not an identifier "
                                         "(1-64 of A-Z a-z 0-9 _ . : -, starting with a letter or digit)"))
        if levels[5] not in _CHANNELS:
            return Refusal(("topic", "unknown channel"))
        try:
            parts = topics.parse(topic, self.root)
        except TopicError:
            return Refusal(("topic", f"not a device topic under {self.root}/{topics.VERSION}"))
        if parts.device_kind not in _KINDS:
            return Refusal(("topic", "unknown device kind"))
        if self.site is not None and parts.site != self.site:
            return Refusal(("site_mismatch", f"the topic's site is not this community's ({self.site})"))
        device = self.registry.get(parts.device_id)
        if device is None:
            # An edge agent's own pseudo-device (its birth, will and heartbeats) is not in the community model;
            # which agents may publish there is the broker ACL's business (provisioned per agent).
            if not self.discovery and parts.device_kind != _AGENT:
                return Refusal(("unknown_device", f"device {parts.device_id} is not in the community model "
                                                  "(hub.discovery is off)"))
        elif device.kind.value != parts.device_kind:
            return Refusal(("kind_mismatch", f"device {parts.device_id} is a {device.kind.value}, "
                                             f"not a {parts.device_kind}"))
        return parts

    def check(self, topic: str, payload: bytes, received_at: float,
              route: Route | Refusal | None = None) -> Accepted | DeadLetter:
        """Validate one envelope message (evt, tele, state, birth); `route` is route(topic) if known."""
        if route is None:
            route = self.route(topic)
        if isinstance(route, Refusal):
            return self.reject(route.reason, route.detail, topic, payload, received_at)
        try:
            env = parse_envelope(payload)
        except ValidationError as e:
            reason, detail = schema_detail(e)
            return self.reject(reason, detail, topic, payload, received_at)
        parts = route.parts
        if env.device_id != parts.device_id:
            # Both ids passed the identifier pattern: safe to name.
            return self.reject("device_mismatch", f"payload device_id {env.device_id} is not the topic's "
                               f"{parts.device_id}", topic, payload, received_at)
        body_type = env.body.type
        if body_type in route.accepts:
            return Accepted(parts, env, route.device, received_at)
        if body_type not in KIND_BODIES[_KINDS[parts.device_kind]]:
            return self.reject("kind_body", f"a {parts.device_kind} may not send {body_type}",
                               topic, payload, received_at)
        if body_channel(body_type) != parts.channel.value:
            return self.reject("channel_body", f"{body_type} belongs on channel {body_channel(body_type)!r}, "
                               f"not {parts.channel.value!r}", topic, payload, received_at)
        return Accepted(parts, env, route.device, received_at)  # not reached: accepts is kind and channel

    def reject(self, reason: str, detail: str, topic: str, payload: bytes, received_at: float) -> DeadLetter:
        """Build the dead letter for a refused message."""
        return DeadLetter(reason=reason, detail=detail[:2000], topic=topic[:65535],  # type: ignore[arg-type]
                          payload_b64=base64.b64encode(payload[:65536]).decode(), payload_bytes=len(payload),
                          received_at=datetime.fromtimestamp(received_at, UTC), worker=self.worker)
