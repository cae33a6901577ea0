"""`commhub bench scale`: one hub worker against two on one MQTT shared subscription, same backlog, same run."""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
from pathlib import Path

from bench.ingest import PUBLISHERS, measure_hub, measure_raw
from commhub.services import Influxd, Mosquitto


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options."""
    parser.add_argument("--messages", type=int, default=200_000, help="messages per measurement")


def run(args: argparse.Namespace) -> int:
    """Measure and print."""
    n = args.messages - args.messages % PUBLISHERS
    workdir = Path(tempfile.mkdtemp(prefix="commhub-bench-scale-"))
    broker, influx = Mosquitto(workdir / "mosquitto"), Influxd(workdir / "influxd")
    broker.start()
    influx.start()
    try:
        raw = measure_raw(broker, n, workdir)
        one = measure_hub(broker, influx, n, workdir, workers=1, db="one")
        two = measure_hub(broker, influx, n, workdir, workers=2, db="two")
    finally:
        broker.stop()
        influx.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    print(f"messages: {n}")
    print(f"cores: {os.cpu_count()}")
    print(f"raw_paho_qos1_msgs_per_s: {raw:.0f}")
    print(f"one_worker_stored_msgs_per_s: {one['hub_stored_msgs_per_s']:.0f}")
    print(f"two_workers_stored_msgs_per_s: {two['hub_stored_msgs_per_s']:.0f}")
    ok = one["hub_points_in_influxdb"] == n and two["hub_points_in_influxdb"] == n
    print(f"all_accounted_for: {'yes' if ok else 'NO'}")
    print(f"ratio: {two['hub_stored_msgs_per_s'] / one['hub_stored_msgs_per_s']:.2f}")
    return 0 if ok else 1
