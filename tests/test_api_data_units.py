"""Pure parts of the API's data routes: InfluxQL quoting and scope clauses, cursors, evidence packages, keys."""

from __future__ import annotations

import base64
import io
import json
import os
import stat
import zipfile
from pathlib import Path
from typing import Any

import pytest
from alerts_helpers import community

from api.data import influxql
from api.data.events import EventQuery, TelemetryQuery, decode_cursor, encode_cursor
from api.data.evidence import (
    EvidenceKeyError,
    Package,
    build_zip,
    load_or_create_key,
    load_public_key,
    public_pem,
    verify_zip,
)
from api.data.influxql import QueryError
from api.data.scope import check_place, visible
from api.services.errors import NotFound
from api.services.scope import Principal


def _p(role: str, grids: set[str] | None = None, buildings: set[str] | None = None) -> Principal:
    return Principal("u", role, frozenset(grids) if grids is not None else None,
                     frozenset(buildings) if buildings is not None else None)


def test_string_literal_escapes_quote_backslash_and_newline() -> None:
    assert influxql.string("g1") == "'g1'"
    assert influxql.string("a'b") == r"'a\'b'"
    assert influxql.string("a\\'") == r"'a\\\''"
    assert influxql.string("x\ny") == r"'x\ny'"
    with pytest.raises(QueryError):
        influxql.string("nul\x00")


@pytest.mark.parametrize("name", ['a"b', "a b", "", "1abc", "a;DROP", "a\nb", "grid'", "é"])
def test_identifiers_other_than_plain_names_are_refused(name: str) -> None:
    with pytest.raises(QueryError):
        influxql.ident(name)


def test_scope_clauses_restrict_grid_building_and_layer() -> None:
    assert influxql.scope_clauses(_p("security_staff")) == []
    assert influxql.scope_clauses(_p("grid_worker", {"g2", "g1"})) == ["(\"grid\" = 'g1' OR \"grid\" = 'g2')"]
    prop = influxql.scope_clauses(_p("property", buildings={"b1"}))
    assert prop == ["(\"building\" = 'b1')", "(\"layer\" = 'facility')"]
    # no cells at all: a condition no point meets (every point has a site tag), never "no condition"
    assert influxql.scope_clauses(_p("grid_worker", set())) == ["\"site\" = ''"]
    assert not visible(_p("grid_worker", set())) and visible(_p("grid_worker", {"g1"}))


def test_check_place_is_404_outside_reach_and_for_unknown_places() -> None:
    c = community()
    gw1 = _p("grid_worker", {"g1"})
    check_place(c, gw1, "g1", "b1")
    for grid, building in (("g2", None), (None, "b3"), ("g9", None), (None, "b9"), ("g1", "b3")):
        with pytest.raises(NotFound):
            check_place(c, gw1, grid, building)
    with pytest.raises(NotFound):
        check_place(c, _p("property", buildings={"b1"}), None, "b2")


def test_cursor_round_trip_and_forgeries() -> None:
    assert decode_cursor(encode_cursor(1_700_000_000_000_000_000, 3)) == (1_700_000_000_000_000_000, 3)
    for bad in ("", "!!!", base64.urlsafe_b64encode(b"x:1").decode(), base64.urlsafe_b64encode(b"-5:0").decode(),
                base64.urlsafe_b64encode(b"1' OR '1:0").decode()):
        with pytest.raises(QueryError):
            decode_cursor(bad)


def test_query_models_refuse_what_cannot_be_a_safe_query() -> None:
    events: list[dict[str, Any]] = [{"grid": "g1' OR '1'='1"}, {"device_id": 'a"b'}, {"type": "door_opened; DROP"},
                                    {"type": "nope"}, {"start": 10.0, "end": 5.0}, {"limit": 0}, {"bogus": 1}]
    for bad in events:
        with pytest.raises(ValueError):
            EventQuery.model_validate(bad)
    charts: list[dict[str, Any]] = [{"measurement": "gas_reading", "field": "lel_pct) FROM x --"},
                                    {"measurement": "gas_reading\"", "field": "lel_pct"},
                                    {"measurement": "gas_reading", "field": "lel_pct", "agg": ["median"]},
                                    {"measurement": "gas_reading", "field": "lel_pct", "interval": "1h) fill(0"},
                                    {"measurement": "access_granted", "field": "credential_ref"}]  # not numeric
    for bad in charts:
        with pytest.raises(ValueError):
            TelemetryQuery.model_validate(bad)
    assert TelemetryQuery.model_validate({"measurement": "gas_reading", "field": "lel_pct"}).agg == ("mean",)


def _pkg() -> Package:
    return Package(custody={"exported_by": "police", "reason": "case 7"}, alert={"id": 1, "grid": "g1"},
                   timeline=[{"transition": "opened"}], events=[{"type": "door_opened"}],
                   access_log=[{"type": "access_denied"}], snapshots={"cam-b1/s1.jpg": b"\xff\xd8\xff" + b"x" * 500})


