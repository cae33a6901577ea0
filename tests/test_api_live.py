"""Live alerts over SSE from a real hub worker through mosquitto to a real uvicorn: per-role streams and
Last-Event-ID reconnects with no gap and no repeat."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from alerts_helpers import T0, FakeClock, Rig
from api_helpers import ApiServer, SseReader, add_accounts, api_config, wait_until
from hub_helpers import raw_client
from sqlalchemy import text

from api.app import create_app
from commhub import topics

pytestmark = pytest.mark.broker


class Live:
    """A hub worker (Rig) and the API on one SQLite store and one broker."""

    def __init__(self, rig: Rig, server: ApiServer, app: Any) -> None:
        self.rig = rig
        self.server = server
        self.app = app

    def sos(self, building: str) -> None:
        """A panic button press in a building (b1, b2: g1; b3: g2), handled by the hub worker."""
        self.rig.send(f"panic-{building}", "panic_press", dt=1.0)

    def notice_ids(self, grids: tuple[str, ...], after: int) -> list[int]:
        """Notice ids (transition ids) of alerts in these grids after an id, from SQL."""
        with self.app.state.services.store.engine.connect() as conn:
            rows = conn.execute(text("SELECT t.id, a.grid FROM alert_transitions t JOIN alerts a ON a.id = t.alert_id "
                                     "WHERE t.id > :after ORDER BY t.id"), {"after": after}).all()
        return [int(r[0]) for r in rows if r[1] in grids]


@pytest.fixture
def live(tmp_path: Path, mosquitto: Any, unique_site: str) -> Iterator[Live]:
    rig = Rig(tmp_path, mosquitto, unique_site, FakeClock(T0)).start()
    app = create_app(api_config(rig.db_url, site=unique_site, mqtt_port=mosquitto.port, sse_heartbeat_s=0.3))
    server = ApiServer(app).start()
    try:
        add_accounts(app.state.services)
        wait_until(lambda: app.state.services.live.connected, what="the API's broker connection")
        yield Live(rig, server, app)
    finally:
        server.stop()
        rig.stop()


def test_hub_alerts_reach_clients_by_jurisdiction_and_reconnect_misses_and_repeats_nothing(live: Live) -> None:
    url = live.server.url
    sec = SseReader(url, live.server.login("sec")).start()
    gw1 = SseReader(url, live.server.login("gw1")).start()
    assert sec.status == 200 and gw1.status == 200
    # g2 first, then g1: once gw1 has the g1 notice, the earlier g2 one would have arrived too
    live.sos("b3")
    live.sos("b1")
    first_g1 = gw1.wait_for(lambda n: n["grid"] == "g1" and n["transition"] == "opened")
    sec.wait_for(lambda n: n["grid"] == "g2")
    sec.wait_for(lambda n: n["grid"] == "g1")
    assert {n["grid"] for _, n in gw1.events} == {"g1"}, "a grid worker's stream carried another cell's alert"
    assert first_g1["rule"] == "sos_button" and first_g1["building"] == "b1"
    # the client drops; alerts keep coming (one in its cell acknowledged by someone else, one elsewhere)
    last = gw1.ids[-1]
    gw1.close()
    live.sos("b2")
    live.sos("b3")
    token = live.server.login("sec")
    r = httpx.post(f"{url}/api/v1/alerts/{first_g1['alert_id']}/acknowledge", timeout=30,
                   headers={"Authorization": f"Bearer {token}"}, json={"note": "seen on camera"})
    assert r.status_code == 200
    missed = live.notice_ids(("g1",), last)
    assert len(missed) >= 2, missed
    again = SseReader(url, live.server.login("gw1"), last_event_id=last).start()
    # live ones after the reconnect, from the hub worker's own store and notifier (MQTT)
    b2 = next(n for _, n in sec.events if n["building"] == "b2")
    live.rig.sink.store.act(b2["alert_id"], "commented", "hub-desk", "called the resident")
    live.rig.sink.store.act(first_g1["alert_id"], "resolved", "hub-desk", "")
    wait_until(lambda: len(live.notice_ids(("g1",), last)) >= len(missed) + 2, what="the new notices in SQL")
    expected = live.notice_ids(("g1",), last)
    wait_until(lambda: set(expected) <= set(again.ids), what="every g1 notice after the reconnect")
    again.close()
    sec.close()
    assert again.ids[:len(missed)] == missed, "the replay after Last-Event-ID is not exactly what was missed"
    assert len(again.ids) == len(set(again.ids)), "a notice arrived twice"
    assert min(again.ids) > last, "a notice seen before the drop came again"
    assert {n["grid"] for _, n in again.events} == {"g1"}
    assert any(n["transition"] == "acknowledged" and n["by"] == "sec" for _, n in again.events)
    assert any(n["transition"] == "commented" and n["by"] == "hub-desk" for _, n in again.events)


def test_a_neighbouring_communitys_notices_on_the_same_broker_reach_no_one_here(live: Live) -> None:
    # Two communities on one broker (a district): the neighbour's cells may have our grid ids, and its notice ids
    # come from its own alert store, so they may equal ours. Neither may reach our clients, nor take the place of
    # our own notice of the same id in the de-duplication.
    url = live.server.url
    site = live.app.state.services.cfg.community.site.id
    root = live.app.state.services.cfg.mqtt.root
    sec = SseReader(url, live.server.login("sec")).start()
    gw1 = SseReader(url, live.server.login("gw1")).start()
    live.sos("b3")  # a real g2 notice, as the model of the neighbour's
    model = sec.wait_for(lambda n: n["grid"] == "g2")
    nxt = max(live.notice_ids(("g1", "g2"), 0)) + 1  # the id our next transition gets
    pub = raw_client(live.rig.broker, f"neighbour-{site}")
    try:
        for topic in (topics.alert(root, "elsewhere", "g1", "high"),  # its own topic
                      topics.alert(root, site, "g1", "high")):  # or ours, mislabelled
            notice = {**model, "site": "elsewhere", "grid": "g1", "building": "b1", "notice_id": nxt}
            pub.publish(topic, json.dumps(notice), qos=1).wait_for_publish(10)
    finally:
        pub.disconnect()
    live.sos("b1")
    ours = gw1.wait_for(lambda n: n["grid"] == "g1" and n["transition"] == "opened")
    assert ours["site"] == site and ours["notice_id"] == nxt
    sec.wait_for(lambda n: n["grid"] == "g1")
    gw1.close()
    sec.close()
    assert {n["site"] for _, n in [*gw1.events, *sec.events]} == {site}


def test_stream_needs_credentials_and_is_audited(live: Live) -> None:
    url = live.server.url
    r = httpx.get(f"{url}/api/v1/alerts/stream", timeout=30)
    assert r.status_code == 401 and "not authenticated" in r.json()["detail"]
    r = httpx.get(f"{url}/api/v1/alerts/stream", params={"access_token": "nonsense"}, timeout=30)
    assert r.status_code == 401
    reader = SseReader(url, live.server.login("police"), last_event_id=0).start()
    reader.close()
    rows = live.app.state.services.audit.page(actor="police", action="alerts.stream")
    assert len(rows) == 1 and rows[0]["result"] == "ok: from 0"
    # readiness names what is missing: here InfluxDB (nothing listens on its port); the broker and SQL are up
    r = httpx.get(f"{url}/readyz", timeout=30)
    assert r.status_code == 503
    checks = r.json()["checks"]
    assert checks["database"] == "ok" and checks["broker"] == "ok" and checks["influxdb"].startswith("down")
    metrics = httpx.get(f"{url}/metrics", timeout=30).text
    assert "commhub_api_sse_clients" in metrics and "commhub_api_audit_rows_total" in metrics
