"""The hand serializer against InfluxData's line-protocol corpus, compared by parsing (floats format differently)."""

from __future__ import annotations

import enum
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from conftest import influx_query
from lineproto_reference import from_corpus_point, parse

from commhub.community import Community
from commhub.services import Influxd
from commhub.topics import parse as parse_topic
from commhub.wire import Box, CameraObject, Envelope, GasReading
from hub.ingest.message import Accepted
from hub.store.lineproto import LineProtocolError, format_value, line
from hub.store.points import PointBuilder, to_us


def _corpus(shared: Path) -> list[dict[str, Any]]:
    data = json.loads((shared / "vectors" / "line-protocol-corpus.json").read_text())
    return list(data["encode"].values())


def _encode(point: dict[str, Any]) -> str:
    fields: dict[str, Any] = {}
    for f in point["fields"]:
        (kind, v), = f["value"].items()
        fields[f["key"]] = {"float": float, "int": int, "bool": bool, "string": str}[kind](v)
    tags = {t["key"]: t["value"] for t in point["tags"]}
    return line(point["name"], tags, fields, point["time"])


def test_corpus_encodes_match_by_meaning(shared_data: Path) -> None:
    cases = _corpus(shared_data)
    checked = 0
    for case in cases:
        point = case["input"]["point"]
        if any("uint" in f["value"] for f in point["fields"]):
            continue  # InfluxDB 1.x has no unsigned type; we never produce one
        expected = case["output"]
        if "error" in expected:
            with pytest.raises(LineProtocolError):
                _encode(point)
            continue
        ours = _encode(point)
        # the reference parser reads the corpus' own expected line back to the input point...
        assert parse(expected["result"]) == from_corpus_point(point)
        # ...and reads ours to the same point
        assert parse(ours) == from_corpus_point(point), (ours, expected["result"])
        checked += 1
    assert checked >= 110


def test_refuses_what_influx_cannot_store() -> None:
    for bad in (float("nan"), float("inf"), 2**63):
        with pytest.raises(LineProtocolError):
            format_value(bad)
    with pytest.raises(LineProtocolError):
        line("m", {}, {"x": None})
    with pytest.raises(LineProtocolError):
        line("m", {"k": ""}, {"x": 1})
    with pytest.raises(LineProtocolError):
        format_value((1, 2))  # type: ignore[arg-type]  # a container is no field value (points joins or expands)


def test_subclasses_are_written_as_their_base_type_and_checked_alike() -> None:
    class Level(enum.IntEnum):
        HIGH = 3

    class Mode(str, enum.Enum):  # noqa: UP042  # str() of this mix-in is "Mode.AUTO", not its value
        AUTO = 'a "b"'

    class Big(int):
        pass

    written = [format_value(v) for v in (Level.HIGH, Mode.AUTO, -float("0"), True)]
    assert written == ["3i", '"a \\"b\\""', "-0.0", "true"]
    assert line("m", {}, {"level": Level.HIGH, "mode": Mode.AUTO}) == 'm level=3i,mode="a \\"b\\""'
    with pytest.raises(LineProtocolError):
        format_value(Big(2**63))


@pytest.mark.services
def test_influxd_accepts_our_corpus_encodings(shared_data: Path, influxd: Influxd) -> None:
    import httpx
    written = 0
    with httpx.Client(base_url=influxd.url) as http:
        for i, case in enumerate(_corpus(shared_data)):
            point = case["input"]["point"]
            if "error" in case["output"] or any("uint" in f["value"] for f in point["fields"]):
                continue
            db = f"lp_corpus_{i}"  # one database per case: cases reuse names with other field types
            http.post("/query", params={"q": f"CREATE DATABASE {db}"}).raise_for_status()
            r = http.post("/write", params={"db": db, "precision": "n"}, content=_encode(point))
            assert r.status_code == 204, (_encode(point), r.text)
            name = point["name"].replace("\\", "\\\\").replace('"', '\\"')
            series = influx_query(influxd.url, db, f'SELECT * FROM "{name}"')
            assert series and series[0]["name"] == point["name"]
            written += 1
    assert written >= 110


def test_points_schema() -> None:
    community = Community.model_validate({
        "site": {"id": "s"}, "grids": [{"id": "g1", "buildings": [{"id": "b1", "units": ["u1"]}]}],
        "devices": [{"id": "cam-1", "kind": "camera", "grid": "g1", "building": "b1", "unit": "u1"}]})
    ts = datetime(2026, 1, 1, 0, 0, 0, 123456, tzinfo=UTC)
    env = Envelope(device_id="cam-1", ts=ts, seq=7, body=CameraObject(
        event_id="e1", phase="new", label="person", score=0.5, box=Box(x=1, y=2, w=3, h=4), zones=("gate", "lawn")))
    msg = Accepted(parse_topic("commhub/v1/s/camera/cam-1/evt"), env, community.device_index()["cam-1"], 0.0)
    name, tags, fields, t = parse(PointBuilder().build(msg))
    assert name == "camera_object"
    assert tags == {"site": "s", "grid": "g1", "building": "b1", "layer": "technical", "device_kind": "camera",
                    "device_id": "cam-1"}
    assert fields["seq"] == ("int", 7) and fields["zones"] == "gate,lawn" and fields["box_w"] == ("int", 3)
    assert "type" not in fields
    assert t == to_us(ts) == 1767225600123456
    unregistered = Accepted(parse_topic("commhub/v1/s/gas/x-1/tele"),
                            Envelope(device_id="x-1", ts=ts, seq=1, body=GasReading(lel_pct=1.0)), None, 0.0)
    _, tags2, _, _ = parse(PointBuilder().build(unregistered))
    assert tags2["grid"] == "_unassigned" and tags2["layer"] == "facility"
