"""Retention on InfluxDB 2.x: bucket retention, an hourly downsampling task and an events task, by the HTTP API.

The same three stores as the 1.x policies (hub/store/retention.py), as buckets: the raw bucket (the one the hub
writes, `influx.database`) keeps `raw_days`; `<database>_hourly` keeps the hourly means of every numeric field
`aggregate_days`; `<database>_events` keeps access, alarm and camera events `events_days`. Two Flux tasks run
every hour and re-aggregate and copy the last `lookback_h` hours (whole hours only), so a late backlog is kept
too; rewriting an hour writes the same points again, so reruns are harmless. DBRP mappings name the buckets
`<database>/raw`, `<database>/hourly` and `<database>/events`, so the InfluxQL that reads 1.x reads 2.x too.

Not run against a real InfluxDB 2.x here (none installs from Debian or PyPI); tests/test_retention_v2.py checks
the Flux text and the API calls' parameters.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from commhub.config import InfluxConfig, RetentionConfig

log = logging.getLogger(__name__)

RAW_RP = "raw"
HOURLY_RP = "hourly"
EVENTS_RP = "events"
HOURLY_TASK = "commhub_hourly"
EVENTS_TASK = "commhub_events"
TASK_EVERY = "1h"
# Past the hour's end, so points that arrive a little late are in the hour that the run aggregates.
TASK_OFFSET = "5m"


@dataclass(frozen=True)
class Buckets:
    """The three bucket names, derived from the raw bucket."""

    raw: str
    hourly: str
    events: str

    @classmethod
    def of(cls, database: str) -> Buckets:
        """Buckets for the raw bucket `database`."""
        return cls(raw=database, hourly=f"{database}_hourly", events=f"{database}_events")


def _flux_string(s: str) -> str:
    """A Flux string literal (Flux escapes backslash, double quote and `${` inside strings)."""
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"').replace("${", "\\${") + '"'


def _window(lookback_h: float) -> str:
    """Flux lines setting `start` and `stop` to whole hours: the last lookback_h hours before the run's hour."""
    hours = max(1, round(lookback_h))
    return ("stop = date.truncate(t: now(), unit: 1h)\n"
            f"start = date.sub(d: {hours}h, from: stop)\n")


def _task_option(name: str) -> str:
    return f"option task = {{name: {_flux_string(name)}, every: {TASK_EVERY}, offset: {TASK_OFFSET}}}\n"


def hourly_flux(buckets: Buckets, org: str, lookback_h: float) -> str:
    """The downsampling task: hourly means of every numeric field, named mean_<field> as 1.x's mean(*) names them."""
    return (
        'import "date"\nimport "types"\n\n'
        + _task_option(HOURLY_TASK) + "\n"
        + _window(lookback_h) + "\n"
        + f"from(bucket: {_flux_string(buckets.raw)})\n"
        "    |> range(start: start, stop: stop)\n"
        # Strings and booleans have no mean; 1.x's mean(*) skips them the same way.
        "    |> filter(fn: (r) => types.isNumeric(v: r._value))\n"
        "    |> toFloat()\n"
        # The hour's start, as a 1.x continuous query stamps it.
        '    |> aggregateWindow(every: 1h, fn: mean, createEmpty: false, timeSrc: "_start")\n'
        '    |> map(fn: (r) => ({r with _field: "mean_" + r._field}))\n'
        f"    |> to(bucket: {_flux_string(buckets.hourly)}, org: {_flux_string(org)})\n")


def events_flux(buckets: Buckets, org: str, lookback_h: float, measurements: tuple[str, ...]) -> str:
    """The events task: every point of the event measurements, copied whole into the events bucket."""
    names = "|".join(measurements)
    return (
        'import "date"\n\n'
        + _task_option(EVENTS_TASK) + "\n"
        + _window(lookback_h) + "\n"
        + f"from(bucket: {_flux_string(buckets.raw)})\n"
        "    |> range(start: start, stop: stop)\n"
        f"    |> filter(fn: (r) => r._measurement =~ /^({names})$/)\n"
        f"    |> to(bucket: {_flux_string(buckets.events)}, org: {_flux_string(org)})\n")


class RetentionV2Error(RuntimeError):
    """InfluxDB 2.x refused a retention call or lacks what it needs."""


