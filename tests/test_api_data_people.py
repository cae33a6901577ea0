"""The people layer through the API, on a real mosquitto: patrol check-ins and residents' reports."""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from api_helpers import PASSWORD, add_accounts, api_config, bearer
from fastapi.testclient import TestClient
from hub_helpers import Collector, wait_for

from api.app import create_app
from commhub.config import Config
from commhub.services import Mosquitto
from hub.ingest.message import Accepted
from hub.ingest.validate import Validator

pytestmark = pytest.mark.broker

JPEG = b"\xff\xd8\xff\xe0" + b"\x00" * 200 + b"\xff\xd9"


class People:
    """A TestClient with a role per account, and a collector on the site's device topics."""

    def __init__(self, c: TestClient, cfg: Config, collector: Collector, tmp: Path) -> None:
        self.c, self.cfg, self.collector, self.tmp = c, cfg, collector, tmp
        self.tokens: dict[str, str] = {}

    def h(self, user: str) -> dict[str, str]:
        return bearer(self.c, self.tokens, user)

    def received(self, device: str, n: int = 1) -> list[tuple[str, bytes]]:
        """Messages of a device, waiting (generously) for n of them."""
        def mine() -> list[tuple[str, bytes]]:
            return [(t, p) for t, p in list(self.collector.messages) if t.split("/")[4] == device]
        assert wait_for(lambda: len(mine()) >= n, 60), f"{device}: {len(mine())} of {n} messages arrived"
        return mine()


def _config(tmp: Path, site: str, mqtt_port: int) -> Config:
    base = api_config(f"sqlite:///{tmp}/alerts.db", site=site, mqtt_port=mqtt_port,
                      evidence_key=tmp / "evidence.pem")
    return base.model_copy(update={"hub": base.hub.model_copy(update={"snapshots_dir": tmp / "snapshots"})})


@pytest.fixture(scope="module")
def people(mosquitto: Mosquitto, tmp_path_factory: pytest.TempPathFactory) -> Iterator[People]:
    tmp = tmp_path_factory.mktemp("people")
    site = "p" + uuid.uuid4().hex[:8]
    cfg = _config(tmp, site, mosquitto.port)
    collector = Collector(mosquitto, f"{site}/v1/#", f"collect-{site}")
    app = create_app(cfg, live=False)
    try:
        with TestClient(app) as client:
            add_accounts(app.state.services)
            assert wait_for(lambda: app.state.services.data.publisher._client.is_connected(), 60)
            yield People(client, cfg, collector, tmp)
    finally:
        collector.close()


def _accepted(p: People, topic: str, payload: bytes) -> Accepted:
    """What the hub's own validator makes of it (the same check every hub worker runs)."""
    v = Validator(p.cfg.mqtt.root, p.cfg.community.device_index(), "test")
    out = v.check(topic, payload, time.time())
    assert isinstance(out, Accepted), out
    return out


def test_patrol_checkin_is_the_checkpoints_own_scan_with_the_guard_hashed(people: People) -> None:
    p = people
    r = p.c.post("/api/v1/patrols/checkins", headers=p.h("sec"),
                 json={"checkpoint": "patrol-g1", "guard": "guard-0042", "method": "nfc"})
    assert r.status_code == 201, r.text
    topic, payload = p.received("patrol-g1")[-1]
    assert topic == f"{p.cfg.mqtt.root}/v1/{p.cfg.community.site.id}/patrol/patrol-g1/evt"
    a = _accepted(p, topic, payload)
    assert a.envelope.body.type == "patrol_scan" and a.envelope.seq == r.json()["seq"]
    assert a.device is not None and a.device.id == "patrol-g1"  # the absence rule keys on this device
    assert b"guard-0042" not in payload and json.loads(payload)["body"]["method"] == "nfc"
    # a scan entered late is marked historical, so the hub keeps its own time
    r = p.c.post("/api/v1/patrols/checkins", headers=p.h("gw1"),
                 json={"checkpoint": "patrol-g1", "guard": "guard-0042", "at": time.time() - 600})
    assert r.status_code == 201 and r.json()["historical"] is True
    assert len(p.received("patrol-g1", 2)) == 2


