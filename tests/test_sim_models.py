"""Normal-life behaviour models: deterministic, time-ordered, valid, alive, rhythmic and clear of every rule."""

from __future__ import annotations

import itertools
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sim_helpers import DAY, MIDNIGHT, context, device, run_for

from commhub.wire import KIND_BODIES, DeviceKind, Envelope
from simulators import recordings as recs
from simulators.models import MODELS
from simulators.rhythm import LocalTime

KINDS = [k for k in DeviceKind if k is not DeviceKind.AGENT]


def test_every_device_kind_but_the_agent_has_a_model() -> None:
    assert set(MODELS) == set(KINDS)


@pytest.mark.parametrize("kind", KINDS, ids=str)
def test_models_are_ordered_valid_and_alive(kind: DeviceKind) -> None:
    dev = device(kind)
    events = run_for(dev, DAY)
    assert events, f"{kind} sent nothing in a day"
    times = [t for t, _ in events]
    assert times == sorted(times)
    allowed = KIND_BODIES[kind]
    for i, (t, body) in enumerate(events[:2000]):
        assert body.type in allowed
        env = Envelope(device_id=dev.id, ts=datetime.fromtimestamp(t, UTC), seq=i, body=body)
        assert Envelope.model_validate_json(env.to_json()) == env
    # Liveness: never silent for a whole interval (the hub calls a device offline after three).
    slack = 5 * 60 if kind is DeviceKind.PATROL else 0.0
    gaps = [b - a for a, b in zip([MIDNIGHT, *times], times, strict=False)]
    assert max(gaps) <= dev.interval_s + slack + 1e-6


@pytest.mark.parametrize("kind", KINDS, ids=str)
def test_same_seed_same_life_other_seed_other_life(kind: DeviceKind) -> None:
    dev = device(kind)
    a = run_for(dev, 6 * 3600, seed=7)
    assert a == run_for(dev, 6 * 3600, seed=7)
    if kind is not DeviceKind.PATROL:  # hourly heartbeats differ only in phase; all kinds do differ
        assert a != run_for(dev, 6 * 3600, seed=8)


def _hour_counts(events: list[tuple[float, Any]], body_type: str) -> Counter[int]:
    local = LocalTime("Asia/Shanghai")
    return Counter(int(local.hour(t)) for t, b in events if b.type == body_type)


def test_access_has_morning_and_evening_peaks_and_quiet_nights() -> None:
    events = run_for(device(DeviceKind.FACE_GATE), 7 * DAY)
    per_hour = _hour_counts(events, "passage")
    night = sum(per_hour[h] for h in (1, 2, 3, 4))
    morning = sum(per_hour[h] for h in (7, 8))
    evening = sum(per_hour[h] for h in (17, 18))
    midday = sum(per_hour[h] for h in (14, 15))
    assert morning > 2 * midday and evening > 2 * midday
    assert night * 10 < morning


def test_door_sequences_stay_clear_of_access_rules() -> None:
    events = run_for(device(DeviceKind.DOOR_CONTROLLER), 3 * DAY)
    last_permit = -1e9
    opened_at: float | None = None
    denials: list[float] = []
    for t, b in events:
        kind = b.type
        if kind in ("access_granted", "exit_request"):
            last_permit = t
        elif kind == "door_opened":
            assert opened_at is None, "opened twice without closing"
            assert t - last_permit <= 5.0, "an opening without a grant or exit request (forced door)"
            opened_at = t
        elif kind == "door_closed":
            assert opened_at is not None and t - opened_at < 30.0, "held open"
            opened_at = None
        elif kind == "access_denied":
            denials.append(t)
    assert denials, "some denials happen in normal life"
    assert all(b - a >= 60 for a, b in itertools.pairwise(denials))