class InfluxV2Retention:
    """Sets up retention on one InfluxDB 2.x organisation, idempotently, through an influxdb-client client."""

    def __init__(self, influx: InfluxConfig, cfg: RetentionConfig, measurements: tuple[str, ...],
                 client: Any = None) -> None:
        self.influx = influx
        self.cfg = cfg
        self.measurements = measurements
        self.buckets = Buckets.of(influx.database)
        self._client = client
        self._own_client = client is None

    def _api(self) -> Any:
        if self._client is None:
            from influxdb_client.client.influxdb_client import InfluxDBClient
            self._client = InfluxDBClient(url=self.influx.url, token=self.influx.token, org=self.influx.org,
                                          timeout=int(max(self.influx.timeout_s, 60.0) * 1000))
        return self._client

    def close(self) -> None:
        """Close the client when this object made it."""
        if self._own_client and self._client is not None:
            self._client.close()
            self._client = None

    def org_id(self) -> str:
        """The configured organisation's id."""
        orgs = self._api().organizations_api().find_organizations(org=self.influx.org)
        if not orgs:
            raise RetentionV2Error(f"InfluxDB has no organisation {self.influx.org!r} (influx.org)")
        return str(orgs[0].id)

    def apply(self) -> None:
        """Create or update the buckets, the DBRP mappings and the two tasks; safe to run at every start."""
        org_id = self.org_id()
        ids = {}
        for rp, name, days in ((RAW_RP, self.buckets.raw, self.cfg.raw_days),
                               (HOURLY_RP, self.buckets.hourly, self.cfg.aggregate_days),
                               (EVENTS_RP, self.buckets.events, self.cfg.events_days)):
            ids[rp] = self._bucket(org_id, name, days)
        for rp, bucket_id in ids.items():
            self._dbrp(org_id, rp, bucket_id, default=rp == RAW_RP)
        org = self.influx.org
        self._task(org_id, HOURLY_TASK, hourly_flux(self.buckets, org, self.cfg.lookback_h))
        self._task(org_id, EVENTS_TASK, events_flux(self.buckets, org, self.cfg.lookback_h, self.measurements))
        log.info("retention on InfluxDB 2.x org %s: buckets %s %.0fd, %s %.0fd, %s %.0fd; tasks %s, %s", org,
                 self.buckets.raw, self.cfg.raw_days, self.buckets.hourly, self.cfg.aggregate_days,
                 self.buckets.events, self.cfg.events_days, HOURLY_TASK, EVENTS_TASK)

    def _bucket(self, org_id: str, name: str, days: float) -> str:
        from influxdb_client.domain.bucket_retention_rules import BucketRetentionRules

        # 2.x's shortest retention is one hour.
        seconds = max(3600, round(days * 86400))
        rules = [BucketRetentionRules(type="expire", every_seconds=seconds)]
        api = self._api().buckets_api()
        found = api.find_buckets(name=name, org_id=org_id).buckets or []
        if not found:
            return str(api.create_bucket(bucket_name=name, retention_rules=rules, org=org_id).id)
        bucket = found[0]
        current = [r.every_seconds for r in (bucket.retention_rules or []) if r.type == "expire"]
        if current != [seconds]:
            bucket.retention_rules = rules
            api.update_bucket(bucket)
            log.info("retention: bucket %s now keeps %d s (was %s)", name, seconds, current or "forever")
        return str(bucket.id)

    def _dbrp(self, org_id: str, rp: str, bucket_id: str, default: bool) -> None:
        from influxdb_client.domain.dbrp_create import DBRPCreate
        from influxdb_client.service.dbr_ps_service import DBRPsService

        service = DBRPsService(self._api().api_client)
        db = self.influx.database
        have = [m for m in service.get_dbr_ps(org_id=org_id, db=db, rp=rp).content or [] if not m.virtual]
        if any(m.bucket_id == bucket_id for m in have):
            return
        if have:
            # Someone mapped it to another bucket: theirs stands, and InfluxQL on it reads that bucket.
            log.warning("retention: InfluxQL %s/%s is mapped to bucket id %s, not %s; left as it is", db, rp,
                        have[0].bucket_id, bucket_id)
            return
        service.post_dbrp(DBRPCreate(org_id=org_id, bucket_id=bucket_id, database=db, retention_policy=rp,
                                     default=default))

    def _task(self, org_id: str, name: str, flux: str) -> None:
        from influxdb_client.domain.task_create_request import TaskCreateRequest
        from influxdb_client.domain.task_update_request import TaskUpdateRequest

        api = self._api().tasks_api()
        found = api.find_tasks(name=name, org_id=org_id) or []
        if not found:
            api.create_task(task_create_request=TaskCreateRequest(org_id=org_id, flux=flux, status="active",
                                                                  description="commhub retention"))
            return
        task = found[0]
        if task.flux != flux or task.status != "active":
            api.update_task_request(task.id, TaskUpdateRequest(flux=flux, status="active"))
