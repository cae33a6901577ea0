"""The API's data routes on a real influxd and a real SQLite store: events, charts, snapshots, evidence.

The face image is a real one: a pedestrian from MOTChallenge's TUD-Stadtmitte (frame 44, enlarged 4x so the
face is about 60 px). The test first checks that OpenCV's face cascade finds the face in it, so "no face in
what the API returned" means the blurring removed it, not that the detector could never see it.
"""

from __future__ import annotations

import io
import json
import uuid
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import cv2
import httpx
import numpy as np
import pytest
import yaml
from api_helpers import add_accounts, api_config, bearer
from fastapi.testclient import TestClient
from sqlalchemy import text

from api.app import create_app
from api.data import influxql
from api.data.blur import FaceDetector
from api.data.events import EventQuery, EventService
from api.data.influx import InfluxReader, InfluxUnavailable
from api.services.scope import Principal
from commhub import cli
from commhub.config import Config, InfluxConfig
from commhub.services import Influxd
from hub.store.lineproto import line

pytestmark = [pytest.mark.services, pytest.mark.video]

SITE = "s1"
HOURS = 6


def face_jpeg(shared: Path) -> bytes:
    """A real face, from recorded street footage (see the module docstring)."""
    cap = cv2.VideoCapture(str(shared / "video" / "TUD-Stadtmitte.mp4"))
    frame = None
    for _ in range(44):
        ok, frame = cap.read()
        assert ok
    cap.release()
    assert frame is not None
    crop = cv2.resize(frame[95:160, 430:485], None, fx=4, fy=4, interpolation=cv2.INTER_CUBIC)
    ok, jpg = cv2.imencode(".jpg", crop, [cv2.IMWRITE_JPEG_QUALITY, 92])
    assert ok
    return bytes(jpg.tobytes())


_DETECTOR: list[FaceDetector] = []


def faces_in(jpeg: bytes) -> int:
    """Faces the same OpenCV detector finds in a JPEG."""
    if not _DETECTOR:
        _DETECTOR.append(FaceDetector())
    img = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    assert img is not None, "not a JPEG"
    return len(_DETECTOR[0].faces(cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)))


@dataclass
class World:
    """The app, its services, what was written to InfluxDB and the tokens of each role."""

    c: TestClient
    app: Any
    cfg: Config
    t0: datetime
    face: bytes
    tmp: Path
    expected: dict[str, Any] = field(default_factory=dict)
    tokens: dict[str, str] = field(default_factory=dict)
    alerts: dict[str, int] = field(default_factory=dict)

    def h(self, user: str) -> dict[str, str]:
        """Authorization header of a user."""
        return bearer(self.c, self.tokens, user)

    def audit(self) -> list[dict[str, Any]]:
        """Audit rows, oldest first."""
        with self.app.state.services.store.engine.connect() as conn:
            return [dict(r) for r in conn.execute(text("SELECT * FROM audit_log ORDER BY seq")).mappings()]

    def influx(self, q: str) -> list[dict[str, Any]]:
        """Raw InfluxQL against the test database."""
        r = httpx.get(f"{self.cfg.influx.url}/query", params={"db": self.cfg.influx.database, "q": q}, timeout=30)
        assert r.status_code == 200, r.text
        return list(r.json()["results"][0].get("series", []))


def _tags(device: str, kind: str, grid: str, building: str, layer: str) -> dict[str, str]:
    return {"site": SITE, "grid": grid, "building": building, "layer": layer, "device_kind": kind,
            "device_id": device}


def _us(t: datetime) -> int:
    return int(t.timestamp() * 1_000_000)


