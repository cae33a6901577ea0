"""`commhub bench scale`: 1, 2 and 3 hub workers on one MQTT shared subscription, same backlog, same run.

The backlog is the realistic feed of `bench ingest` (the sample community's mix) with the default rule pack on.
Workers share alert state through SQL, so by default the bench starts a PostgreSQL of its own (a temporary
cluster on a free loopback port, as the tests do) and gives each worker count a fresh database; `--db-url`
measures an existing server instead (the runs then share its tables), `--sqlite` a SQLite file per run.

The drain is timed from the first worker's MQTT connection (the workers' start-up is not the drain's) to the
last message stored and ruled. Per worker count it prints where the machine's CPU went over the drain (every
process from /proc: each worker, mosquitto, influxd, PostgreSQL with all its backends, the bench; the publishers,
which run before the drain, apart; the machine's busy and idle cores from /proc/stat and the other work on it),
the CPU per message of each part, batch sizes per worker, transactions and conflicts per 1,000 messages, the
ceiling the idle cores allow, the stored rate, the CPU per message summed over every worker process (from /proc,
start-up excluded; also net of the workers' idle CPU over the drain, measured after it), and the contention
the database saw during the drain: transactions committed and rolled back and deadlocks (`pg_stat_database`),
backend-seconds spent waiting for a lock (`pg_stat_activity` sampled every 0.1 s), lock waits longer than
`deadlock_timeout` (`log_lock_waits`), and the hub's own counters (batch transactions, batches whose stale
keys were fed again, retries by cause).

`--communities` measures a district's layout instead: N workers are N communities with one worker each (the
sample community under its own site id, with its own alert database and InfluxDB database, each fed the whole
backlog), on the one broker, PostgreSQL and influxd. Each hub subscribes to its own site's topics only, so the
communities share the machine and the servers but no queue, no rule state and no hold.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import feed as feeds
from bench import hubrun, machine
from bench.hubrun import HubProc, cpu_seconds, measure_raw
from bench.ingest import FILTER, Queue, measure_hub
from commhub.config import load
from commhub.services import Influxd, Mosquitto, Postgres

log = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[1]
_SAMPLE_S = 0.1
_STATS = ("xact_commit", "xact_rollback", "deadlocks")
_RETRIES = ("conflict", "deadlock", "serialization", "other")
_STALE = ("absence", "correlation", "other")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options."""
    parser.add_argument("--messages", type=int, default=100_000, help="messages per measurement")
    parser.add_argument("--db-url", default="", help="an existing alert store URL shared by the workers (PostgreSQL)")
    parser.add_argument("--postgres", action="store_true",
                        help="start a temporary PostgreSQL of our own (the default unless --db-url or --sqlite)")
    parser.add_argument("--sqlite", action="store_true", help="a SQLite file per run instead of PostgreSQL")
    parser.add_argument("--rules-off", action="store_true", help="measure without the alerting chain")
    parser.add_argument("--workers", default="1,2,3", help="worker counts to measure, comma-separated")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory (hub and PostgreSQL logs)")
    parser.add_argument("--split", action="store_true",
                        help="also feed the backlog in-process to 1 sink and to 2 sinks taking turns (no concurrency)")
    parser.add_argument("--in-order", action="store_true",
                        help="queue the backlog in device-time order from one client (a hub outage's queue), not "
                             "per topic by parallel mosquitto_pub")
    parser.add_argument("--communities", action="store_true",
                        help="a district's layout: each worker count is that many communities with one worker each "
                             "(the sample community under its own site id, alert database and InfluxDB database, "
                             "each fed the whole backlog), on one broker, PostgreSQL and influxd")
    parser.add_argument("--idle-s", type=float, default=20.0,
                        help="seconds to measure idle workers (no traffic, no /metrics polls) a worker count; 0: skip")


