"""InfluxDB 2.x retention, the pure parts: the Flux of the two tasks and the API calls' parameters.

No InfluxDB 2.x server installs here (Debian ships 1.6.7, PyPI and npm have no influxd 2.x), so these are unit
tests against a recording fake of influxdb-client's APIs; the 2.x path has not run against a real server.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from commhub.config import InfluxConfig, RetentionConfig
from hub.store.retention import EVENT_MEASUREMENTS, RetentionKeeper
from hub.store.retention_v2 import (
    EVENTS_TASK,
    HOURLY_TASK,
    Buckets,
    InfluxV2Retention,
    RetentionV2Error,
    events_flux,
    hourly_flux,
)

INFLUX = InfluxConfig(url="http://influx.invalid:8086", transport="v2", database="commhub", org="acme", token="t")
CFG = RetentionConfig(enabled=True, raw_days=30, aggregate_days=730, events_days=183, lookback_h=48)


@dataclass
class FakeInflux:
    """influxdb-client's organisations, buckets, tasks and DBRP calls, recorded; state kept like a server's."""

    orgs: list[str] = field(default_factory=lambda: ["acme"])
    buckets: dict[str, Any] = field(default_factory=dict)
    tasks: dict[str, Any] = field(default_factory=dict)
    dbrps: list[Any] = field(default_factory=list)
    calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    api_client: Any = None

    def __post_init__(self) -> None:
        self.api_client = self

    def organizations_api(self) -> Any:
        def find_organizations(**kw: Any) -> list[Any]:
            self.calls.append(("find_organizations", kw))
            return [SimpleNamespace(id=f"id-{o}", name=o) for o in self.orgs if o == kw.get("org")]
        return SimpleNamespace(find_organizations=find_organizations)

    def buckets_api(self) -> Any:
        def find_buckets(**kw: Any) -> Any:
            self.calls.append(("find_buckets", kw))
            b = self.buckets.get(kw["name"])
            return SimpleNamespace(buckets=[b] if b and b.org_id == kw["org_id"] else [])

        def create_bucket(**kw: Any) -> Any:
            self.calls.append(("create_bucket", kw))
            b = SimpleNamespace(id=f"b-{kw['bucket_name']}", name=kw["bucket_name"], org_id=kw["org"],
                                retention_rules=kw["retention_rules"])
            self.buckets[b.name] = b
            return b

        def update_bucket(bucket: Any) -> Any:
            self.calls.append(("update_bucket", {"name": bucket.name, "rules": bucket.retention_rules}))
            self.buckets[bucket.name] = bucket
            return bucket
        return SimpleNamespace(find_buckets=find_buckets, create_bucket=create_bucket, update_bucket=update_bucket)

    def tasks_api(self) -> Any:
        def find_tasks(**kw: Any) -> list[Any]:
            self.calls.append(("find_tasks", kw))
            t = self.tasks.get(kw["name"])
            return [t] if t and t.org_id == kw["org_id"] else []

        def create_task(task_create_request: Any) -> Any:
            r = task_create_request
            self.calls.append(("create_task", {"org_id": r.org_id, "status": r.status}))
            name = re.search(r'option task = \{name: "([^"]+)"', r.flux)
            assert name, "a task's Flux must name it in `option task`"
            t = SimpleNamespace(id=f"t-{name.group(1)}", name=name.group(1), org_id=r.org_id, flux=r.flux,
                                status=r.status)
            self.tasks[t.name] = t
            return t

        def update_task_request(task_id: str, req: Any) -> Any:
            self.calls.append(("update_task", {"id": task_id, "status": req.status}))
            t = next(t for t in self.tasks.values() if t.id == task_id)
            t.flux, t.status = req.flux, req.status
            return t
        return SimpleNamespace(find_tasks=find_tasks, create_task=create_task,
                               update_task_request=update_task_request)

    # DBRPsService(api_client) goes through these three of the client's ApiClient: answer them here instead.
    def select_header_accept(self, accepts: list[str]) -> str:
        return accepts[0]

    def select_header_content_type(self, types: list[str]) -> str:
        return types[0]

    def call_api(self, path: str, method: str, *args: Any, **kw: Any) -> Any:
        query = dict(args[1]) if len(args) > 1 else {}
        body: Any = kw["body"]
        self.calls.append((f"{method} {path}", {"query": query, "body": body}))
        if method == "GET":
            return SimpleNamespace(content=[m for m in self.dbrps
                                            if m.database == query.get("db") and m.retention_policy == query.get("rp")])
        m = SimpleNamespace(bucket_id=body.bucket_id, database=body.database, retention_policy=body.retention_policy,
                            default=body.default, org_id=body.org_id, virtual=False)
        self.dbrps.append(m)
        return m

    def names(self) -> list[str]:
        return [c[0] for c in self.calls]


def _retention(fake: FakeInflux, cfg: RetentionConfig = CFG) -> InfluxV2Retention:
    return InfluxV2Retention(INFLUX, cfg, EVENT_MEASUREMENTS, client=fake)


def test_hourly_flux_aggregates_numeric_fields_by_hour_into_the_hourly_bucket() -> None:
    flux = hourly_flux(Buckets.of("commhub"), "acme", lookback_h=48)
    assert 'import "date"' in flux and 'import "types"' in flux
    assert 'option task = {name: "commhub_hourly", every: 1h, offset: 5m}' in flux
    # Whole hours only: a run never writes a partial hour's mean.
    assert "stop = date.truncate(t: now(), unit: 1h)" in flux and "start = date.sub(d: 48h, from: stop)" in flux
    pipeline = [line.strip() for line in flux.splitlines() if line.strip().startswith(("from(", "|>"))]
    assert pipeline == [
        'from(bucket: "commhub")',
        "|> range(start: start, stop: stop)",
        "|> filter(fn: (r) => types.isNumeric(v: r._value))",
        "|> toFloat()",
        '|> aggregateWindow(every: 1h, fn: mean, createEmpty: false, timeSrc: "_start")',
        '|> map(fn: (r) => ({r with _field: "mean_" + r._field}))',
        '|> to(bucket: "commhub_hourly", org: "acme")',
    ]


def test_events_flux_copies_exactly_the_event_measurements() -> None:
    flux = events_flux(Buckets.of("commhub"), "acme", 48, ("access_granted", "door_forced"))
    assert 'option task = {name: "commhub_events", every: 1h, offset: 5m}' in flux
    assert "|> filter(fn: (r) => r._measurement =~ /^(access_granted|door_forced)$/)" in flux
    assert '|> to(bucket: "commhub_events", org: "acme")' in flux
    assert "mean" not in flux, "events are copied whole, never aggregated"
    assert EVENT_MEASUREMENTS and all(re.fullmatch(r"[a-z0-9_]+", m) for m in EVENT_MEASUREMENTS), \
        "measurement names go into a Flux regex unescaped"


def test_flux_strings_are_escaped() -> None:
    flux = hourly_flux(Buckets.of('odd"name\\${x}'), "a", 1)
    assert 'from(bucket: "odd\\"name\\\\\\${x}")' in flux


def test_first_apply_creates_buckets_mappings_and_tasks() -> None:
    fake = FakeInflux()
    _retention(fake).apply()
    days = {name: b.retention_rules[0].every_seconds / 86400 for name, b in fake.buckets.items()}
    assert days == {"commhub": 30, "commhub_hourly": 730, "commhub_events": 183}
    assert all(b.org_id == "id-acme" and b.retention_rules[0].type == "expire" for b in fake.buckets.values())
    mapped = {(m.database, m.retention_policy): (m.bucket_id, m.default) for m in fake.dbrps}
    assert mapped == {("commhub", "raw"): ("b-commhub", True), ("commhub", "hourly"): ("b-commhub_hourly", False),
                      ("commhub", "events"): ("b-commhub_events", False)}
    assert set(fake.tasks) == {HOURLY_TASK, EVENTS_TASK}
    assert all(t.status == "active" and t.org_id == "id-acme" for t in fake.tasks.values())
    assert fake.tasks[HOURLY_TASK].flux == hourly_flux(Buckets.of("commhub"), "acme", 48)


def test_apply_again_changes_nothing_and_a_changed_config_updates_in_place() -> None:
    fake = FakeInflux()
    _retention(fake).apply()
    fake.calls.clear()
    _retention(fake).apply()
    assert not {"create_bucket", "update_bucket", "create_task", "update_task", "POST /api/v2/dbrps"} & set(
        fake.names()), "a second start must not create or change anything"
    fake.calls.clear()
    _retention(fake, CFG.model_copy(update={"raw_days": 7, "lookback_h": 24})).apply()
    updated = [c for c in fake.calls if c[0] in ("update_bucket", "create_bucket", "update_task", "create_task")]
    assert [c[0] for c in updated] == ["update_bucket", "update_task", "update_task"]
    assert fake.buckets["commhub"].retention_rules[0].every_seconds == 7 * 86400
    assert "date.sub(d: 24h" in fake.tasks[HOURLY_TASK].flux
    assert len(fake.buckets) == 3 and len(fake.tasks) == 2 and len(fake.dbrps) == 3


def test_an_inactive_task_is_switched_back_on_and_short_retention_is_one_hour() -> None:
    fake = FakeInflux()
    _retention(fake, CFG.model_copy(update={"raw_days": 1 / 48})).apply()
    assert fake.buckets["commhub"].retention_rules[0].every_seconds == 3600, "2.x refuses less than an hour"
    fake.tasks[EVENTS_TASK].status = "inactive"
    _retention(fake, CFG.model_copy(update={"raw_days": 1 / 48})).apply()
    assert fake.tasks[EVENTS_TASK].status == "active"


def test_a_bucket_or_task_of_another_organisation_is_not_touched() -> None:
    fake = FakeInflux(orgs=["acme", "other"])
    fake.buckets["commhub"] = SimpleNamespace(id="theirs", name="commhub", org_id="id-other",
                                              retention_rules=[SimpleNamespace(type="expire", every_seconds=60)])
    fake.calls.clear()
    _retention(fake).apply()
    finds = [kw for name, kw in fake.calls if name in ("find_buckets", "find_tasks")]
    assert finds and all(kw["org_id"] == "id-acme" for kw in finds)


def test_a_missing_organisation_is_a_clear_error() -> None:
    with pytest.raises(RetentionV2Error, match="no organisation 'acme'"):
        _retention(FakeInflux(orgs=[])).apply()


@pytest.mark.parametrize(("version", "transport", "kind"), [
    ("1.6.7", "auto", "v1"), ("1.8.10", "v2", "v1"), ("v2.7.11", "auto", "v2"), ("2.0.0", "v1", "v2"),
    (None, "v2", "v2"), ("3.1.0", "v2", ""), (None, "auto", "")])
def test_the_keeper_chooses_by_the_servers_version(monkeypatch: pytest.MonkeyPatch, version: str | None,
                                                   transport: str, kind: str) -> None:
    import hub.store.retention as retention
    monkeypatch.setattr(retention, "detect", lambda url, timeout: version)
    keeper = RetentionKeeper(INFLUX.model_copy(update={"transport": transport}), CFG, Path("/nonexistent"))
    assert keeper._influx_kind() == kind


def test_the_keeper_retries_a_failing_2x_setup_and_purges_meanwhile(monkeypatch: pytest.MonkeyPatch,
                                                                    tmp_path: Path) -> None:
    import os
    import time

    from influxdb_client.rest import ApiException

    import hub.store.retention as retention

    fake = FakeInflux()
    failures = [ApiException(status=503, reason="starting")]

    class Flaky(InfluxV2Retention):
        def __init__(self, influx: InfluxConfig, cfg: RetentionConfig, measurements: tuple[str, ...]) -> None:
            super().__init__(influx, cfg, measurements, client=fake)

        def apply(self) -> None:
            if failures:
                raise failures.pop()
            super().apply()

    monkeypatch.setattr(retention, "detect", lambda url, timeout: "v2.7.11")
    monkeypatch.setattr(retention, "InfluxV2Retention", Flaky)
    old = tmp_path / "snaps" / "cam" / "old.jpg"
    old.parent.mkdir(parents=True)
    old.write_bytes(b"\xff\xd8")
    os.utime(old, (time.time() - 400 * 86400,) * 2)
    keeper = RetentionKeeper(INFLUX, CFG, tmp_path / "snaps")
    keeper.start()
    try:
        assert keeper.applied.wait(60), "the keeper gave up after InfluxDB 2.x answered 503 once"
        deadline = time.monotonic() + 60
        while old.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        keeper.stop()
    assert not failures and set(fake.tasks) == {HOURLY_TASK, EVENTS_TASK}
    assert not old.exists(), "snapshots are purged on 2.x too"
