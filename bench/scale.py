"""`commhub bench scale`: 1, 2 and 3 hub workers on one MQTT shared subscription, same backlog, same run.

The backlog is the realistic feed of `bench ingest` (the sample community's mix) with the default rule pack on.
Two workers share alert state through SQL: give `--db-url` a PostgreSQL URL to measure them as deployed (the
runs then share its tables). Without it, each run has its own SQLite file.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
from pathlib import Path

from bench import feed as feeds
from bench.hubrun import measure_raw
from bench.ingest import FILTER, Queue, measure_hub
from commhub.config import load
from commhub.services import Influxd, Mosquitto

REPO = Path(__file__).resolve().parents[1]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options."""
    parser.add_argument("--messages", type=int, default=100_000, help="messages per measurement")
    parser.add_argument("--db-url", default="", help="alert store URL shared by the workers (PostgreSQL)")
    parser.add_argument("--rules-off", action="store_true", help="measure without the alerting chain")
    parser.add_argument("--workers", default="1,2,3", help="worker counts to measure, comma-separated")


def run(args: argparse.Namespace) -> int:
    """Measure and print."""
    cfg = load(REPO / "configs" / "commhub.yaml")
    msgs = feeds.simulate(cfg, args.messages).messages
    n = len(msgs)
    workdir = Path(tempfile.mkdtemp(prefix="commhub-bench-scale-"))
    broker, influx = Mosquitto(workdir / "mosquitto"), Influxd(workdir / "influxd")
    broker.start()
    influx.start()

    def queue(tag: str) -> Queue:
        def go() -> int:
            feeds.publish_backlog(broker, msgs, workdir, tag)
            return n
        return go

    extra = {"db_url": args.db_url} if args.db_url else {}
    rules = not args.rules_off
    counts = [int(w) for w in args.workers.split(",") if w.strip()]
    results: dict[int, dict[str, float]] = {}
    try:
        raw = measure_raw(broker, FILTER, queue("raw"))
        for w in counts:
            results[w] = measure_hub(broker, influx, workdir, queue(f"w{w}"), workers=w, db=f"w{w}", rules=rules,
                                     alerts=extra)
    finally:
        broker.stop()
        influx.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    print(f"messages: {n}")
    print(f"cores: {os.cpu_count()}")
    print(f"rules: {'on' if rules else 'off'}")
    print(f"alert_store: {'postgresql' if args.db_url.startswith('postgresql') else 'sqlite'}")
    print(f"raw_paho_qos1_msgs_per_s: {raw:.0f}")
    for w, res in results.items():
        print(f"workers_{w}_stored_msgs_per_s: {res['msgs_per_s']:.0f}")
        print(f"workers_{w}_cpu_us_per_msg: {res['cpu_us_per_msg']:.1f}")
    ok = all(res["points_in_influxdb"] == n for res in results.values())
    print(f"all_accounted_for: {'yes' if ok else 'NO'}")
    base = results[counts[0]]["msgs_per_s"]
    for w in counts[1:]:
        print(f"ratio_{w}_to_{counts[0]}: {results[w]['msgs_per_s'] / base:.2f}")
    print(f"ratio: {results[counts[-1]]['msgs_per_s'] / base:.2f}")
    return 0 if ok else 1
