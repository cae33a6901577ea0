"""MQTT topic grammar: every topic the project uses is built or parsed here."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

VERSION = "v1"
SHARE_PREFIX = "$share/"
_MAX_TOPIC_BYTES = 65535


class Channel(StrEnum):
    """The last level of a device topic."""

    EVT = "evt"
    TELE = "tele"
    STATE = "state"
    BIRTH = "birth"
    CMD = "cmd"
    SNAP = "snap"


class TopicError(ValueError):
    """A topic or filter does not follow the grammar."""


@dataclass(frozen=True, slots=True)
class TopicParts:
    """The pieces of a device topic."""

    root: str
    site: str
    device_kind: str
    device_id: str
    channel: Channel
    extra: str = ""  # only for snap: the snapshot id


def _check_level(name: str, value: str) -> str:
    if not value:
        raise TopicError(f"{name} is empty")
    if any(c in value for c in "/+#\x00"):
        raise TopicError(f"{name} {value!r} contains one of '/', '+', '#' or NUL")
    if value.startswith("$"):
        raise TopicError(f"{name} {value!r} starts with '$'")
    return value


def device(root: str, site: str, kind: str, device_id: str, channel: Channel | str) -> str:
    """Build the topic a device publishes on."""
    ch = Channel(channel)
    parts = [_check_level("root", root), VERSION, _check_level("site", site),
             _check_level("device_kind", kind), _check_level("device_id", device_id), ch.value]
    return "/".join(parts)


def event(root: str, site: str, kind: str, device_id: str) -> str:
    """Topic for a device's events."""
    return device(root, site, kind, device_id, Channel.EVT)


def telemetry(root: str, site: str, kind: str, device_id: str) -> str:
    """Topic for a device's periodic readings."""
    return device(root, site, kind, device_id, Channel.TELE)


def state(root: str, site: str, kind: str, device_id: str) -> str:
    """Retained online/offline topic, also the will topic."""
    return device(root, site, kind, device_id, Channel.STATE)


def birth(root: str, site: str, kind: str, device_id: str) -> str:
    """Topic for a device's birth certificate."""
    return device(root, site, kind, device_id, Channel.BIRTH)


def command(root: str, site: str, kind: str, device_id: str) -> str:
    """Topic the hub sends commands to a device on."""
    return device(root, site, kind, device_id, Channel.CMD)


def snapshot(root: str, site: str, kind: str, device_id: str, snapshot_id: str) -> str:
    """Topic carrying one JPEG snapshot, referenced from a camera event."""
    return device(root, site, kind, device_id, Channel.SNAP) + "/" + _check_level("snapshot_id", snapshot_id)


def devices_filter(root: str) -> str:
    """Filter matching every device topic under the root."""
    return f"{_check_level('root', root)}/{VERSION}/#"


def site_filter(root: str, site: str) -> str:
    """Filter matching every device topic of one site (a community): what its hub takes from a shared broker."""
    return f"{_check_level('root', root)}/{VERSION}/{_check_level('site', site)}/#"


def shared(group: str, topic_filter: str) -> str:
    """Wrap a filter in an MQTT 5 shared subscription."""
    _check_level("share group", group)
    validate_filter(topic_filter)
    return f"{SHARE_PREFIX}{group}/{topic_filter}"


def hub_root(root: str) -> str:
    """Root of topics the hub itself publishes; outside the device filter so the hub never eats its output."""
    return f"{_check_level('root', root)}/hub/{VERSION}"


def dead_letter(root: str) -> str:
    """Where invalid messages go, with the reason."""
    return f"{hub_root(root)}/deadletter"


def alert(root: str, site: str, grid: str, severity: str) -> str:
    """Topic of alert notifications for one grid cell."""
    return "/".join([hub_root(root), "alerts", _check_level("site", site), _check_level("grid", grid),
                     _check_level("severity", severity)])


def alerts_filter(root: str, site: str | None = None) -> str:
    """Filter matching every alert notification (of one site, when given: a community's on a shared broker)."""
    if site is None:
        return f"{hub_root(root)}/alerts/#"
    return f"{hub_root(root)}/alerts/{_check_level('site', site)}/#"


def parse(topic: str, root: str | None = None) -> TopicParts:
    """Split a device topic into its parts, or raise TopicError saying why not."""
    validate_topic(topic)
    levels = topic.split("/")
    if len(levels) not in (6, 7):
        raise TopicError(f"expected root/{VERSION}/site/kind/device_id/channel, got {len(levels)} levels")
    t_root, version, site, kind, device_id, channel = levels[:6]
    if root is not None and t_root != root:
        raise TopicError(f"root {t_root!r} is not {root!r}")
    if version != VERSION:
        raise TopicError(f"version {version!r} is not {VERSION!r}")
    for name, value in (("site", site), ("device_kind", kind), ("device_id", device_id)):
        if not value:
            raise TopicError(f"{name} is empty")
    try:
        ch = Channel(channel)
    except ValueError:
        raise TopicError(f"unknown channel {channel!r}") from None
    extra = ""
    if len(levels) == 7:
        if ch is not Channel.SNAP or not levels[6]:
            raise TopicError("only a snap topic has a seventh level")
        extra = levels[6]
    elif ch is Channel.SNAP:
        raise TopicError("a snap topic needs a snapshot id")
    return TopicParts(t_root, site, kind, device_id, ch, extra)


def validate_topic(topic: str) -> str:
    """Check a publish topic (MQTT 5 §4.7): no wildcards, not empty, not too long."""
    if not topic:
        raise TopicError("topic is empty")
    if len(topic.encode()) > _MAX_TOPIC_BYTES:
        raise TopicError("topic is longer than 65535 bytes")
    if "\x00" in topic:
        raise TopicError("topic contains NUL")
    if "+" in topic or "#" in topic:
        raise TopicError("a publish topic may not contain '+' or '#'")
    return topic


def validate_filter(topic_filter: str) -> str:
    """Check a subscribe filter; paho's topic_matches_sub accepts invalid ones, so we do not rely on it."""
    if not topic_filter:
        raise TopicError("filter is empty")
    if len(topic_filter.encode()) > _MAX_TOPIC_BYTES:
        raise TopicError("filter is longer than 65535 bytes")
    if "\x00" in topic_filter:
        raise TopicError("filter contains NUL")
    levels = topic_filter.split("/")
    for i, level in enumerate(levels):
        if "#" in level and (level != "#" or i != len(levels) - 1):
            raise TopicError(f"'#' must be a whole level and the last one: {topic_filter!r}")
        if "+" in level and level != "+":
            raise TopicError(f"'+' must be a whole level: {topic_filter!r}")
    return topic_filter


def matches(topic_filter: str, topic: str) -> bool:
    """Whether a valid filter matches a valid topic, per MQTT 5 §4.7 ('$' topics and wildcards)."""
    validate_filter(topic_filter)
    validate_topic(topic)
    f_levels = topic_filter.split("/")
    t_levels = topic.split("/")
    if topic.startswith("$") and f_levels[0] in ("+", "#"):
        return False
    for i, f in enumerate(f_levels):
        if f == "#":
            return True
        if i >= len(t_levels):
            return False
        if f != "+" and f != t_levels[i]:
            return False
    return len(f_levels) == len(t_levels)
