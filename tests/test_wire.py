"""The wire models: strict, frozen, discriminated by type, and free of personal data."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from pydantic import ValidationError

from commhub import wire
from commhub.wire import BODY_TYPES, KIND_BODIES, DeviceKind, Envelope, GasReading, parse_envelope


def _env(**kw: object) -> Envelope:
    base: dict[str, object] = {"device_id": "gas-1", "ts": datetime(2026, 1, 1, tzinfo=UTC), "seq": 1,
                               "body": GasReading(lel_pct=2.5)}
    base.update(kw)
    return Envelope(**base)  # type: ignore[arg-type]


def test_round_trip_and_frozen() -> None:
    e = _env()
    again = parse_envelope(e.to_json())
    assert again == e
    assert isinstance(again.body, GasReading)
    with pytest.raises(ValidationError):
        e.seq = 2  # type: ignore[misc]


def test_timestamps_are_utc_and_aware() -> None:
    e = _env(ts=datetime(2026, 1, 1, 8, tzinfo=timezone(timedelta(hours=8))))
    assert e.ts == datetime(2026, 1, 1, tzinfo=UTC) and e.ts.tzinfo == UTC
    with pytest.raises(ValidationError, match="timezone"):
        parse_envelope(b'{"schema":1,"device_id":"g","ts":"2026-01-01T00:00:00","seq":1,'
                       b'"body":{"type":"gas_reading","lel_pct":1}}')


@pytest.mark.parametrize("payload,match", [
    (b'{"schema":1,"device_id":"g","ts":"2026-01-01T00:00:00Z","seq":1,"body":{"type":"gas_reading",'
     b'"lel_pct":1,"extra":1}}', "Extra inputs"),
    (b'{"schema":2,"device_id":"g","ts":"2026-01-01T00:00:00Z","seq":1,"body":{"type":"panic_press"}}', "schema"),
    (b'{"schema":1,"device_id":"g","ts":"2026-01-01T00:00:00Z","seq":-1,"body":{"type":"panic_press"}}', "seq"),
    (b'{"schema":1,"device_id":"g","ts":"2026-01-01T00:00:00Z","seq":"1","body":{"type":"panic_press"}}', "seq"),
    (b'{"schema":1,"device_id":"g","ts":"2026-01-01T00:00:00Z","seq":1,"body":{"type":"nope"}}', "tag"),
    (b'{"schema":1,"device_id":"g","ts":"0001-01-01T00:00:00+01:00","seq":1,"body":{"type":"panic_press"}}',
     "out of range"),
    (b'{"schema":1,"device_id":"g","ts":"1969-12-31T23:59:59Z","seq":1,"body":{"type":"panic_press"}}',
     "between 1970"),
    (b'{"schema":1,"device_id":"bad id","ts":"2026-01-01T00:00:00Z","seq":1,"body":{"type":"panic_press"}}',
     "device_id"),
    # Infinity passes a lower bound alone (total_l: ge=0); no float may be infinite or NaN.
    (b'{"schema":1,"device_id":"w","ts":"2026-01-01T00:00:00Z","seq":1,"body":{"type":"water_meter",'
     b'"total_l":1e999,"flow_l":0}}', "total_l\n.*finite number"),
    (b'{"schema":1,"device_id":"w","ts":"2026-01-01T00:00:00Z","seq":1,"body":{"type":"water_meter",'
     b'"total_l":Infinity,"flow_l":0}}', "total_l"),
    (b'{"schema":1,"device_id":"w","ts":"2026-01-01T00:00:00Z","seq":1,"body":{"type":"water_meter",'
     b'"total_l":1,"flow_l":NaN}}', "flow_l"),
])
def test_strict_validation(payload: bytes, match: str) -> None:
    with pytest.raises(ValidationError, match=match):
        parse_envelope(payload)


def test_person_refs_are_opaque_hashes() -> None:
    with pytest.raises(ValidationError):
        wire.AccessGranted(door="d1", credential_ref="Zhang San", method="card")
    ok = wire.AccessGranted(door="d1", credential_ref="a3f1c2d4e5b60718", method="face")
    assert ok.credential_ref == "a3f1c2d4e5b60718"


def test_every_kind_has_bodies_that_exist() -> None:
    for kind in DeviceKind:
        assert KIND_BODIES[kind], kind
        assert KIND_BODIES[kind] <= set(BODY_TYPES), kind
        assert kind in wire.KIND_LAYER


def test_channels() -> None:
    assert wire.body_channel("gas_reading") == "tele"
    assert wire.body_channel("door_opened") == "evt"
    assert wire.body_channel("birth") == "birth"
    assert wire.body_channel("state") == "state"