def _rewrite(data: bytes, name: str, change: bytes | None) -> bytes:
    """The same ZIP with one member replaced (a valid ZIP: its CRC matches the new bytes) or dropped."""
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as src, zipfile.ZipFile(out, "w") as dst:
        for info in src.infolist():
            content = src.read(info.filename)
            if info.filename == name:
                if change is None:
                    continue
                content = change
            dst.writestr(info.filename, content)
    return out.getvalue()


def test_evidence_package_verifies_and_every_change_is_reported(tmp_path: Path) -> None:
    key = load_or_create_key(tmp_path / "keys" / "ed.pem")
    trusted = load_public_key(public_pem(key.public_key()))
    data = build_zip(_pkg(), key)
    assert verify_zip(data, trusted).ok
    snap = zipfile.ZipFile(io.BytesIO(data)).read("snapshots/cam-b1/s1.jpg")

    one_byte = bytearray(snap)
    one_byte[100] ^= 0x01
    v = verify_zip(_rewrite(data, "snapshots/cam-b1/s1.jpg", bytes(one_byte)), trusted)
    assert not v.ok and any("snapshots/cam-b1/s1.jpg: changed" in p for p in v.problems)
    # the same byte flipped in the raw ZIP (the member is stored, so its bytes are in the file as they are)
    raw = bytearray(data)
    at = raw.find(snap)
    raw[at + 100] ^= 0x01
    v = verify_zip(bytes(raw), trusted)
    assert not v.ok and any("s1.jpg" in p for p in v.problems)
    v = verify_zip(_rewrite(data, "snapshots/cam-b1/s1.jpg", None), trusted)
    assert any("listed in the manifest but missing" in p for p in v.problems)
    out = io.BytesIO(data)
    with zipfile.ZipFile(out, "a") as z:
        z.writestr("extra.txt", b"planted")
    assert any("extra.txt: not in the manifest" in p for p in verify_zip(out.getvalue(), trusted).problems)
    # a forger who edits the manifest to match breaks the signature
    manifest = json.loads(zipfile.ZipFile(io.BytesIO(data)).read("manifest.json"))
    manifest["files"][0]["sha256"] = "0" * 64
    v = verify_zip(_rewrite(data, "manifest.json", json.dumps(manifest).encode()), trusted)
    assert "the signature does not match manifest.json" in v.problems
    # ... and one who re-signs with a key of their own is caught by the trusted key
    other = load_or_create_key(tmp_path / "other.pem")
    forged = build_zip(_pkg(), other)
    assert verify_zip(forged).ok  # it is internally consistent ...
    assert not verify_zip(forged, trusted).ok  # ... but not signed by the hub
    assert not verify_zip(b"not a zip").ok


def test_signing_key_is_created_once_with_owner_only_permissions(tmp_path: Path) -> None:
    path = tmp_path / "run" / "api" / "ed.pem"
    key = load_or_create_key(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    again = load_or_create_key(path)
    assert public_pem(again.public_key()) == public_pem(key.public_key())
    os.chmod(path, 0o644)
    with pytest.raises(EvidenceKeyError, match="readable by others"):
        load_or_create_key(path)


@pytest.mark.video
def test_a_person_whose_face_is_not_found_has_the_upper_part_of_the_box_blurred(shared_data: Path) -> None:
    """A woman walking away from the camera (one-by-one clip, frame 72): no face to find, the head goes anyway."""
    import cv2
    import numpy as np

    from api.data.blur import Blurrer

    cap = cv2.VideoCapture(str(shared_data / "video" / "one-by-one-person-detection.mp4"))
    for _ in range(73):
        ok, frame = cap.read()
        assert ok
    cap.release()
    ok, jpg = cv2.imencode(".jpg", frame)
    assert ok
    box = (360, 50, 170, 380)  # the camera event's person box (x, y, w, h)
    b = Blurrer()
    faces = b.face_detector.faces(cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY))
    assert not any(box[0] <= x + w / 2 <= box[0] + box[2] and box[1] <= y + h / 2 <= box[1] + box[3]
                   for x, y, w, h in faces), "the test needs a person without a detected face"
    out = cv2.imdecode(np.frombuffer(b.blur(jpg.tobytes(), [box]), np.uint8), cv2.IMREAD_COLOR)
    orig = cv2.imdecode(np.frombuffer(jpg.tobytes(), np.uint8), cv2.IMREAD_COLOR)
    assert out is not None and orig is not None

    def diff(x0: int, y0: int, x1: int, y1: int) -> float:
        return float(np.abs(out[y0:y1, x0:x1].astype(int) - orig[y0:y1, x0:x1].astype(int)).mean())

    assert diff(410, 60, 480, 150) > 8  # the head, blurred
    assert diff(390, 340, 470, 420) < 4  # the legs, only re-encoded
