"""`commhub bench live`: where a live feed's hub CPU goes, per thread, and how large its batches are.

A hub with the default rule pack drains a small backlog, then takes a steady live rate (as `bench ingest`'s
live phase does). It prints the hub's CPU per live message (from /proc), the alerting sink's own CPU per
message and its batches, and each thread's CPU per message (from /proc/<pid>/task; the network loop is the
largest, the spool's drain to InfluxDB usually the second). A live feed's CPU per message follows its batch
size, which follows the machine's load, so compare runs by both (docs/performance.md, round 5).
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path
from typing import Any

from bench import feed as feeds
from bench import ingest
from bench.hubrun import HubProc, cpu_seconds, thread_cpu_seconds
from commhub.config import load
from commhub.services import Influxd, Mosquitto

REPO = Path(__file__).resolve().parents[1]
_SINK = ("commhub_alert_handle_cpu_seconds_total", "commhub_alert_timer_cpu_seconds_total",
         "commhub_alert_batches_handled_total", "commhub_alert_timer_runs_total")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options."""
    parser.add_argument("--rate", type=float, default=2000.0, help="live msg/s")
    parser.add_argument("--seconds", type=float, default=15.0, help="length of the live phase")
    parser.add_argument("--backlog", type=int, default=2000, help="messages drained before the live phase")
    parser.add_argument("--batch-gather-ms", type=float, default=None, help="hub.batch_gather_ms (default: the hub's)")


def run(args: argparse.Namespace) -> int:
    """Measure and print `name: value` lines."""
    cfg = load(REPO / "configs" / "commhub.yaml")
    feed = feeds.simulate(cfg, args.backlog + int(args.rate * args.seconds))
    backlog, live = feed.messages[:args.backlog], feed.messages[args.backlog:]
    work = Path(tempfile.mkdtemp(prefix="commhub-bench-live-"))
    broker, influx = Mosquitto(work / "mosquitto"), Influxd(work / "influxd")
    broker.start()
    influx.start()
    phase = ingest.live_phase(broker, live, args.rate)
    split: dict[str, Any] = {}

    def after(hubs: list[HubProc]) -> dict[str, float]:
        h = hubs[0]
        m0, t0, c0 = {k: h.metric(k) for k in _SINK}, thread_cpu_seconds(h.pid), cpu_seconds(h.pid)
        out = phase(hubs)
        m1, t1, c1 = {k: h.metric(k) for k in _SINK}, thread_cpu_seconds(h.pid), cpu_seconds(h.pid)
        n = out["live_msgs"]
        split.update(cpu=(c1 - c0) / n * 1e6, sink={k: m1[k] - m0[k] for k in _SINK}, n=n,
                     threads=sorted(((t1[t] - t0.get(t, 0.0)) / n * 1e6 for t in t1), reverse=True))
        return out

    hub = {} if args.batch_gather_ms is None else {"batch_gather_ms": args.batch_gather_ms}
    try:
        r = ingest.measure_hub(broker, influx, work, ingest._queue(broker, backlog, work, "live"), db="live",
                               rules=True, after=after, **hub)
    finally:
        broker.stop()
        influx.stop()
        shutil.rmtree(work, ignore_errors=True)
    n, sink = split["n"], split["sink"]
    batches = sink["commhub_alert_batches_handled_total"]
    print(f"live_msgs: {n}")
    print(f"live_offered_msgs_per_s: {r['live_offered_msgs_per_s']:.0f}")
    print(f"live_cpu_us_per_msg: {split['cpu']:.1f}")
    print(f"live_batches: {batches:.0f}")
    print(f"live_msgs_per_batch: {n / batches if batches else 0:.1f}")
    print(f"live_sink_batches_cpu_us_per_msg: {sink['commhub_alert_handle_cpu_seconds_total'] / n * 1e6:.1f}")
    print(f"live_sink_timer_cpu_us_per_msg: {sink['commhub_alert_timer_cpu_seconds_total'] / n * 1e6:.1f}")
    print(f"live_timer_passes: {sink['commhub_alert_timer_runs_total']:.0f}")
    print(f"live_threads_cpu_us_per_msg: {' '.join(f'{x:.1f}' for x in split['threads'] if x >= 0.5)}")
    print(f"live_lag_s: {r['live_lag_s']:.1f}")
    lost = int(r["messages"] - r["points_in_influxdb"])
    print(f"live_lost: {lost}")
    return 0 if lost == 0 else 1
