"""The community model guards ingest: site, kind and device must match it; dead letters quote no payload."""

from __future__ import annotations

import functools
import json
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import pytest
from conftest import influx_query
from hub_helpers import Collector, HubProcess, envelope_json, raw_client, wait_for, write_config
from pydantic import ValidationError

from commhub.community import Community
from commhub.config import load_community
from commhub.services import Influxd, Mosquitto
from commhub.wire import Envelope
from hub.ingest.validate import Refusal, Validator, safe_topic, schema_detail

SAMPLE = Path(__file__).resolve().parents[1] / "configs" / "community" / "sample.yaml"
FORGED = "\n2026-01-01 00:00:00 ERROR hub: admin password is hunter2"


@functools.cache
def _community() -> Community:
    return load_community(SAMPLE)


def _validator(discovery: bool = False, cache_bytes: int = 8_000_000) -> Validator:
    community = _community()
    return Validator("commhub", community.device_index(), "w", community.site.id, discovery, cache_bytes)


def test_topic_must_match_the_community_model() -> None:
    v = _validator()
    assert not isinstance(v.parse_topic("commhub/v1/sunrise/gas/gas-b01-u1-202/tele"), Refusal)
    cases = {
        "commhub/v1/evil/gas/gas-b01-u1-202/tele": "site_mismatch",
        "commhub/v1/sunrise/smoke/gas-b01-u1-202/tele": "kind_mismatch",
        "commhub/v1/sunrise/gas/gas-not-registered/tele": "unknown_device",
        "commhub/v1/sunrise\\/gas/gas-b01-u1-202/tele": "topic",  # a site ending in a backslash
        "commhub/v1/../camera/../snap/pwned": "topic",
    }
    # An edge agent's own birth/state/heartbeat topics are admitted; a registered id under that kind is not.
    assert not isinstance(v.parse_topic("commhub/v1/sunrise/agent/facility/birth"), Refusal)
    assert isinstance(v.parse_topic("commhub/v1/sunrise/agent/gas-b01-u1-202/birth"), Refusal)
    for topic, reason in cases.items():
        got = v.parse_topic(topic)
        assert isinstance(got, Refusal) and got.reason == reason, (topic, got)
    # With discovery on, an unregistered device is admitted (the site still has to match).
    d = _validator(discovery=True)
    assert not isinstance(d.parse_topic("commhub/v1/sunrise/gas/gas-not-registered/tele"), Refusal)
    assert isinstance(d.parse_topic("commhub/v1/evil/gas/gas-not-registered/tele"), Refusal)


def test_topic_cache_is_bounded_by_bytes_under_a_flood() -> None:
    v = _validator(discovery=True, cache_bytes=200_000)
    for i in range(1000):  # distinct 30 kB site levels: refused, and never cached
        assert isinstance(v.parse_topic(f"commhub/v1/{'s' * 30_000}{i}/gas/g-{i}/tele"), Refusal)
    assert v._cached_bytes == 0
    for i in range(3000):  # distinct admitted topics (discovery on): the cache stays under its byte bound
        assert not isinstance(v.parse_topic(f"commhub/v1/sunrise/gas/g-{i:060d}/tele"), Refusal)
        assert v._cached_bytes <= 200_000
    assert len(v._topics) < 3000


@pytest.mark.parametrize("body", [
    {"type": "gas_reading" + FORGED, "lel_pct": 1},  # unknown type: pydantic would quote the tag
    {"type": "gas_reading", "lel_pct": FORGED},
    {"type": "gas_reading", "lel_pct": 1, FORGED: 1},  # an extra key is the sender's text too
])
def test_schema_errors_quote_nothing_from_the_payload(body: dict[str, object]) -> None:
    raw = json.dumps({"schema": 1, "device_id": "gas-b01-u1-202", "ts": "2026-01-01T00:00:00Z", "seq": 1,
                      "body": body}).encode()
    with pytest.raises(ValidationError) as e:
        Envelope.model_validate_json(raw)
    reason, detail = schema_detail(e.value)
    assert reason == "schema"
    assert "\n" not in detail and "hunter2" not in detail and "ERROR" not in detail
    assert detail.startswith("body")


def test_safe_topic_hides_non_identifier_levels() -> None:
    assert safe_topic("commhub/v1/sunrise/gas/g1/tele") == "commhub/v1/sunrise/gas/g1/tele"
    assert "hunter2" not in safe_topic("commhub/v1/x" + FORGED + "/gas/g1/tele")
    assert "\n" not in safe_topic("commhub/v1/x" + FORGED + "/gas/g1/tele")


