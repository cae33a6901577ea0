"""The topic grammar: builders, parser, filter validation and matching (incl. what paho gets wrong)."""

from __future__ import annotations

import pytest

from commhub import topics
from commhub.topics import Channel, TopicError


def test_build_and_parse_round_trip() -> None:
    t = topics.event("commhub", "sunrise", "door_controller", "door-b01-u1")
    assert t == "commhub/v1/sunrise/door_controller/door-b01-u1/evt"
    p = topics.parse(t, "commhub")
    assert (p.root, p.site, p.device_kind, p.device_id, p.channel) == (
        "commhub", "sunrise", "door_controller", "door-b01-u1", Channel.EVT)


def test_snapshot_topic_has_an_id() -> None:
    t = topics.snapshot("commhub", "s", "camera", "cam-1", "snap-42")
    assert topics.parse(t).extra == "snap-42"
    with pytest.raises(TopicError):
        topics.parse("commhub/v1/s/camera/cam-1/snap")
    with pytest.raises(TopicError):
        topics.parse("commhub/v1/s/camera/cam-1/evt/extra")


@pytest.mark.parametrize("bad", ["a+b", "x#", "with/slash", "", "$sys", "nul\x00"])
def test_builders_refuse_bad_levels(bad: str) -> None:
    with pytest.raises(TopicError):
        topics.telemetry("commhub", "site", "gas", bad)


@pytest.mark.parametrize("topic,why", [
    ("commhub/v2/s/gas/g1/tele", "version"),
    ("other/v1/s/gas/g1/tele", "root"),
    ("commhub/v1/s/gas/g1/blah", "unknown channel"),
    ("commhub/v1/s/gas/tele", "levels"),
    ("commhub/v1//gas/g1/tele", "empty"),
    ("commhub/v1/s/gas/+/tele", "may not contain"),
    ("", "empty"),
])
def test_parse_refuses(topic: str, why: str) -> None:
    with pytest.raises(TopicError, match=why):
        topics.parse(topic, "commhub")


@pytest.mark.parametrize("f", ["foo+", "#foo", "foo/#/bar", "a/b#", "+a/b", "", "a/\x00"])
def test_invalid_filters_are_refused(f: str) -> None:
    # paho-mqtt 2.2.0's topic_matches_sub accepts several of these; the spec says they are invalid.
    with pytest.raises(TopicError):
        topics.validate_filter(f)


@pytest.mark.parametrize("f,t,expected", [
    ("commhub/v1/#", "commhub/v1/s/gas/g1/tele", True),
    ("commhub/v1/+/gas/+/tele", "commhub/v1/s/gas/g1/tele", True),
    ("commhub/v1/+/gas/+/tele", "commhub/v1/s/smoke/g1/tele", False),
    ("sport/#", "sport", True),  # '#' also matches the parent level (MQTT 5 4.7.1.2)
    ("sport/+", "sport", False),
    ("+/+", "/finance", True),
    ("#", "$SYS/broker", False),  # wildcards at the first level never match '$' topics
    ("$SYS/#", "$SYS/broker", True),
    ("a/b", "a/b/c", False),
    ("commhub/hub/v1/#", "commhub/v1/s/gas/g1/tele", False),
])
def test_matches(f: str, t: str, expected: bool) -> None:
    assert topics.matches(f, t) is expected


def test_hub_output_is_outside_the_device_filter() -> None:
    dev_filter = topics.devices_filter("commhub")
    assert not topics.matches(dev_filter, topics.dead_letter("commhub"))
    assert not topics.matches(dev_filter, topics.alert("commhub", "s", "g1", "high"))
    assert topics.matches(topics.alerts_filter("commhub"), topics.alert("commhub", "s", "g1", "high"))


def test_shared_subscription() -> None:
    assert topics.shared("hub", "commhub/v1/#") == "$share/hub/commhub/v1/#"
    with pytest.raises(TopicError):
        topics.shared("hub", "commhub/#/x")
    with pytest.raises(TopicError):
        topics.shared("h/b", "commhub/v1/#")


def test_a_sites_filter_takes_its_own_devices_and_no_other_sites() -> None:
    mine = topics.site_filter("commhub", "sunrise")
    assert topics.matches(mine, topics.telemetry("commhub", "sunrise", "gas", "g1"))
    assert topics.matches(mine, topics.snapshot("commhub", "sunrise", "camera", "c1", "s1"))
    assert not topics.matches(mine, topics.telemetry("commhub", "sunset", "gas", "g1"))
    assert not topics.matches(mine, topics.telemetry("commhub", "sunrise2", "gas", "g1"))  # a prefix is not the site
    assert not topics.matches(mine, topics.dead_letter("commhub"))
    assert topics.matches(topics.devices_filter("commhub"), topics.telemetry("commhub", "sunset", "gas", "g1"))


@pytest.mark.parametrize("site", ["", "a/b", "+", "#", "$sys", "a\x00b"])
def test_a_site_that_would_widen_or_break_the_filter_is_refused(site: str) -> None:
    with pytest.raises(TopicError):
        topics.site_filter("commhub", site)


def test_a_sites_alerts_filter_takes_its_own_cells_and_no_other_sites() -> None:
    mine = topics.alerts_filter("commhub", "sunrise")
    assert topics.matches(mine, topics.alert("commhub", "sunrise", "g1", "high"))
    assert not topics.matches(mine, topics.alert("commhub", "sunset", "g1", "high"))
    assert topics.matches(topics.alerts_filter("commhub"), topics.alert("commhub", "sunset", "g1", "high"))
    with pytest.raises(TopicError):
        topics.alerts_filter("commhub", "+")