@pytest.mark.parametrize("kind", [DeviceKind.TURNSTILE, DeviceKind.FACE_GATE, DeviceKind.DOOR_CONTROLLER], ids=str)
def test_one_passage_per_grant_and_no_repeated_entry(kind: DeviceKind) -> None:
    events = run_for(device(kind), 2 * DAY)
    state: dict[str, str] = {}
    grants = 0
    pending = 0
    for _t, b in events:
        if b.type == "access_granted":
            grants += 1
            assert pending == 0
            pending = 1 if kind is not DeviceKind.DOOR_CONTROLLER else 0
            if b.registered:
                ref, d = b.credential_ref, b.direction
                assert state.get(ref) != d, "same direction twice (anti-passback)"
                state[ref] = d
        elif b.type == "passage":
            assert b.count == 1 and pending == 1
            pending = 0
    assert grants > 100


def test_facility_readings_stay_normal() -> None:
    hyd = [b.pressure_mpa for _, b in run_for(device(DeviceKind.HYDRANT), DAY)]
    assert min(hyd) >= 0.25 and max(abs(a - b) for a, b in itertools.pairwise(hyd)) < 0.01
    gas = [b.lel_pct for _, b in run_for(device(DeviceKind.GAS), DAY)]
    assert max(gas) < 5.0
    cam = run_for(device(DeviceKind.CAMERA), DAY)
    assert max(b.count for _, b in cam if b.type == "camera_crowd") <= 4
    dwell = [b.dwell_s for _, b in cam if b.type == "camera_object" and b.phase == "end"]
    assert dwell and max(dwell) < 60
    zones = {z for _, b in cam if b.type == "camera_object" for z in b.zones}
    assert zones <= {"walkway", "road"}
    charger = [b.temp_c for _, b in run_for(device(DeviceKind.CHARGER), DAY)]
    assert max(charger) < 70
    smoke = run_for(device(DeviceKind.SMOKE), DAY)
    assert not any(b.alarm for _, b in smoke)


def test_water_meter_follows_routine() -> None:
    events = run_for(device(DeviceKind.WATER_METER), 3 * DAY)
    totals = [b.total_l for _, b in events]
    assert totals == sorted(totals)
    daily = (totals[-1] - totals[0]) / 3
    assert 150 < daily < 450
    local = LocalTime("Asia/Shanghai")
    day_use = sum(b.flow_l for t, b in events if 6 <= local.hour(t) < 22)
    night_use = sum(b.flow_l for t, b in events if local.hour(t) < 5)
    assert day_use / 3 > 100 and night_use < day_use / 20


def test_welfare_door_contact_opens_daily() -> None:
    events = run_for(device(DeviceKind.DOOR_CONTACT), 7 * DAY)
    opens = [t for t, b in events if b.type == "door_contact" and b.open]
    assert len(opens) >= 7 * 4
    assert max(b - a for a, b in itertools.pairwise(opens)) < 20 * 3600


def test_patrol_scans_every_slot_within_five_minutes() -> None:
    dev = device(DeviceKind.PATROL, interval_s=7200)
    scans = [t for t, b in run_for(dev, DAY) if b.type == "patrol_scan"]
    assert len(scans) == 11  # slots 02:00 .. 22:00 local; 00:00 is the start itself
    for i, t in enumerate(scans, start=1):
        slot = MIDNIGHT + i * 7200
        assert slot <= t <= slot + 300


def test_env_replays_uci_rows_and_electrical_replays_nab(shared_data: Path) -> None:
    data = recs.load(shared_data)
    ctx = context(data)
    env = run_for(device(DeviceKind.ENV), 3600, ctx=ctx)
    rows = [(r.temp_c, r.humidity_pct, r.light_lux, r.co2_ppm) for r in data.env]
    got = [(b.temp_c, b.humidity_pct, b.light_lux, b.co2_ppm) for _, b in env]
    first = rows.index(got[0])
    assert got == rows[first:first + len(got)]
    el = run_for(device(DeviceKind.ELECTRICAL, interval_s=3600), 10 * 3600, ctx=ctx)
    temps = [b.temp_c for _, b in el]
    nab = list(data.temp_c)
    diffs = [min(abs(t - 8.0 - v) for v in nab) for t in temps]
    assert max(diffs) <= 0.31


def test_missing_recordings_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(recs.RecordingError, match=r"uci-occupancy-training\.txt"):
        recs.load(tmp_path)
