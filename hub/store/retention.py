"""Retention: InfluxDB 1.x retention policies and downsampling, and the purge of old snapshots and alerts.

Three policies: `raw` (the default, where the hub writes) keeps points `raw_days`; `hourly` keeps the hourly
means of every numeric field `aggregate_days`; `events` keeps access, alarm and camera events `events_days`.
A continuous query fills `hourly` as time passes. Events cannot be copied by a continuous query (it must
aggregate), so a periodic run copies them with `SELECT * INTO`; the same run re-aggregates the last
`lookback_h` hours, so a backlog that arrives late (a hub or agent outage) is aggregated and kept as well.
The same run deletes snapshots older than `snapshots_days` and closed alerts older than `alerts_days`.
On InfluxDB 2.x the keeper sets up buckets and tasks instead (hub/store/retention_v2.py) and only purges.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import Engine, delete, select
from sqlalchemy.exc import SQLAlchemyError

from commhub.config import InfluxConfig, RetentionConfig
from commhub.wire import BODY_TYPES, body_channel
from hub.alerts.db import make_engine
from hub.alerts.models import Alert, Transition
from hub.store.influx import detect
from hub.store.retention_v2 import InfluxV2Retention, RetentionV2Error

log = logging.getLogger(__name__)

RAW_RP = "raw"
HOURLY_RP = "hourly"
EVENTS_RP = "events"
HOURLY_CQ = "commhub_hourly"
# Every event body type: the measurements the `events` policy keeps.
EVENT_MEASUREMENTS = tuple(sorted(t for t in BODY_TYPES if body_channel(t) == "evt"))


class RetentionError(RuntimeError):
    """InfluxDB refused a retention statement."""


def _hours(days: float) -> str:
    return f"{max(1, round(days * 24))}h"


class InfluxRetention:
    """Sets up and runs retention on one InfluxDB 1.x database."""

    def __init__(self, influx: InfluxConfig, cfg: RetentionConfig) -> None:
        self.influx = influx
        self.cfg = cfg
        self.db = influx.database
        self.source_rp = influx.retention_policy or RAW_RP
        auth = (influx.username, influx.password) if influx.username else None
        self._http = httpx.Client(base_url=influx.url, timeout=max(influx.timeout_s, 60.0), auth=auth)

    def close(self) -> None:
        """Close the HTTP client."""
        self._http.close()

    def query(self, q: str) -> list[dict[str, Any]]:
        """Run one InfluxQL statement; its series, or RetentionError with InfluxDB's reason."""
        r = self._http.post("/query", params={"db": self.db, "q": q})
        if r.status_code != 200:
            raise RetentionError(f"InfluxDB answered HTTP {r.status_code} to a retention statement: {r.text[:200]}")
        result = r.json()["results"][0]
        if "error" in result:
            raise RetentionError(f"InfluxDB: {result['error']}")
        return list(result.get("series", []))

    def policies(self) -> dict[str, tuple[str, bool]]:
        """name -> (duration, default) of the database's retention policies."""
        out = {}
        for s in self.query(f'SHOW RETENTION POLICIES ON "{self.db}"'):
            cols = s["columns"]
            for row in s["values"]:
                rec = dict(zip(cols, row, strict=True))
                out[str(rec["name"])] = (str(rec["duration"]), bool(rec["default"]))
        return out

    def apply(self) -> None:
        """Create or alter the policies and (re)create the continuous query; safe to run at every start."""
        self.query(f'CREATE DATABASE "{self.db}"')
        have = self.policies()
        wanted = [(RAW_RP, self.cfg.raw_days, self.source_rp == RAW_RP), (HOURLY_RP, self.cfg.aggregate_days, False),
                  (EVENTS_RP, self.cfg.events_days, False)]
        for name, days, default in wanted:
            verb = "ALTER" if name in have else "CREATE"
            # Shards of a day (InfluxDB's own choice for such durations) let old data go a day at a time.
            self.query(f'{verb} RETENTION POLICY "{name}" ON "{self.db}" DURATION {_hours(days)} REPLICATION 1 '
                       f'SHARD DURATION 1d{" DEFAULT" if default else ""}')
        self.query(f'DROP CONTINUOUS QUERY "{HOURLY_CQ}" ON "{self.db}"')
        self.query(f'CREATE CONTINUOUS QUERY "{HOURLY_CQ}" ON "{self.db}" RESAMPLE FOR 2h BEGIN '
                   f'{self._hourly_select()} GROUP BY time(1h), * END')
        log.info("retention on %s: raw %s (default), hourly %s, events %s; continuous query %s", self.db,
                 _hours(self.cfg.raw_days), _hours(self.cfg.aggregate_days), _hours(self.cfg.events_days), HOURLY_CQ)

    def _hourly_select(self) -> str:
        return f'SELECT mean(*) INTO "{self.db}"."{HOURLY_RP}".:MEASUREMENT FROM "{self.db}"."{self.source_rp}"./.*/'

    def backfill(self, lookback_h: float | None = None) -> tuple[int, int]:
        """Aggregate and copy events over the last lookback_h hours; (aggregate points, event points) written."""
        since = f"now() - {_hours((lookback_h or self.cfg.lookback_h) / 24)}"
        agg = self.query(f"{self._hourly_select()} WHERE time > {since} GROUP BY time(1h), *")
        names = "|".join(EVENT_MEASUREMENTS)
        events = self.query(f'SELECT * INTO "{self.db}"."{EVENTS_RP}".:MEASUREMENT FROM '
                            f'"{self.db}"."{self.source_rp}"./^({names})$/ WHERE time > {since} GROUP BY *')
        return _written(agg), _written(events)


