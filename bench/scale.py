"""`commhub bench scale`: 1, 2 and 3 hub workers on one MQTT shared subscription, same backlog, same run.

Besides the drain rate it reports the hub processes' CPU per message (user + system from /proc, start-up
included), the figure docs/scaling.md sizes machines with.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

from bench.ingest import PUBLISHERS, _forget_session, _Hub, _hub_config, _influx_count, _queue_backlog, measure_raw
from commhub.services import Influxd, Mosquitto

_TICKS = os.sysconf("SC_CLK_TCK")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options."""
    parser.add_argument("--messages", type=int, default=200_000, help="messages per measurement")
    parser.add_argument("--workers", default="1,2,3", help="worker counts to measure, comma-separated")
    parser.add_argument("--raw", action="store_true", help="also the raw paho QoS 1 drain rate (bench ingest's)")


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds of a live process."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS


def measure_workers(broker: Mosquitto, influx: Influxd, n: int, workdir: Path, workers: int) -> dict[str, float]:
    """Drain an n-message backlog with `workers` hub processes: stored msg/s and the hubs' CPU µs per message."""
    db = f"w{workers}"
    cfg_path = _hub_config(broker, influx, workdir, db)
    hubs = [_Hub(cfg_path, f"bench-{db}-{i}", workdir / f"hub-{db}-{i}.log") for i in range(workers)]
    for h in hubs:  # the first start creates the persistent sessions, so the backlog queues for them
        h.start()
    for h in hubs:
        h.wait_connected()
    for h in hubs:
        h.stop()
    _queue_backlog(broker, n, workdir, db)
    t0 = time.perf_counter()
    for h in hubs:
        h.start()
    cpu = 0.0
    try:
        deadline = time.monotonic() + 900
        while sum(max(h.metric("commhub_points_written_total"), 0.0) for h in hubs) < n:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{workers} workers did not store the backlog within 900 s")
            time.sleep(0.1)  # scraping /metrics costs the hub CPU: not too often
        elapsed = time.perf_counter() - t0
        # Includes each worker's start-up (imports, config, spool, connect): an upper bound per message.
        cpu = sum(_cpu_s(h.proc.pid) for h in hubs if h.proc is not None)
    finally:
        for h in hubs:
            h.stop()
            _forget_session(broker, h.worker_id)
    return {"stored_msgs_per_s": n / elapsed, "cpu_us_per_msg": cpu / n * 1e6,
            "points_in_influxdb": float(_influx_count(influx.url, db))}


def run(args: argparse.Namespace) -> int:
    """Measure and print."""
    n = args.messages - args.messages % PUBLISHERS
    counts = [int(w) for w in args.workers.split(",") if w.strip()]
    workdir = Path(tempfile.mkdtemp(prefix="commhub-bench-scale-"))
    broker, influx = Mosquitto(workdir / "mosquitto"), Influxd(workdir / "influxd")
    broker.start()
    influx.start()
    results: dict[int, dict[str, float]] = {}
    try:
        raw = measure_raw(broker, n, workdir) if args.raw else float("nan")
        for w in counts:
            results[w] = measure_workers(broker, influx, n, workdir, w)
    finally:
        broker.stop()
        influx.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    print(f"messages: {n}")
    print(f"cores: {os.cpu_count()}")
    if args.raw:
        print(f"raw_paho_qos1_msgs_per_s: {raw:.0f}")
    ok = True
    for w, res in results.items():
        print(f"workers_{w}_stored_msgs_per_s: {res['stored_msgs_per_s']:.0f}")
        print(f"workers_{w}_hub_cpu_us_per_msg: {res['cpu_us_per_msg']:.0f}")
        ok = ok and res["points_in_influxdb"] == n
    print(f"all_accounted_for: {'yes' if ok else 'NO'}")
    base = results[counts[0]]["stored_msgs_per_s"]
    for w in counts[1:]:
        print(f"ratio_{w}_to_{counts[0]}: {results[w]['stored_msgs_per_s'] / base:.2f}")
    print(f"ratio: {results[counts[-1]]['stored_msgs_per_s'] / base:.2f}")
    return 0 if ok else 1
