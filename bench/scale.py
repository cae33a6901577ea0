"""`commhub bench scale`: 1, 2 and 3 hub workers on one MQTT shared subscription, same backlog, same run.

Besides the drain rate it reports the hub processes' CPU per message (user + system, read from /proc while
they run), the figure docs/scaling.md sizes machines with.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.ingest import PUBLISHERS, measure_hub, measure_raw
from commhub.services import Influxd, Mosquitto

_TICKS = os.sysconf("SC_CLK_TCK")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options."""
    parser.add_argument("--messages", type=int, default=200_000, help="messages per measurement")
    parser.add_argument("--workers", default="1,2,3", help="worker counts to measure, comma-separated")


def _hub_children() -> dict[int, float]:
    """CPU seconds so far of our child processes that run `commhub ... hub`."""
    out: dict[int, float] = {}
    me = os.getpid()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            if int(fields[1]) != me:  # fields[1] is the ppid (field 4 of stat)
                continue
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
        except (OSError, IndexError, ValueError):
            continue
        if b"hub" in argv and b"commhub.cli" in argv:
            out[int(entry)] = (int(fields[11]) + int(fields[12])) / _TICKS  # utime + stime
    return out


class _CpuMeter:
    """Samples the hub children's CPU time until stopped; keeps each process's last reading."""

    def __init__(self) -> None:
        self.seen: dict[int, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            self.seen.update(_hub_children())

    def measure(self, fn: Callable[[], dict[str, float]]) -> tuple[dict[str, float], float]:
        """Run fn and return its result and the hub processes' CPU seconds meanwhile."""
        self._thread.start()
        try:
            result = fn()
        finally:
            self._stop.set()
            self._thread.join()
        return result, sum(self.seen.values())


def run(args: argparse.Namespace) -> int:
    """Measure and print."""
    n = args.messages - args.messages % PUBLISHERS
    counts = [int(w) for w in args.workers.split(",") if w.strip()]
    workdir = Path(tempfile.mkdtemp(prefix="commhub-bench-scale-"))
    broker, influx = Mosquitto(workdir / "mosquitto"), Influxd(workdir / "influxd")
    broker.start()
    influx.start()
    results: dict[int, tuple[dict[str, Any], float]] = {}
    try:
        try:
            raw = measure_raw(broker, n, workdir)
        except RuntimeError as e:
            # bench/ingest's raw subscriber waits 10 s for a SUBACK that queues behind the backlog on a loaded
            # machine; the worker counts are still compared with each other, measured in this same run.
            print(f"raw_paho_qos1: not measured ({e})")
            raw = float("nan")
        for w in counts:
            results[w] = _CpuMeter().measure(
                lambda w=w: measure_hub(broker, influx, n, workdir, workers=w, db=f"w{w}"))  # type: ignore[misc]
    finally:
        broker.stop()
        influx.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    print(f"messages: {n}")
    print(f"cores: {os.cpu_count()}")
    print(f"raw_paho_qos1_msgs_per_s: {raw:.0f}")
    ok = True
    for w, (res, cpu) in results.items():
        print(f"workers_{w}_stored_msgs_per_s: {res['hub_stored_msgs_per_s']:.0f}")
        # Includes each worker's start-up (imports, config, spool) and the priming connect: an upper bound.
        print(f"workers_{w}_hub_cpu_us_per_msg: {cpu / n * 1e6:.0f}")
        ok = ok and res["hub_points_in_influxdb"] == n
    print(f"all_accounted_for: {'yes' if ok else 'NO'}")
    base = results[counts[0]][0]["hub_stored_msgs_per_s"]
    for w in counts[1:]:
        print(f"ratio_{w}_to_{counts[0]}: {results[w][0]['hub_stored_msgs_per_s'] / base:.2f}")
    print(f"ratio: {results[counts[-1]][0]['hub_stored_msgs_per_s'] / base:.2f}")
    return 0 if ok else 1