@pytest.mark.services
def test_the_hub_refuses_what_the_community_does_not_know(tmp_path: Path, own_mosquitto: Mosquitto,
                                                          influxd: Influxd, unique_site: str) -> None:
    db = f"db_{unique_site}"
    alerts_db = tmp_path / "alerts.db"
    cfg = write_config(tmp_path, own_mosquitto, influxd, db,
                       alerts={"enabled": True, "db_url": f"sqlite:///{alerts_db}", "tick_s": 0.2})
    hub = HubProcess(cfg, tmp_path / "hub.log")
    dlq = Collector(own_mosquitto, "commhub/hub/v1/deadletter", f"dlq-{unique_site}")
    pub = raw_client(own_mosquitto, f"pub-{unique_site}")
    hub.start(timeout=120)
    now = datetime.now(UTC)
    press = {"type": "panic_press"}
    reading = {"type": "gas_reading", "lel_pct": 1.5}
    refused = [
        ("commhub/v1/sunrise/panic_button/panic-evil-1/evt", envelope_json("panic-evil-1", 1, press, now),
         "unknown_device"),
        ("commhub/v1/sunrise/smoke/gas-b01-u1-202/evt", envelope_json("gas-b01-u1-202", 2, reading, now),
         "kind_mismatch"),
        ("commhub/v1/sunrise/gas/tele", envelope_json("gas-b01-u1-202", 3, reading, now), "topic"),
        ("commhub/v1/sunrise/gas/gas-b01-u1-202/tele",
         envelope_json("gas-b01-u1-202", 4, {"type": "gas" + FORGED, "lel_pct": 1}, now), "schema"),
    ]
    # Another site's topics (a neighbouring community on the same broker, or a forged site): not this hub's
    # subscription, so they never reach it (the validator's site_mismatch stays as a second line).
    foreign = [
        ("commhub/v1/evil/gas/gas-b01-u1-202/tele", envelope_json("gas-b01-u1-202", 1, reading, now)),
        ("commhub/v1/evil/panic_button/panic-b01-u1/evt", envelope_json("panic-b01-u1", 1, press, now)),
        ("commhub/v1/sunrise\\/gas/gas-b01-u1-202/tele", envelope_json("gas-b01-u1-202", 3, reading, now)),
    ]
    good = [
        ("commhub/v1/sunrise/gas/gas-b01-u1-202/tele", envelope_json("gas-b01-u1-202", 10, reading, now)),
        ("commhub/v1/sunrise/panic_button/panic-b01-u1/evt", envelope_json("panic-b01-u1", 10, press, now)),
    ]
    try:
        infos = [pub.publish(t, p, qos=1) for t, p in foreign] + [pub.publish(t, p, qos=1) for t, p, _ in refused] \
            + [pub.publish(t, p, qos=1) for t, p in good]
        for info in infos:
            info.wait_for_publish(30)
        assert wait_for(lambda: len(dlq.messages) >= len(refused), 120), dlq.messages
        assert wait_for(lambda: (hub.metric("commhub_points_written_total") or 0) >= len(refused) + len(good), 120)
        assert sorted(json.loads(p)["reason"] for _, p in dlq.messages) == sorted(r for *_, r in refused)
        for _, p in dlq.messages:
            detail = json.loads(p)["detail"]
            assert "hunter2" not in detail and "\n" not in detail
        assert hub.metric("commhub_messages_invalid_total", reason="unknown_device") == 1
        assert hub.metric("commhub_messages_in_total") == len(refused) + len(good)  # the foreign ones never came
        assert not hub.metric("commhub_messages_invalid_total", reason="site_mismatch")
        # Only registered devices of this site became series; the good reading was not lost with the bad ones.
        series = {v[0] for s in influx_query(influxd.url, db, "SHOW SERIES") for v in s["values"]}
        assert any("device_id=gas-b01-u1-202" in s and "site=sunrise" in s for s in series)
        assert not any("panic-evil-1" in s or "site=evil" in s for s in series)
        details = influx_query(influxd.url, db, 'SELECT "detail","topic" FROM "hub_dead_letter"')
        assert not any("hunter2" in str(v) for s in details for v in s["values"])
        # The registered press raised its alert; the unregistered and the foreign-site ones raised none.
        def sos() -> list[tuple[str, str]]:
            with sqlite3.connect(alerts_db) as c:
                return c.execute("SELECT device_id, site FROM alerts WHERE rule = 'sos_button'").fetchall()
        assert wait_for(lambda: len(sos()) >= 1, 60)
        assert sos() == [("panic-b01-u1", "sunrise")]
        log = (tmp_path / "hub.log").read_text()
        assert "hunter2" not in log
    finally:
        pub.disconnect()
        dlq.close()
        hub.stop()