def _write(influxd: Influxd, db: str, t0: datetime) -> dict[str, Any]:
    """A few hours of events and readings in two cells; returns what the tests expect to read back."""
    httpx.post(f"{influxd.url}/query", params={"q": f'CREATE DATABASE "{db}"'}, timeout=30).raise_for_status()
    lines: list[str] = []
    granted = {"door-b1": 0, "door-b3": 0}
    seq = 0
    for h in range(HOURS):
        for door, grid, b in (("door-b1", "g1", "b1"), ("door-b3", "g2", "b3")):
            n = 3 + h if grid == "g1" else 2
            for i in range(n):
                seq += 1
                t = t0 + timedelta(hours=h, minutes=i)
                tags = _tags(door, "door_controller", grid, b, "technical")
                lines.append(line("access_granted", tags, {"door": "main", "credential_ref": "ab" * 8,
                                                           "method": "card", "direction": "in",
                                                           "registered": True, "seq": seq,
                                                           "historical": False}, _us(t)))
                lines.append(line("door_opened", tags, {"door": "main", "seq": seq + 100_000,
                                                        "historical": False}, _us(t) + 1))
                granted[door] += 1
        for hyd, grid, b, base in (("hydrant-b1", "g1", "b1", 0.30), ("hydrant-b3", "g2", "b3", 0.50)):
            for m in range(0, 60, 15):
                seq += 1
                t = t0 + timedelta(hours=h, minutes=m)
                lines.append(line("hydrant_pressure", _tags(hyd, "hydrant", grid, b, "facility"),
                                  {"pressure_mpa": base + h * 0.01, "seq": seq, "historical": False}, _us(t)))
                lines.append(line("gas_reading", _tags(f"gas-{b}", "gas", grid, b, "facility"),
                                  {"lel_pct": 2.0 + h, "seq": seq, "historical": False}, _us(t)))
    for cam, grid, b, snap in (("cam-b1", "g1", "b1", "snap-g1"), ("cam-b3", "g2", "b3", "snap-g2")):
        seq += 1
        lines.append(line("camera_object", _tags(cam, "camera", grid, b, "technical"),
                          {"event_id": f"ev-{cam}", "phase": "new", "label": "person", "score": 0.9,
                           "box_x": 10, "box_y": 5, "box_w": 150, "box_h": 250, "snapshot": snap, "seq": seq,
                           "historical": False}, _us(t0 + timedelta(hours=1))))
    # liveness: door-b1 online; gas-b1 online but its agent's will arrived; hydrant-b1 stopped cleanly
    recent = datetime.now(UTC) - timedelta(seconds=30)
    for dev, kind, b, agent, status in (("door-b1", "door_controller", "b1", "access-1", "online"),
                                        ("gas-b1", "gas", "b1", "fac-1", "online"),
                                        ("hydrant-b1", "hydrant", "b1", "fac-1", "offline")):
        layer = "technical" if kind == "door_controller" else "facility"
        tags = _tags(dev, kind, "g1", b, layer)
        lines.append(line("birth", tags, {"session": 7, "agent": agent, "version": "1", "interval_s": 60.0,
                                          "seq": 1}, _us(recent)))
        lines.append(line("state", tags, {"status": status, "session": 7, "seq": 2}, _us(recent) + 1))
        lines.append(line("heartbeat", tags, {"uptime_s": 5.0, "seq": 3}, _us(recent) + 2))
    lines.append(line("state", {"site": SITE, "grid": "_unassigned", "building": "_unassigned", "layer": "technical",
                                "device_kind": "agent", "device_id": "fac-1"},
                      {"status": "offline", "session": 7, "seq": 9}, _us(recent) + 3))
    r = httpx.post(f"{influxd.url}/write", params={"db": db, "precision": "u"},
                   content="\n".join(lines).encode(), timeout=60)
    assert r.status_code == 204, r.text
    return {"granted": granted, "points": len(lines)}