def _written(series: list[dict[str, Any]]) -> int:
    return sum(int(v[1]) for s in series for v in s.get("values", []))


def purge_snapshots(directory: Path, older_than_s: float, now: float | None = None) -> int:
    """Delete snapshot files written more than older_than_s ago; returns how many."""
    cutoff = (now if now is not None else time.time()) - older_than_s
    removed = 0
    if not directory.is_dir():
        return 0
    for path in directory.rglob("*.jpg"):
        try:
            if path.stat().st_mtime < cutoff:
                path.unlink()
                removed += 1
        except FileNotFoundError:
            continue
    return removed


_FINAL_STATES = ("closed", "false_alarm")


def purge_alerts(engine: Engine, older_than_s: float, now: float | None = None) -> int:
    """Delete closed and false-alarm alerts last changed more than older_than_s ago, with their transitions."""
    cutoff = (now if now is not None else time.time()) - older_than_s
    old = select(Alert.id).where(Alert.state.in_(_FINAL_STATES), Alert.updated_at < cutoff)
    with engine.begin() as conn:
        conn.execute(delete(Transition).where(Transition.alert_id.in_(old)))
        return int(conn.execute(delete(Alert).where(Alert.id.in_(old))).rowcount or 0)


class RetentionKeeper:
    """Background thread: set retention up once InfluxDB answers, then copy, re-aggregate and purge periodically.

    InfluxDB being down at start must not hold the hub up: ingest goes to the spool meanwhile.
    """

    def __init__(self, influx: InfluxConfig, cfg: RetentionConfig, snapshots_dir: Path,
                 alerts_db_url: str | None = None) -> None:
        self.influx = influx
        self.cfg = cfg
        self.snapshots_dir = snapshots_dir
        self.alerts_db_url = alerts_db_url
        self.applied = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start the thread."""
        self._thread = threading.Thread(target=self._run, name="retention", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the thread."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)

    def _influx_kind(self) -> str:
        """'v1' (InfluxQL policies and queries), 'v2' (buckets and tasks) or '' (not managed) for this server."""
        version = detect(self.influx.url, self.influx.timeout_s)
        major = (version or "").lstrip("v").split(".")[0]
        if major == "1":
            # 1.8+ takes /api/v2/write too, but keeps data by retention policy like 1.6.
            return "v1"
        if major == "2" or (not version and self.influx.transport == "v2"):
            return "v2"
        log.warning("retention: InfluxDB %s is neither 1.x nor 2.x; set its retention by hand (docs/scaling.md); "
                    "snapshots and alerts are still purged", version or "(version unknown)")
        return ""

    def _setup(self) -> InfluxRetention | InfluxV2Retention | None:
        kind = self._influx_kind()
        if kind == "v1":
            return InfluxRetention(self.influx, self.cfg)
        if kind == "v2":
            return InfluxV2Retention(self.influx, self.cfg, EVENT_MEASUREMENTS)
        return None

    def _run(self) -> None:
        delay = 1.0
        retention: InfluxRetention | InfluxV2Retention | None = None
        managed: bool | None = None
        while not self._stop.is_set():
            try:
                if managed is None:
                    retention = self._setup()
                    managed = retention is not None
                if retention is not None and not self.applied.is_set():
                    retention.apply()
                    self.applied.set()
                agg = events = 0
                if isinstance(retention, InfluxRetention):
                    agg, events = retention.backfill()
                # On 2.x the two tasks aggregate and copy inside InfluxDB.
                purged = purge_snapshots(self.snapshots_dir, self.cfg.snapshots_days * 86400)
                alerts = self._purge_alerts()
                log.info("retention: %d hourly aggregates, %d events kept, %d old snapshots and %d old alerts "
                         "deleted", agg, events, purged, alerts)
                delay = 1.0
                self._stop.wait(self.cfg.interval_s)
            except (httpx.HTTPError, RetentionError, RetentionV2Error, OSError, SQLAlchemyError) as e:
                log.warning("retention: %s; retrying in %.0fs", e, delay)
                self._stop.wait(delay)
                delay = min(delay * 2, 300.0)
            except Exception as e:  # influxdb-client's ApiException and urllib3 errors; the thread must live on
                log.warning("retention: %s: %s; retrying in %.0fs", type(e).__name__, str(e)[:300], delay)
                self._stop.wait(delay)
                delay = min(delay * 2, 300.0)
        if retention is not None:
            retention.close()

    def _purge_alerts(self) -> int:
        if not self.alerts_db_url:
            return 0
        engine = make_engine(self.alerts_db_url)
        try:
            return purge_alerts(engine, self.cfg.alerts_days * 86400)
        finally:
            engine.dispose()
