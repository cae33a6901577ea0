"""Retention on a real influxd, set up by a real hub at start: policies, downsampling, events kept, old data gone."""

from __future__ import annotations

import os
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from conftest import influx_query
from hub_helpers import HubProcess, write_config

from commhub.config import load
from commhub.services import Influxd, Mosquitto
from hub.store.retention import EVENTS_RP, HOURLY_CQ, HOURLY_RP, RAW_RP, InfluxRetention, purge_snapshots

WAIT = 120.0  # generous: the machine is shared; no verdict depends on speed


@pytest.fixture
def fast_influxd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Influxd]:
    """An influxd that enforces retention every second (the default is every 30 minutes)."""
    server = Influxd(tmp_path_factory.mktemp("influxd-retention"), retention_check_s=1)
    server.start()
    yield server
    server.stop(kill=True)


def _wait(pred: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT
    while not pred():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.3)


def _write(url: str, db: str, rp: str, lines: list[str]) -> None:
    req = urllib.request.Request(f"{url}/write?db={db}&rp={rp}&precision=s", data="\n".join(lines).encode(),
                                 method="POST")
    with urllib.request.urlopen(req, timeout=30) as r:
        assert r.status == 204


def _policies(url: str, db: str) -> dict[str, tuple[str, bool]]:
    try:
        series = influx_query(url, db, f'SHOW RETENTION POLICIES ON "{db}"')
    except AssertionError:  # the database does not exist yet
        return {}
    return {row[0]: (row[1], row[4]) for s in series for row in s["values"]}


@pytest.mark.services
def test_hub_sets_up_retention_and_old_points_move_to_the_aggregates(
        mosquitto_factory: Callable[..., Mosquitto], fast_influxd: Influxd, tmp_path: Path) -> None:
    db = "ret_" + uuid.uuid4().hex[:8]
    cfg_path = write_config(tmp_path, mosquitto_factory(), fast_influxd, db,
                            hub={"retention": {"enabled": True, "raw_days": 30, "aggregate_days": 730,
                                               "events_days": 183}})
    hub = HubProcess(cfg_path, tmp_path / "hub.log")
    hub.start()
    try:
        _wait(lambda: {RAW_RP, HOURLY_RP, EVENTS_RP} <= set(_policies(fast_influxd.url, db)), "the policies")
        pol = _policies(fast_influxd.url, db)
        assert pol[RAW_RP] == ("720h0m0s", True), "raw keeps 30 days and is where the hub writes"
        assert pol[HOURLY_RP][0] == "17520h0m0s" and pol[EVENTS_RP][0] == "4392h0m0s"

        def cq_names() -> list[str]:
            cqs = influx_query(fast_influxd.url, db, "SHOW CONTINUOUS QUERIES")
            return [row[0] for s in cqs if s["name"] == db for row in s.get("values", [])]

        _wait(lambda: HOURLY_CQ in cq_names(), "the continuous query")
    finally:
        assert hub.stop() == 0

    # Ten days ago: two readings of a hydrant in one hour, an access event, and a reading from today.
    old = int(time.time()) - 10 * 86400
    old -= old % 3600
    now = int(time.time())
    _write(fast_influxd.url, db, RAW_RP, [
        f"hydrant_pressure,site=s,device_id=h1 pressure_mpa=0.30,seq=1i {old + 60}",
        f"hydrant_pressure,site=s,device_id=h1 pressure_mpa=0.40,seq=2i {old + 120}",
        f'access_granted,site=s,device_id=d1 seq=7i,credential_ref="abc" {old + 300}',
        f"hydrant_pressure,site=s,device_id=h1 pressure_mpa=0.50,seq=3i {now - 60}",
    ])
    cfg = load(cfg_path)
    retention = InfluxRetention(cfg.influx, cfg.hub.retention)
    try:
        # The periodic run (what the continuous query does as time passes), over the last 11 days.
        agg, events = retention.backfill(lookback_h=11 * 24)
        assert agg >= 2 and events == 1
        # Raw retention is now one day (as after a config change and a restart): the 10-day-old shard goes.
        short = InfluxRetention(cfg.influx, cfg.hub.retention.model_copy(update={"raw_days": 1}))
        short.apply()
        short.close()
    finally:
        retention.close()

    def raw_values() -> list[float]:
        series = influx_query(fast_influxd.url, db, f'SELECT pressure_mpa FROM "{RAW_RP}".hydrant_pressure')
        return [v[1] for s in series for v in s["values"]]

    _wait(lambda: raw_values() == [0.5], "the old raw points to be dropped by retention")
    hourly = influx_query(fast_influxd.url, db,
                          f'SELECT mean_pressure_mpa FROM "{HOURLY_RP}".hydrant_pressure WHERE time < now() - 9d')
    assert [round(v[1], 3) for s in hourly for v in s["values"]] == [0.35], "the hour's mean is kept"
    kept = influx_query(fast_influxd.url, db, f'SELECT seq, credential_ref FROM "{EVENTS_RP}".access_granted')
    assert [v[1:] for s in kept for v in s["values"]] == [[7, "abc"]], "the access event is kept whole"
    gone = influx_query(fast_influxd.url, db, f'SELECT seq FROM "{RAW_RP}".access_granted')
    assert gone == []


def test_old_snapshots_are_purged_and_new_ones_kept(tmp_path: Path) -> None:
    now = time.time()
    old = tmp_path / "s" / "cam-1" / "a.jpg"
    new = tmp_path / "s" / "cam-1" / "b.jpg"
    other = tmp_path / "s" / "cam-1" / "notes.txt"
    for p in (old, new, other):
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"\xff\xd8x")
    os.utime(old, (now - 200 * 86400, now - 200 * 86400))
    os.utime(other, (now - 200 * 86400, now - 200 * 86400))
    assert purge_snapshots(tmp_path, 183 * 86400, now) == 1
    assert not old.exists() and new.exists() and other.exists()
    assert purge_snapshots(tmp_path / "missing", 1.0, now) == 0


def test_closed_alerts_are_purged_by_age_with_their_audit_trail(tmp_path: Path) -> None:
    from sqlalchemy import func, insert, select

    from hub.alerts.db import make_engine, migrate
    from hub.alerts.models import Alert, Transition
    from hub.store.retention import purge_alerts

    engine = make_engine(f"sqlite:///{tmp_path / 'alerts.db'}")
    migrate(engine)
    now = time.time()
    day = 86400.0
    rows = {  # name: (state, last change)
        "old_closed": ("closed", now - 200 * day), "old_false_alarm": ("false_alarm", now - 200 * day),
        "old_but_open": ("open", now - 200 * day), "recent_closed": ("closed", now - 10 * day)}
    ids = {}
    with engine.begin() as conn:
        for name, (state, at) in rows.items():
            ids[name] = conn.execute(insert(Alert).values(
                rule="r", code="c", subject=name, severity="high", layer="people", site="s", grid="g",
                state=state, opened_at=at, updated_at=at, last_fired_at=at).returning(Alert.id)).scalar_one()
            conn.execute(insert(Transition).values(alert_id=ids[name], transition="open", to_state="open", by="t",
                                                   at=at))
    assert purge_alerts(engine, 183 * day, now) == 2
    with engine.connect() as conn:
        left = set(conn.execute(select(Alert.subject)).scalars())
        trail = conn.execute(select(func.count()).select_from(Transition)).scalar_one()
    assert left == {"old_but_open", "recent_closed"} and trail == 2
    engine.dispose()