class _PgWatch:
    """Contention figures of the drain's databases (one, or one a community) while the workers drain: stats
    deltas and sampled lock waits."""

    def __init__(self, urls: list[str], log: Path | None) -> None:
        self.dsns = [url.replace("postgresql+psycopg://", "postgresql://") for url in urls]
        self.dsn = self.dsns[0]
        self.databases = [dsn.rsplit("/", 1)[1].split("?", 1)[0] for dsn in self.dsns]
        self.log = log
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._before: dict[str, int] = {}
        self._log_at = 0
        self.samples = 0
        self.waiting = 0  # (sample, backend) pairs waiting for a lock
        self.events: dict[str, int] = {}  # wait events of hub backends that were waiting, by name
        self.summary = ""
        self.top_rules = ""

    def _stats(self, conn: Any) -> dict[str, int]:
        row = conn.execute(f"SELECT {', '.join(f'sum({k})' for k in _STATS)} FROM pg_stat_database "
                           "WHERE datname = ANY(%s)", (self.databases,)).fetchone()
        return dict(zip(_STATS, (int(v) for v in row), strict=True))

    def start(self) -> None:
        """Take the 'before' figures and start sampling."""
        import psycopg
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            conn.execute("SELECT pg_stat_clear_snapshot()")
            self._before = self._stats(conn)
        self._log_at = self.log.stat().st_size if self.log is not None and self.log.exists() else 0
        self._thread = threading.Thread(target=self._sample, name="pg-watch", daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        import psycopg
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            while not self._stop.wait(_SAMPLE_S):
                rows = conn.execute("SELECT wait_event_type, wait_event FROM pg_stat_activity WHERE datname = ANY(%s) "
                                    "AND pid <> pg_backend_pid() AND state <> 'idle'", (self.databases,)).fetchall()
                self.samples += 1
                for kind, name in rows:
                    if kind == "Lock":
                        self.waiting += 1
                        self.events[str(name)] = self.events.get(str(name), 0) + 1

    def alerts(self) -> dict[str, float]:
        """What the rules raised: alerts, their transitions, and fires counted (the same backlog should give the
        same numbers whatever the worker count; more means rules that saw a device's events out of order).

        `alerts_silent_at_feed_end`: devices raised offline and still silent as the count is taken. The feed
        ends and its devices fall silent with it (a camera is offline 30 s after its last message), so these
        are the world the feed leaves, not the rules' mistakes; an offline alert the rules cleared again is not
        counted here (it fired while the device was alive).
        """
        import psycopg
        totals = [0, 0, 0, 0]  # alerts, fires, transitions, silent at the feed's end
        by_rule: dict[str, int] = {}
        for dsn in self.dsns:  # one alert database a community
            with psycopg.connect(dsn, autocommit=True) as conn:
                row = conn.execute(
                    "SELECT count(*), coalesce(sum(count), 0), (SELECT count(*) FROM alert_transitions), "
                    "count(*) FILTER (WHERE rule = 'device_offline' AND condition_active) FROM alerts"
                ).fetchall()[0]
                for rule, k in conn.execute("SELECT rule, count(*) FROM alerts GROUP BY rule").fetchall():
                    by_rule[rule] = by_rule.get(rule, 0) + int(k)
            totals = [a + int(b) for a, b in zip(totals, row, strict=True)]
        alerts, fires, moves, silent = totals
        top = sorted(by_rule.items(), key=lambda kv: -kv[1])[:5]
        self.top_rules = ", ".join(f"{r} {n}" for r, n in top)
        return {"alerts": alerts, "alert_fires": fires, "alert_transitions": moves,
                "alerts_silent_at_feed_end": silent, "alerts_not_explained_by_feed_end": alerts - silent}

    def stop(self) -> dict[str, float]:
        """Stop sampling; the figures of the interval."""
        import psycopg
        self._stop.set()
        if self._thread is not None:
            self._thread.join(30)
        time.sleep(0.6)  # the statistics collector reports with a delay of up to 500 ms
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            after = self._stats(conn)
        out: dict[str, float] = {f"pg_{k}": after[k] - self._before[k] for k in _STATS}
        out["pg_lock_wait_backend_s"] = self.waiting * _SAMPLE_S
        ranked = sorted(self.events.items(), key=lambda kv: -kv[1])
        self.summary = ", ".join(f"{k} {v * _SAMPLE_S:.1f}s" for k, v in ranked)
        if self.log is not None and self.log.exists():
            with open(self.log, "rb") as f:
                f.seek(self._log_at)
                text = f.read().decode(errors="replace")
            out["pg_lock_waits_logged"] = text.count("still waiting for")
        return out


def _idle_cpu(hubs: list[HubProc], settle_s: float = 2.0, span_s: float = 10.0) -> float:
    """CPU seconds per second the idle workers use together (timers, and our /metrics polls as during a drain).

    On a loaded machine a drain takes long, and this cost, which grows with time rather than with messages,
    would be charged to the messages: subtracting it shows the work per message alone.
    """
    def poll(seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            for h in hubs:  # the drain's wait polls two metrics of every worker every 0.1 s
                h.metric("commhub_messages_in_total")
                h.metric("commhub_points_written_total")
            time.sleep(0.1)
    poll(settle_s)  # the last write-back and timers after the drain
    cpu0, t0 = sum(cpu_seconds(h.pid) for h in hubs), time.monotonic()
    poll(span_s)
    return (sum(cpu_seconds(h.pid) for h in hubs) - cpu0) / (time.monotonic() - t0)


def _fresh_idle(broker: Mosquitto, influx: Influxd, workdir: Path, workers: int, alerts: dict[str, Any],
                span_s: float, settle_s: float = 10.0) -> tuple[float, float]:
    """CPU ms a second and timer passes to the database a second of `workers` idle hubs (rules on, no traffic).

    Nothing polls them while measured (the drain's idle figure includes the bench's /metrics polls and the
    timers the drain left due, such as escalations of the alerts it opened).
    """
    cfg = hubrun.hub_config(broker, influx, workdir, f"idle{workers}", True, alerts)
    hubs = [HubProc(cfg, f"bench-idle{workers}-{i}", workdir / f"hub-idle{workers}-{i}.log") for i in range(workers)]
    for h in hubs:
        h.start()
    try:
        for h in hubs:
            h.wait_connected()
        time.sleep(settle_s)  # start-up: migrations, absence seeds, the first timer passes
        runs0 = sum(h.metric("commhub_alert_timer_runs_total") for h in hubs)
        cpu0, t0 = sum(cpu_seconds(h.pid) for h in hubs), time.monotonic()
        time.sleep(span_s)
        cpu, elapsed = sum(cpu_seconds(h.pid) for h in hubs) - cpu0, time.monotonic() - t0
        runs = sum(h.metric("commhub_alert_timer_runs_total") for h in hubs) - runs0
    finally:
        for h in hubs:
            h.stop()
            hubrun.forget_session(broker, h.worker_id)
    return cpu / elapsed * 1000 / workers, runs / elapsed / workers


def _split(msgs: Sequence[tuple[str, bytes]], url: str, workdir: Path, sinks: int, batch: int = 250) -> float:
    """Rules CPU µs per message (thread time of the sinks' batches) when `sinks` workers take turns, in-process.

    The shared subscription's split without its concurrency: each sink gets every `sinks`-th message, a batch
    at a time in turn, on one database; each sink's timers run after its batch. What the split alone costs
    (each worker learns every device, writes back its own signs of life), apart from contention and the
    machine's load.
    """
    from hub.alerting import AlertingSink
    from hub.worker import Worker
    base = load(REPO / "configs" / "commhub.yaml")
    workers, made = [], []
    for i in range(sinks):
        hub = base.hub.model_copy(update={"spool": base.hub.spool.model_copy(update={"dir": workdir / f"split{i}"}),
                                          "metrics": base.hub.metrics.model_copy(update={"port": 0}),
                                          "worker_id": f"split{sinks}-{i}"})
        cfg = base.model_copy(update={"hub": hub, "alerts": base.alerts.model_copy(
            update={"enabled": True, "db_url": url})})
        sink = AlertingSink(cfg, mqtt=False)
        sink.open()  # migrations and seeds, not measured
        worker = Worker(cfg, [sink])
        worker.spool.open()
        workers.append(worker)
        made.append(sink)
    parts = [list(msgs[i::sinks]) for i in range(sinks)]
    try:
        for j in range(0, max(len(p) for p in parts), batch):
            for worker, sink, part in zip(workers, made, parts, strict=True):
                if part[j:j + batch]:
                    if not worker.process_batch(part[j:j + batch], time.time()):
                        raise RuntimeError("a batch was held (spool or sink failing)")
                    sink.tick()
        return sum(s.handle_cpu_s for s in made) / len(msgs) * 1e6
    finally:
        for s in made:
            s.db.dispose()


def _measure(broker: Mosquitto, influx: Influxd, workdir: Path, queue: Queue, workers: int, rules: bool,
             alerts: list[dict[str, Any]], watch: _PgWatch | None, waits: dict[int, str],
             services: dict[str, int]) -> dict[str, float]:
    """One drain by `workers` hubs: on one shared subscription (one alert store), or, with one alert store for
    each, one hub per community (--communities)."""
    start: list[machine.Snapshot] = []
    publishers: list[float] = []

    def queued() -> int:
        before = machine.children_cpu()
        n = queue()
        # The publishers (mosquitto_pub, our children) have exited: their CPU is in our children's rusage. They
        # run before the drain (a backlog), so they are accounted apart from it.
        publishers.append(machine.children_cpu() - before)
        return n

    def _trees(hubs: list[HubProc]) -> dict[str, int]:
        return {**services, **{f"worker{i}": h.pid for i, h in enumerate(hubs)}}

    def started(hubs: list[HubProc]) -> None:
        # The drain starts when the first worker is connected (its start-up is not the drain's).
        start.append(machine.Snapshot.take(_trees(hubs)))
        if watch is not None:
            watch.start()

    def after(hubs: list[HubProc]) -> dict[str, float]:
        # Every process's CPU over the drain, read first thing as it ends.
        end = machine.Snapshot.take(_trees(hubs))
        out: dict[str, float] = {f"machine_{k}": v for k, v in machine.account(start[0], end).items()}
        out["machine_cpu_s_publishers_before_drain"] = publishers[0]
        for i, h in enumerate(hubs):
            out[f"worker{i}_msgs"] = h.metric("commhub_messages_in_total")
            out[f"worker{i}_batches"] = h.metric("commhub_alert_batches_handled_total")
        # The rules' own CPU (thread time of the sink's batches and timer passes), read as the drain ends.
        out["rules_handle_cpu_s"] = sum(h.metric("commhub_alert_handle_cpu_seconds_total") for h in hubs)
        out["rules_timer_cpu_s"] = sum(h.metric("commhub_alert_timer_cpu_seconds_total") for h in hubs)
        if watch is not None:
            out.update(watch.stop())
            waits[workers] = watch.summary
            out.update(watch.alerts())
            waits[-workers] = watch.top_rules
        runs0 = sum(h.metric("commhub_alert_timer_runs_total") for h in hubs)
        t0 = time.monotonic()
        out["idle_cpu_s_per_s"] = _idle_cpu(hubs)
        out["idle_timer_runs_per_s"] = (sum(h.metric("commhub_alert_timer_runs_total") for h in hubs) - runs0) / (
            time.monotonic() - t0)
        per = [h.metric("commhub_messages_in_total") for h in hubs]
        out["min_worker_share"] = min(per) / max(1.0, sum(per))
        out["hub_batch_tx"] = sum(h.metric("commhub_alert_tx_batches_total") for h in hubs)
        out["hub_batches_redone"] = sum(h.metric("commhub_alert_tx_redone_total") for h in hubs)
        for cause in _RETRIES:
            out[f"hub_retries_{cause}"] = sum(h.metric(f"commhub_alert_tx_retries_{cause}_total") for h in hubs)
        for kind in _STALE:
            out[f"hub_stale_{kind}"] = sum(h.metric(f"commhub_alert_tx_stale_{kind}_total") for h in hubs)
        return out

    communities = len(alerts)
    return measure_hub(broker, influx, workdir, queued, workers=workers // communities, db=f"w{workers}",
                       rules=rules, after=after, alerts=alerts, started=started, communities=communities)


def run(args: argparse.Namespace) -> int:
    """Measure and print."""
    if args.communities and args.db_url and not args.sqlite:
        raise SystemExit("--communities needs an alert database a community: our own PostgreSQL or --sqlite")
    cfg = load(REPO / "configs" / "commhub.yaml")
    msgs = feeds.simulate(cfg, args.messages).messages
    n = len(msgs)
    workdir = Path(tempfile.mkdtemp(prefix="commhub-bench-scale-"))
    broker, influx = Mosquitto(workdir / "mosquitto"), Influxd(workdir / "influxd")
    own_pg = not args.sqlite and (args.postgres or not args.db_url)
    # log_lock_waits logs every lock wait longer than deadlock_timeout (1 s, PostgreSQL's default).
    pg = Postgres(workdir / "postgres", extra=("log_lock_waits=on",)) if own_pg else None
    broker.start()
    influx.start()
    if pg is not None:
        pg.start()

    def queue(tag: str, communities: int = 1) -> Queue:
        def go() -> int:
            backlog = _ending_now(msgs)
            feeds.queue_backlog(broker, [(_resite(t, i), p) for i in range(communities) for t, p in backlog],
                                workdir, tag, args.in_order)
            return n * communities
        return go

    rules = not args.rules_off
    counts = [int(w) for w in args.workers.split(",") if w.strip()]
    results: dict[int, dict[str, float]] = {}
    waits: dict[int, str] = {}
    store = "sqlite" if args.sqlite else "postgresql"
    split: dict[int, float] = {}
    try:
        raw = measure_raw(broker, FILTER, queue("raw"))
        if args.split and pg is not None and rules and not args.communities:
            import psycopg
            for w in (1, 2):
                with psycopg.connect(f"host=127.0.0.1 port={pg.port} user=postgres dbname=postgres",
                                     autocommit=True) as conn:
                    conn.execute(f"CREATE DATABASE scale_split_w{w}")
                split[w] = _split(_ending_now(msgs), pg.url_for(f"scale_split_w{w}"), workdir, w)
        for w in counts:
            groups = w if args.communities else 1  # alert stores: one a community
            urls: list[str] = []
            watch = None
            if pg is not None:
                import psycopg
                names = [f"scale_w{w}" if groups == 1 else f"scale_w{w}_c{i}" for i in range(groups)]
                with psycopg.connect(f"host=127.0.0.1 port={pg.port} user=postgres dbname=postgres",
                                     autocommit=True) as conn:
                    for name in names:
                        conn.execute(f"CREATE DATABASE {name}")
                urls = [pg.url_for(name) for name in names]
                watch = _PgWatch(urls, pg.log_path)
            elif args.db_url and not args.sqlite:
                urls = [args.db_url]
                watch = _PgWatch(urls, None) if args.db_url.startswith("postgresql") else None
            alerts = [{"db_url": url} for url in urls] if urls else [{}] * groups
            services = {"mosquitto": _pid(broker.proc), "influxd": _pid(influx.proc)}
            if pg is not None:
                services["postgres"] = _pid(pg.proc)
            results[w] = _measure(broker, influx, workdir, queue(f"w{w}", groups), w, rules, alerts,
                                  watch if rules else None, waits, services)
            results[w]["expected_points"] = n * groups
            if pg is not None and rules and args.idle_s > 0 and not args.communities:
                import psycopg
                with psycopg.connect(f"host=127.0.0.1 port={pg.port} user=postgres dbname=postgres",
                                     autocommit=True) as conn:
                    conn.execute(f"CREATE DATABASE scale_idle_w{w}")
                try:
                    ms, passes = _fresh_idle(broker, influx, workdir, w,
                                             {"db_url": pg.url_for(f"scale_idle_w{w}")}, args.idle_s)
                except RuntimeError as e:  # a hub that did not start (a port taken meanwhile): not the drain's fault
                    log.warning("idle phase of %d worker(s) skipped: %s", w, str(e).splitlines()[0])
                    continue
                results[w]["fresh_idle_ms_per_s_per_worker"] = ms
                results[w]["fresh_idle_timer_passes_per_s_per_worker"] = passes
    finally:
        broker.stop()
        influx.stop()
        if pg is not None:
            pg.stop(keep=args.keep)
        if args.keep:
            print(f"kept: {workdir}{f' and {pg.workdir}' if pg is not None else ''}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    print(f"messages: {n}")
    print(f"cores: {os.cpu_count()}")
    print(f"load_average: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    print(f"rules: {'on' if rules else 'off'}")
    print(f"backlog_order: {feeds.backlog_order(args.in_order)}")
    print("layout: " + ("one worker a community (N workers: N communities, each its own site, alert database and "
                        "InfluxDB database, each fed the backlog), on one broker, influxd and database server"
                        if args.communities else "N workers on one shared subscription, one community"))
    print(f"alert_store: {store}{' (own temporary server)' if pg is not None else ''}")
    print(f"raw_paho_qos1_msgs_per_s: {raw:.0f}")
    for w, res in results.items():
        print(f"workers_{w}_stored_msgs_per_s: {res['msgs_per_s']:.0f}")
        print(f"workers_{w}_cpu_us_per_msg: {res['cpu_us_per_msg']:.1f}")
        print(f"workers_{w}_idle_cpu_ms_per_s: {res['idle_cpu_s_per_s'] * 1000:.1f}")
        print(f"workers_{w}_idle_timer_db_passes_per_s: {res['idle_timer_runs_per_s']:.2f}")
        if "fresh_idle_ms_per_s_per_worker" in res:
            print(f"workers_{w}_fresh_idle_cpu_ms_per_s_per_worker: {res['fresh_idle_ms_per_s_per_worker']:.1f}")
            print(f"workers_{w}_fresh_idle_timer_db_passes_per_s_per_worker: "
                  f"{res['fresh_idle_timer_passes_per_s_per_worker']:.2f}")
        print(f"workers_{w}_cpu_us_per_msg_net_of_idle: {_net(res):.1f}")
        print(f"workers_{w}_rules_batch_cpu_us_per_msg: {res['rules_handle_cpu_s'] / res['messages'] * 1e6:.1f}")
        print(f"workers_{w}_rules_timer_cpu_s: {res['rules_timer_cpu_s']:.2f}")
        if res.get("rules_done_after_drain_s"):  # part of the drain: the held backlog's settle and rules
            print(f"workers_{w}_rules_done_after_drain_s: {res['rules_done_after_drain_s']:.1f}")
        print(f"workers_{w}_min_worker_share: {res['min_worker_share']:.2f}")
        for k in ("hub_batch_tx", "hub_batches_redone", *(f"hub_retries_{c}" for c in _RETRIES),
                  *(f"hub_stale_{c}" for c in _STALE), "alerts", "alert_fires", "alert_transitions",
                  "alerts_silent_at_feed_end", "alerts_not_explained_by_feed_end",
                  *(f"pg_{s}" for s in _STATS), "pg_lock_wait_backend_s", "pg_lock_waits_logged"):
            if k in res:
                print(f"workers_{w}_{k}: {res[k]:.1f}" if k == "pg_lock_wait_backend_s" else
                      f"workers_{w}_{k}: {int(res[k])}")
        if waits.get(w):
            print(f"workers_{w}_pg_lock_wait_events: {waits[w]}")
        if waits.get(-w):
            print(f"workers_{w}_alerts_by_rule: {waits[-w]}")
    for w, us in split.items():
        print(f"in_process_{w}_sinks_taking_turns_rules_batch_cpu_us_per_msg: {us:.1f}")
    if split:
        print(f"in_process_rules_batch_cpu_ratio_2_to_1: {split[2] / split[1]:.2f}")
    for w, res in results.items():
        _print_machine(w, res)
    if results:
        _print_ceiling(counts, results)
    ok = all(res["points_in_influxdb"] == res["expected_points"] for res in results.values())
    print(f"all_accounted_for: {'yes' if ok else 'NO'}")
    base = results[counts[0]]
    for w in counts[1:]:
        print(f"cpu_per_msg_ratio_{w}_to_{counts[0]}: {results[w]['cpu_us_per_msg'] / base['cpu_us_per_msg']:.2f}")
        print(f"cpu_per_msg_net_ratio_{w}_to_{counts[0]}: {_net(results[w]) / _net(base):.2f}")
        if base["rules_handle_cpu_s"] > 0:
            print(f"rules_batch_cpu_ratio_{w}_to_{counts[0]}: "
                  f"{results[w]['rules_handle_cpu_s'] / base['rules_handle_cpu_s']:.2f}")
        print(f"ratio_{w}_to_{counts[0]}: {results[w]['msgs_per_s'] / base['msgs_per_s']:.2f}")
    print(f"ratio: {results[counts[-1]]['msgs_per_s'] / base['msgs_per_s']:.2f}")
    return 0 if ok else 1


def _pid(proc: Any) -> int:
    if proc is None:
        raise RuntimeError("a service of the bench is not running")
    return int(proc.pid)


def _print_machine(w: int, res: dict[str, float]) -> None:
    """Where the drain's CPU went: every process, the machine's idle cores, and the hub's work per message."""
    n = res["messages"]
    p = f"workers_{w}_"
    print(f"{p}drain_wall_s: {res['machine_wall_s']:.1f}")
    names = sorted(k[len("machine_cpu_s_"):] for k in res if k.startswith("machine_cpu_s_"))
    for name in names:
        print(f"{p}cpu_s_{name}: {res[f'machine_cpu_s_{name}']:.2f}")
    print(f"{p}machine_busy_cores: {res['machine_busy_cores']:.2f}")
    print(f"{p}machine_idle_cores: {res['machine_idle_cores']:.2f}")
    print(f"{p}our_cores: {res['machine_our_cores']:.2f}")
    workers = sum(res[f"machine_cpu_s_worker{i}"] for i in range(w))
    # Per message, every part of the pipeline over the drain (from the first worker's connection: a later
    # worker's start-up that overlaps it is counted).
    for name, cpu in (("workers", workers), *((k, res[f"machine_cpu_s_{k}"]) for k in ("mosquitto", "influxd",
                                                                                         "postgres", "bench")
                                             if f"machine_cpu_s_{k}" in res)):
        print(f"{p}{name}_cpu_us_per_msg: {cpu / n * 1e6:.1f}")
    for i in range(w):
        batches = res.get(f"worker{i}_batches", 0.0)
        if batches > 0:
            print(f"{p}worker{i}_msgs_per_batch: {res[f'worker{i}_msgs'] / batches:.1f}")
    if "hub_batch_tx" in res:
        print(f"{p}batch_tx_per_1000_msgs: {res['hub_batch_tx'] / n * 1000:.1f}")
        conflicts = res["hub_batches_redone"] + sum(res[f"hub_retries_{c}"] for c in _RETRIES)
        print(f"{p}conflicts_per_1000_msgs: {conflicts / n * 1000:.2f}")
        print(f"{p}stale_keys_per_1000_msgs: {sum(res[f'hub_stale_{c}'] for c in _STALE) / n * 1000:.2f}")
    if "pg_xact_commit" in res and "machine_cpu_s_postgres" in res:
        xacts = res["pg_xact_commit"] + res["pg_xact_rollback"]
        print(f"{p}pg_xact_per_1000_msgs: {xacts / n * 1000:.1f}")
        if xacts:
            print(f"{p}pg_cpu_us_per_xact: {res['machine_cpu_s_postgres'] / xacts * 1e6:.0f}")


def _print_ceiling(counts: list[int], results: dict[int, dict[str, float]]) -> None:
    """What this machine allows: with one worker's run, the cores left idle bound what a second worker adds."""
    one = results[counts[0]]
    ours, idle = one["machine_our_cores"], one["machine_idle_cores"]
    # At the same CPU per message everywhere (workers, broker, influxd, PostgreSQL, bench), more workers can at
    # most add the idle cores to what the run used.
    bound = (ours + idle) / ours if ours > 0 else 0.0
    print(f"ceiling_ratio_from_idle_cores: {bound:.2f}")
    verdict = "no" if idle < 0.6 else "possibly"
    print(f"ceiling_1_6x_reachable_here: {verdict} (the {counts[0]}-worker drain left {idle:.2f} cores idle; "
          f"other work on the machine used {one['machine_cpu_s_other_work'] / one['machine_wall_s']:.2f} cores)")
    for w in counts[1:]:
        r = results[w]
        for name in ("workers", "postgres", "mosquitto", "influxd"):
            key = "machine_cpu_s_" + ("worker" if name == "workers" else name)
            a = sum(v for k, v in one.items() if k.startswith(key)) / one["messages"]
            b = sum(v for k, v in r.items() if k.startswith(key)) / r["messages"]
            if a > 0:
                print(f"{name}_cpu_per_msg_ratio_{w}_to_{counts[0]}: {b / a:.2f}")


def _ending_now(msgs: Sequence[tuple[str, bytes]]) -> list[tuple[str, bytes]]:
    """The backlog with its device times shifted to end now.

    Every worker count drains a backlog of the same age: otherwise the later runs, started minutes after the
    feed was made, see more absence deadlines (3 intervals after a device's last message) already past, and
    pay for the device_offline alerts that fire and clear during their drain (the earlier figures did).
    """
    def ts(payload: bytes) -> float:
        return datetime.fromisoformat(json.loads(payload)["ts"]).timestamp()
    shift = time.time() - ts(msgs[-1][1])
    out = []
    for topic, payload in msgs:
        d = json.loads(payload)
        d["ts"] = datetime.fromtimestamp(datetime.fromisoformat(d["ts"]).timestamp() + shift, UTC).isoformat() \
            .replace("+00:00", "Z")
        out.append((topic, json.dumps(d, separators=(",", ":")).encode()))
    return out


def _resite(topic: str, i: int) -> str:
    """A topic of the sample community as the i-th community's (hubrun.community_site; 0: unchanged)."""
    return topic.replace(f"/{hubrun.sample_site()}/", f"/{hubrun.community_site(i)}/", 1)


def _net(res: dict[str, float]) -> float:
    """CPU µs per message without the idle cost of the drain's duration (see _idle_cpu)."""
    elapsed = res["messages"] / res["msgs_per_s"]
    return res["cpu_us_per_msg"] - res["idle_cpu_s_per_s"] * elapsed / res["messages"] * 1e6