def test_patrol_checkin_refusals(people: People) -> None:
    p = people
    for user, body, status in (
            ("gw1", {"checkpoint": "patrol-g2", "guard": "g"}, 404),  # another cell's checkpoint
            ("sec", {"checkpoint": "door-b1", "guard": "g"}, 404),  # not a checkpoint
            ("sec", {"checkpoint": "patrol-g1", "guard": "g", "at": time.time() - 3 * 86400}, 400),  # clock
            ("sec", {"checkpoint": "patrol-g1", "guard": "g", "at": time.time() + 3600}, 400),
            ("sec", {"checkpoint": "patrol-g1", "guard": "g' OR 1=1"}, 422),
            ("prop", {"checkpoint": "patrol-g1", "guard": "g"}, 403)):
        r = p.c.post("/api/v1/patrols/checkins", headers=p.h(user), json=body)
        assert r.status_code == status, (user, body, r.text)


def test_report_opens_a_ticket_and_publishes_an_event_without_its_text(people: People) -> None:
    p = people
    text = "Water dripping from the ceiling of the stairwell, Mr Wang in 302 says since Monday"
    r = p.c.post("/api/v1/reports", headers=p.h("gw1"),
                 json={"category": "facility", "grid": "g1", "building": "b1", "unit": "u1", "text": text,
                       "photo_jpeg_b64": base64.b64encode(JPEG).decode()})
    assert r.status_code == 201, r.text
    out = r.json()
    assert out["event_published"] is True and out["severity"] == "medium"
    store = p.c.app.state.services.store  # type: ignore[attr-defined]
    alert = store.get(out["alert_id"])
    assert alert["code"] == "resident_report" and alert["grid"] == "g1" and alert["building"] == "b1"
    assert store.transitions(out["alert_id"])[0]["note"] == text  # the text lives in the ticket
    topic, payload = p.received("api-reports")[-1]
    a = _accepted(p, topic, payload)
    body: Any = a.envelope.body
    assert body.type == "resident_report" and body.report_id == out["report_id"]
    assert (body.place_grid, body.place_building, body.alert_id, body.has_photo) == ("g1", "b1", out["alert_id"],
                                                                                     True)
    assert b"Wang" not in payload and b"ceiling" not in payload
    site = p.cfg.community.site.id
    assert (p.tmp / "snapshots" / site / "api-reports" / f"{out['report_id']}.jpg").read_bytes() == JPEG


def test_report_refusals(people: People) -> None:
    p = people
    ok = {"category": "noise", "grid": "g1", "text": "loud music at 2 am"}
    for user, body, status in (
            ("gw1", {**ok, "grid": "g2"}, 404),
            ("gw1", {**ok, "building": "b3"}, 404),
            ("gw1", {**ok, "building": "b1", "unit": "u9"}, 404),
            ("police", ok, 403),
            ("gw1", {**ok, "category": "gossip"}, 422),
            ("gw1", {**ok, "text": ""}, 422),
            ("gw1", {**ok, "photo_jpeg_b64": "not base64!"}, 400),
            ("gw1", {**ok, "photo_jpeg_b64": base64.b64encode(b"GIF89a...").decode()}, 400)):
        r = p.c.post("/api/v1/reports", headers=p.h(user), json=body)
        assert r.status_code == status, (user, body, r.text)


def test_a_broker_that_is_down_refuses_the_checkin_and_keeps_the_report(tmp_path: Path) -> None:
    cfg = _config(tmp_path, "s1", mqtt_port=1)
    with TestClient(create_app(cfg, live=False)) as c:
        add_accounts(c.app.state.services)  # type: ignore[attr-defined]
        token = c.post("/api/v1/auth/token", data={"username": "sec", "password": PASSWORD}).json()["access_token"]
        h = {"Authorization": f"Bearer {token}"}
        r = c.post("/api/v1/patrols/checkins", headers=h, json={"checkpoint": "patrol-g1", "guard": "g"})
        assert r.status_code == 503 and "scan again" in r.json()["detail"]
        r = c.post("/api/v1/reports", headers=h, json={"category": "fire", "grid": "g2", "text": "smoke smell"})
        assert r.status_code == 201 and r.json()["event_published"] is False and r.json()["severity"] == "critical"