@pytest.fixture(scope="module")
def world(influxd: Influxd, shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    tmp = tmp_path_factory.mktemp("apidata")
    db = "apidata_" + uuid.uuid4().hex[:8]
    base = api_config(f"sqlite:///{tmp}/alerts.db", site=SITE, influx_url=influxd.url,
                      evidence_key=tmp / "keys" / "evidence.pem")
    cfg = base.model_copy(update={"influx": InfluxConfig(url=influxd.url, transport="v1", database=db),
                                  "hub": base.hub.model_copy(update={"snapshots_dir": tmp / "snapshots"})})
    t0 = (datetime.now(UTC) - timedelta(hours=HOURS + 1)).replace(minute=0, second=0, microsecond=0)
    expected = _write(influxd, db, t0)
    face = face_jpeg(shared_data)
    for cam, snap in (("cam-b1", "snap-g1"), ("cam-b3", "snap-g2")):
        (tmp / "snapshots" / SITE / cam).mkdir(parents=True)
        (tmp / "snapshots" / SITE / cam / f"{snap}.jpg").write_bytes(face)
    app = create_app(cfg, live=False)
    with TestClient(app) as client:
        w = World(client, app, cfg, t0, face, tmp, expected)
        add_accounts(app.state.services)
        store = app.state.services.store
        for key, grid, b, cam, snap in (("g1", "g1", "b1", "cam-b1", "snap-g1"),
                                        ("g2", "g2", "b3", "cam-b3", "snap-g2")):
            spec = store.rules["door_forced_open"]
            ref = {"device_id": cam, "seq": 1, "ts": (t0 + timedelta(hours=1)).isoformat(),
                   "type": "camera_object", "snapshot": snap}  # as the store keeps them (wire EventRef)
            with store.tx() as tx:
                n = tx.open_alert(spec, f"evidence-{key}", spec.severity,
                                  {"site": SITE, "grid": grid, "building": b, "unit": None, "device": None},
                                  [ref], {"limit": 1}, None)
            w.alerts[key] = int(n.alert_id)
        yield w


def _events(w: World, user: str, **params: Any) -> httpx.Response:
    return w.c.get("/api/v1/events", headers=w.h(user), params=params)


def test_event_history_by_place_device_type_and_time_with_paging(world: World) -> None:
    w = world
    start, end = w.t0.timestamp(), (w.t0 + timedelta(hours=HOURS)).timestamp()
    r = _events(w, "sec", type="access_granted", start=start, end=end, limit=1000)
    assert r.status_code == 200, r.text
    got = r.json()["events"]
    assert len(got) == sum(w.expected["granted"].values())
    assert {e["grid"] for e in got} == {"g1", "g2"}
    assert [e["time"] for e in got] == sorted((e["time"] for e in got), reverse=True)
    r = _events(w, "sec", device_id="door-b1", type="door_opened", start=start, end=end, limit=1000)
    assert {e["device_id"] for e in r.json()["events"]} == {"door-b1"}
    assert len(r.json()["events"]) == w.expected["granted"]["door-b1"]
    # one hour only
    r = _events(w, "sec", building="b1", type="access_granted", start=start, end=start + 3600)
    assert len(r.json()["events"]) == 3
    # paging: small pages, every event once, none twice
    seen: list[tuple[float, str, int]] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"grid": "g1", "start": start, "end": end, "limit": 7}
        if cursor:
            params["cursor"] = cursor
        page = _events(w, "gw1", **params).json()
        seen += [(e["time"], e["type"], e["fields"]["seq"]) for e in page["events"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert len(seen) == len(set(seen)) == 2 * w.expected["granted"]["door-b1"] + 1  # + the camera event


def test_grid_worker_of_g1_gets_404_for_g2s_events_charts_snapshots_and_export(world: World) -> None:
    w = world
    for params in ({"grid": "g2"}, {"building": "b3"}, {"device_id": "door-b3"}, {"grid": "g1", "building": "b3"},
                   {"device_id": "no-such-device"}):
        r = _events(w, "gw1", **params)
        assert r.status_code == 404, (params, r.text)
    r = w.c.get("/api/v1/telemetry/charts/gas_lel", headers=w.h("gw1"), params={"grid": "g2"})
    assert r.status_code == 404
    # without a filter the query itself is limited to g1: nothing of g2 comes back
    r = _events(w, "gw1", start=w.t0.timestamp(), limit=1000)
    assert r.status_code == 200 and {e["grid"] for e in r.json()["events"]} == {"g1"}
    r = w.c.get("/api/v1/snapshots/cam-b3/snap-g2", headers=w.h("gw1"))
    assert r.status_code == 404
    assert w.c.get("/api/v1/snapshots/cam-b1/snap-none", headers=w.h("gw1")).status_code == 404
    r = w.c.post(f"/api/v1/evidence/{w.alerts['g2']}/export", headers=w.h("gw1"), json={"reason": "curious"})
    assert r.status_code == 404
    # its own cell's alert: the role may not export (403 is fine here: the alert is visible to it anyway)
    r = w.c.post(f"/api/v1/evidence/{w.alerts['g1']}/export", headers=w.h("gw1"), json={"reason": "curious"})
    assert r.status_code == 403
    # property sees the facility layer only: door events are not its to read
    r = _events(w, "prop", start=w.t0.timestamp(), limit=1000)
    assert r.status_code == 200 and {e["layer"] for e in r.json()["events"]} <= {"facility"}
    assert _events(w, "prop", device_id="door-b1").status_code == 404


HOSTILE = ["g1' OR grid='g2", 'g1" OR "1"="1', "g1\\' OR 1=1 --", "g1; DROP DATABASE x",
           "g1\nSELECT * FROM access_granted", "g1' ; DROP MEASUREMENT access_granted; '", "g1) OR (grid =~ /.*/",
           "\x00"]


def test_influxql_injection_through_every_parameter_returns_and_changes_nothing(world: World) -> None:
    w = world
    before = w.influx("SELECT count(\"seq\") FROM /.*/")
    event_params = ["grid", "building", "device_id", "type", "layer", "start", "end", "limit", "cursor"]
    chart_params = ["measurement", "field", "agg", "interval", "by_device", "grid", "building", "device_id",
                    "start", "end"]
    leaks: list[str] = []
    for user in ("gw1",):  # a grid worker: a leak would show as another cell's data
        for p in event_params:
            for bad in HOSTILE:
                r = _events(w, user, **{p: bad})
                if r.status_code == 200:
                    leaks.append(f"events {p}={bad!r}: 200")
                elif r.status_code not in (400, 404, 422):
                    leaks.append(f"events {p}={bad!r}: {r.status_code}")
        for p in chart_params:
            for bad in HOSTILE:
                params = {"measurement": "gas_reading", "field": "lel_pct", p: bad}
                r = w.c.get("/api/v1/telemetry", headers=w.h(user), params=params)
                if r.status_code not in (400, 404, 422):
                    leaks.append(f"telemetry {p}={bad!r}: {r.status_code}")
        for bad in HOSTILE[:4]:
            r = w.c.get(f"/api/v1/snapshots/{bad}/snap-g1", headers=w.h(user))
            if r.status_code not in (404, 422):
                leaks.append(f"snapshot device {bad!r}: {r.status_code}")
        for name in ("..", "../../etc/passwd", "..%2F..%2Fkeys%2Fevidence", "snap-g1.jpg/../snap-g2"):
            r = w.c.get(f"/api/v1/snapshots/cam-b1/{name}", headers=w.h(user))
            if r.status_code not in (404, 422):
                leaks.append(f"snapshot id {name!r}: {r.status_code}")
    assert leaks == []
    # nothing was stored, dropped or changed by any attempt
    assert w.influx("SELECT count(\"seq\") FROM /.*/") == before
    dbs = [v[0] for s in w.influx("SHOW DATABASES") for v in s["values"]]
    assert w.cfg.influx.database in dbs


def test_escaping_holds_on_a_real_influxd(world: World, influxd: Influxd) -> None:
    """Values that must never reach /query unescaped: stored as tag values, then matched exactly."""
    w = world
    db = w.cfg.influx.database
    odd = ["x'y", "a\\'b", "c\\d", "q\"r", "o' OR device_id='door-b1"]
    body = "\n".join(line("door_opened", {"site": SITE, "grid": "zz", "device_id": v}, {"seq": i}, 1_000 + i)
                     for i, v in enumerate(odd))
    assert httpx.post(f"{influxd.url}/write", params={"db": db, "precision": "u"}, content=body.encode(),
                      timeout=30).status_code == 204
    reader = InfluxReader(w.cfg.influx)
    for i, v in enumerate(odd):
        q = f"SELECT * FROM {influxql.ident('door_opened')} WHERE {influxql.eq('device_id', v)}"
        series = reader.query(q)
        rows = [dict(zip(s["columns"], r, strict=True)) for s in series for r in s["values"]]
        assert [(r["device_id"], r["seq"]) for r in rows] == [(v, i)], v
    reader.stop()


def test_charts_door_traffic_hydrant_pressure_and_gas(world: World) -> None:
    w = world
    start, end = w.t0.timestamp(), (w.t0 + timedelta(hours=HOURS)).timestamp()
    r = w.c.get("/api/v1/telemetry/charts/door_traffic", headers=w.h("gw1"), params={"start": start, "end": end})
    assert r.status_code == 200, r.text
    counts = [p["values"]["count"] for p in r.json()["series"][0]["points"]]
    assert counts == [3 + h for h in range(HOURS)]  # g1 only; g2's 2 per hour are not counted
    r = w.c.get("/api/v1/telemetry/charts/door_traffic", headers=w.h("sec"), params={"start": start, "end": end})
    assert [p["values"]["count"] for p in r.json()["series"][0]["points"]] == [5 + h for h in range(HOURS)]
    r = w.c.get("/api/v1/telemetry/charts/hydrant_pressure", headers=w.h("sec"),
                params={"start": start, "end": end, "interval": "1h"})
    series = {s["device_id"]: s["points"] for s in r.json()["series"]}
    assert set(series) == {"hydrant-b1", "hydrant-b3"}
    assert [round(p["values"]["mean"], 3) for p in series["hydrant-b1"]] == [round(0.30 + h * 0.01, 3)
                                                                             for h in range(HOURS)]
    r = w.c.get("/api/v1/telemetry", headers=w.h("prop"),
                params={"measurement": "gas_reading", "field": "lel_pct", "agg": ["max", "count"],
                        "interval": "1h", "start": start, "end": end})
    assert r.status_code == 200, r.text
    pts = r.json()["series"][0]["points"]
    assert [p["values"]["max"] for p in pts] == [2.0 + h for h in range(HOURS)]
    assert [p["values"]["count"] for p in pts] == [4] * HOURS  # b1 only: property manages b1
    r = w.c.get("/api/v1/telemetry", headers=w.h("sec"),
                params={"measurement": "gas_reading", "field": "lel_pct", "interval": "1m",
                        "start": start, "end": start + 86400 * 30})
    assert r.status_code == 400 and "buckets" in r.json()["detail"]


def test_snapshots_are_blurred_for_every_role_but_police(world: World) -> None:
    w = world
    assert faces_in(w.face) >= 1, "the test image must hold a face the detector finds"
    for user in ("sec", "gw1"):
        r = w.c.get("/api/v1/snapshots/cam-b1/snap-g1", headers=w.h(user))
        assert r.status_code == 200, r.text
        assert r.headers["content-type"] == "image/jpeg" and r.headers["x-commhub-blurred"] == "true"
        assert r.content != w.face
        assert faces_in(r.content) == 0, f"{user} received a face"
    r = w.c.get("/api/v1/snapshots/cam-b1/snap-g1", headers=w.h("police"))
    assert r.status_code == 200 and r.headers["x-commhub-blurred"] == "false"
    assert r.content == w.face and faces_in(r.content) >= 1
    # property reads the facility layer only: a camera is not its to see
    assert w.c.get("/api/v1/snapshots/cam-b1/snap-g1", headers=w.h("prop")).status_code == 404


def test_export_then_verify_and_one_changed_byte_fails(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    w = world
    before = len(w.audit())
    r = w.c.post(f"/api/v1/evidence/{w.alerts['g1']}/export", headers=w.h("police"),
                 json={"reason": "case 2026-117, forced door", "window_minutes": 24 * 60})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/zip"
    rows = w.audit()[before:]
    assert [(x["actor"], x["action"]) for x in rows] == [("police", "evidence.export")]
    z = zipfile.ZipFile(io.BytesIO(r.content))
    names = set(z.namelist())
    assert {"manifest.json", "manifest.sig", "custody.json", "alert.json", "timeline.json", "events.json",
            "access_log.json", "snapshots/cam-b1/snap-g1.jpg"} <= names
    assert z.read("snapshots/cam-b1/snap-g1.jpg") == w.face  # the original, unblurred
    custody = json.loads(z.read("custody.json"))
    assert custody["exported_by"] == "police" and custody["reason"].startswith("case 2026-117")
    assert custody["from_address"] and custody["exported_at"]
    events = json.loads(z.read("events.json"))
    assert events and {e["grid"] for e in events} == {"g1"} and {e["building"] for e in events} == {"b1"}
    access = json.loads(z.read("access_log.json"))
    assert {e["type"] for e in access} == {"access_granted", "door_opened"}

    key = w.c.get("/api/v1/evidence/key", headers=w.h("police")).json()
    pem = w.tmp / "evidence-public.pem"
    pem.write_text(key["public_key_pem"])
    good = w.tmp / "evidence.zip"
    good.write_bytes(r.content)
    assert cli.main(["evidence", "verify", str(good), "--key", str(pem)]) == 0
    out = capsys.readouterr().out
    assert "OK" in out and key["key_id"] in out

    raw = bytearray(r.content)
    at = raw.find(w.face)
    assert at > 0  # stored, not compressed: the snapshot's bytes are in the file as they are
    raw[at + len(w.face) // 2] ^= 0x01
    bad = w.tmp / "evidence-changed.zip"
    bad.write_bytes(bytes(raw))
    assert cli.main(["evidence", "verify", str(bad), "--key", str(pem), "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert not report["ok"] and any("snapshots/cam-b1/snap-g1.jpg" in p for p in report["problems"])
    # the text report names the changed file too
    assert cli.main(["evidence", "verify", str(bad), "--key", str(pem)]) == 1
    assert "FAILED" in capsys.readouterr().out


def test_every_data_read_leaves_exactly_one_audit_row(world: World) -> None:
    w = world
    calls = [
        (lambda: _events(w, "gw1", grid="g1"), "events.read", "ok"),
        (lambda: _events(w, "gw1", grid="g2"), "events.read", "404"),
        (lambda: w.c.get("/api/v1/telemetry/charts/gas_lel", headers=w.h("sec")), "telemetry.read", "ok"),
        (lambda: w.c.get("/api/v1/snapshots/cam-b1/snap-g1", headers=w.h("police")), "snapshots.read", "ok"),
        (lambda: w.c.get("/api/v1/snapshots/cam-b3/snap-g2", headers=w.h("gw1")), "snapshots.read", "404"),
    ]
    for call, action, result in calls:
        w.h("gw1"), w.h("sec"), w.h("police")  # log in first: logins are audited too
        before = len(w.audit())
        call()
        rows = w.audit()[before:]
        assert len(rows) == 1 and rows[0]["action"] == action and rows[0]["result"].startswith(result), rows


def test_devices_health_from_state_births_and_the_agents_will(world: World) -> None:
    w = world
    r = w.c.get("/api/v1/devices", headers=w.h("sec"))
    assert r.status_code == 200, r.text
    devs = {d["id"]: d for d in r.json()}
    assert len(devs) == len(w.cfg.community.devices)
    assert devs["door-b1"]["status"] == "online" and devs["door-b1"]["agent"] == "access-1"
    assert devs["door-b1"]["overdue"] is False and devs["door-b1"]["last_seen"] is not None
    assert devs["gas-b1"]["status"] == "offline"  # its own state says online, its agent's will says not
    assert devs["hydrant-b1"]["status"] == "offline"
    assert devs["smoke-b1-1"]["status"] == "unknown" and devs["smoke-b1-1"]["overdue"] is True
    assert devs["door-b3"]["open_alerts"] == 0
    gw1 = {d["id"] for d in w.c.get("/api/v1/devices", headers=w.h("gw1")).json()}
    assert gw1 and all(w.cfg.community.device_index()[i].grid == "g1" for i in gw1)
    assert w.c.get("/api/v1/devices/door-b3", headers=w.h("gw1")).status_code == 404
    assert w.c.get("/api/v1/devices/door-b1", headers=w.h("gw1")).json()["status"] == "online"


def test_coverage_by_cell_over_http_and_the_cli(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    w = world
    r = w.c.get("/api/v1/coverage", headers=w.h("gw1"))
    assert r.status_code == 200, r.text
    cells = r.json()
    assert [c["grid"] for c in cells] == ["g1"]
    g1 = cells[0]
    layers = {lc["layer"]: lc for lc in g1["layers"]}
    assert set(layers) == {"people", "technical", "facility"} and all(lc["covered"] for lc in layers.values())
    assert layers["facility"]["devices"]["smoke"] == 4 and layers["technical"]["online"] == 1
    assert layers["technical"]["open_alerts"] == 1  # the forced door of g1
    assert g1["patrol_checkpoints"] == ["patrol-g1"]
    assert any("devices offline" in g and "gas-b1" in g and "hydrant-b1" in g for g in g1["gaps"])
    assert not any("no smoke" in g for g in g1["gaps"])
    prop = w.c.get("/api/v1/coverage", headers=w.h("prop")).json()
    assert [c["grid"] for c in prop] == ["g1"] and [lc["layer"] for lc in prop[0]["layers"]] == ["facility"]

    (w.tmp / "community.yaml").write_text(yaml.safe_dump(w.cfg.community.model_dump(mode="json",
                                                                                    exclude_defaults=True)))
    cfg_file = w.tmp / "commhub.yaml"
    cfg_file.write_text(yaml.safe_dump({
        "community": "community.yaml", "mqtt": {"port": 1, "root": SITE},
        "influx": {"url": w.cfg.influx.url, "transport": "v1", "database": w.cfg.influx.database},
        "alerts": {"enabled": True, "db_url": w.cfg.alerts.db_url, "rules_file": str(w.cfg.alerts.rules_file),
                   "routing_file": str(w.cfg.alerts.routing_file)}}))
    assert cli.main(["coverage", "--config", str(cfg_file), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert [c["grid"] for c in out] == ["g1", "g2"]
    assert out[0]["layers"] == g1["layers"] and out[0]["gaps"] == g1["gaps"]


def test_influxdb_down_is_an_unavailable_error_not_a_leak(world: World) -> None:
    cfg = world.cfg.influx.model_copy(update={"url": "http://127.0.0.1:9", "timeout_s": 2.0})
    svc = EventService(InfluxReader(cfg), world.cfg.community)
    with pytest.raises(InfluxUnavailable) as e:
        svc.history(EventQuery(grid="g1"), Principal("gw", "grid_worker", frozenset({"g1"}), None),
                    datetime.now(UTC))
    assert e.value.status == 503
