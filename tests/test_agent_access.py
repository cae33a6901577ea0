"""Access agent: credential hashing, the push format, the HTTP endpoint end to end onto a real broker, the simulator."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from agent_helpers import Collector, make_config

from commhub.config import ConfigError
from commhub.ports import free_port
from commhub.services import Mosquitto
from commhub.wire import KIND_BODIES, AccessDenied, AccessGranted, DeviceKind, Passage, Tamper
from edge_agents.access.agent import AccessAgent
from edge_agents.access.hashing import CredentialHasher
from edge_agents.access.mapping import PushError, parse_request

SECRET = "test-site-secret-0123456789"
CARD = "0012345678"


def hasher() -> CredentialHasher:
    return CredentialHasher(SECRET, 32)


# ---- pure logic ------------------------------------------------------------------------------------

def test_refs_are_stable_keyed_and_namespaced() -> None:
    h = hasher()
    ref = h.ref("card", CARD)
    assert ref == h.ref("card", CARD) and len(ref) == 32 and CARD not in ref
    assert ref != h.ref("person", CARD), "a card and a person with the same number differ"
    assert ref != CredentialHasher("another-secret-0123456789", 32).ref("card", CARD), "the secret keys the hash"
    with pytest.raises(ValueError, match="site_secret"):
        CredentialHasher("short", 32).check()


def test_push_format_aliases_and_hashing() -> None:
    now = datetime(2026, 5, 1, tzinfo=UTC)
    out = parse_request({"events": [
        {"device": "dc1", "event": "granted", "card": int(CARD), "door": "east"},
        {"device": "dc1", "event": "invalid_card", "card": CARD, "reason": "unknown_card"},
        {"device": "fg1", "event": "access", "face": "stranger-7", "registered": False, "ts": 1777593600.5},
        {"device": "ts1", "event": "pass", "count": 2, "direction": "out", "ts": "2026-05-01T08:00:00+08:00"},
        {"device": "dc1", "event": "tamper", "tamper": "enclosure", "active": False},
        {"device": "dc1", "event": "REX"},
    ]}, hasher(), now)
    bodies = [b for _, b, _ in out]
    granted, denied, face, passage, tamper, rex = bodies
    assert isinstance(granted, AccessGranted) and granted.door == "east" and granted.method == "card"
    assert granted.credential_ref == hasher().ref("card", str(int(CARD)))
    assert isinstance(denied, AccessDenied) and denied.reason == "unknown_credential"
    assert isinstance(face, AccessGranted) and face.method == "face" and face.registered is False
    assert out[2][2] == datetime.fromtimestamp(1777593600.5, UTC)
    assert isinstance(passage, Passage) and passage.count == 2 and passage.direction == "out"
    assert out[3][2] == datetime(2026, 5, 1, 0, 0, tzinfo=UTC)
    assert isinstance(tamper, Tamper) and tamper.kind == "enclosure" and not tamper.active
    assert rex.type == "exit_request"
    assert out[0][2] == now, "no ts: the arrival time"
    assert CARD not in json.dumps([b.model_dump() for b in bodies])


def test_push_errors_name_the_place_and_never_echo_the_card() -> None:
    with pytest.raises(PushError) as err:
        parse_request([
            {"device": "dc1", "event": "granted", "card": CARD},                       # fine
            {"device": "dc1", "event": "explode", "card": CARD},                       # unknown event
            {"device": "dc1", "event": "granted", "card": CARD, "person": "p1"},       # two credentials
            {"device": "dc1", "event": "granted", "crad": CARD},                       # typo'd key
            {"device": "dc1", "event": "denied", "card": CARD, "ts": "2026-05-01T08:00:00"},  # naive time
            "not an object",
        ], hasher())
    details = err.value.details
    assert {d["index"] for d in details} == {1, 2, 3, 4, 5}
    assert any(d["field"] == "crad" for d in details)
    assert CARD not in json.dumps(details) and CARD not in str(err.value)
    with pytest.raises(PushError, match="no events"):
        parse_request([], hasher())


# ---- end to end ---------------------------------------------------------------------------------------

def _post(url: str, body: Any, token: str | None = None) -> tuple[int, dict[str, Any]]:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method="POST", headers={"Content-Type": "application/json"})
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


DEVICES = [("dc1", DeviceKind.DOOR_CONTROLLER), ("fg1", DeviceKind.FACE_GATE), ("ts1", DeviceKind.TURNSTILE),
           ("gas1", DeviceKind.GAS)]


@pytest.mark.broker
def test_http_push_end_to_end(mosquitto: Mosquitto, unique_site: str, tmp_path: Path) -> None:
    cfg = make_config(mosquitto.port, unique_site, DEVICES, tmp_path,
                      access={"site_secret": SECRET, "http": {"port": 0, "token": "tok"}})
    col = Collector(mosquitto.port, f"commhub/v1/{unique_site}/#").start()
    agent = AccessAgent(cfg)
    agent.start()
    try:
        assert agent.base is not None and agent.base.wait_connected(60)
        assert agent.http is not None
        url = f"http://127.0.0.1:{agent.http.port}/events"
        events = [
            {"device": "dc1", "event": "granted", "card": CARD},
            {"device": "dc1", "event": "door_open"},
            {"device": "dc1", "event": "door_closed"},
            {"device": "dc1", "event": "denied", "card": "99", "reason": "expired"},
            {"device": "fg1", "event": "granted", "person": "resident-12"},
            {"device": "ts1", "event": "passage", "count": 2},
            {"device": "dc1", "event": "duress"},
        ]
        status, body = _post(url, events, "tok")
        assert status == 200 and body["accepted"] == 7 and body["durable"] is True
        # Refusals publish nothing: a wrong token, an invalid batch, a device of another agent.
        assert _post(url, events, "wrong")[0] == 401
        status, bad = _post(url, [events[0], {"device": "dc1", "event": "nope"}], "tok")
        assert status == 400 and bad["details"][0]["index"] == 1
        assert _post(url, {"device": "gas1", "event": "granted", "card": CARD}, "tok")[0] == 404
        assert _post(url, b"{not json", "tok")[0] == 400
        assert agent.base.flush(10)
        assert col.wait_for(lambda ms: len([m for m in ms if m.channel == "evt"]) >= 7)
        time.sleep(0.3)  # anything wrongly published by the refused requests would arrive by now
        evts = [m for m in col.snapshot() if m.channel == "evt"]
        assert len(evts) == 7
        dc = [e.body for e in col.envelopes("dc1")]
        assert [b.type for b in dc] == ["access_granted", "door_opened", "door_closed", "access_denied", "duress"]
        granted = dc[0]
        assert isinstance(granted, AccessGranted) and granted.credential_ref == hasher().ref("card", CARD)
        assert [e.seq for e in col.envelopes("dc1")] == [*body["seqs"][:4], body["seqs"][6]]
        for m in col.snapshot():
            assert CARD.encode() not in m.payload and b"resident-12" not in m.payload, "no raw credential on the wire"
    finally:
        agent.stop()
        col.stop()


@pytest.mark.broker
def test_simulated_access_events_are_valid_and_delivered(mosquitto: Mosquitto, unique_site: str,
                                                          tmp_path: Path) -> None:
    cfg = make_config(mosquitto.port, unique_site, DEVICES, tmp_path,
                      access={"site_secret": SECRET, "sim_events_per_device_s": 20.0})
    col = Collector(mosquitto.port, f"commhub/v1/{unique_site}/#").start()
    agent = AccessAgent(cfg, simulate=True, http=False, seed=3)
    agent.start()
    try:
        time.sleep(2.0)
    finally:
        agent.stop()
    assert agent.base is not None
    st = agent.base.stats
    assert st.spooled == 0 and st.acked == st.published
    events = [m for m in col.snapshot() if m.channel == "evt"]
    assert len(events) >= 60, "about 20 arrivals/s for each of 3 devices"
    kinds = dict(DEVICES)
    for m in events:
        env = m.envelope
        assert env.body.type in KIND_BODIES[kinds[env.device_id]]
    types = {m.envelope.body.type for m in events}
    assert {"access_granted", "access_denied", "passage"} <= types
    assert "gas1" not in {m.envelope.device_id for m in col.snapshot()}, "the access agent serves access devices"
    col.stop()


def test_access_agent_refuses_missing_secret_and_unknown_devices(tmp_path: Path) -> None:
    cfg = make_config(free_port(), "s1", DEVICES, tmp_path)
    with pytest.raises(ValueError, match="site_secret"):
        AccessAgent(cfg).start()
    cfg = make_config(free_port(), "s1", DEVICES, tmp_path, access={"site_secret": SECRET, "devices": ["gas1"]})
    with pytest.raises(ConfigError, match=r"agent.access.devices\[0\].*gas"):
        AccessAgent(cfg).start()
