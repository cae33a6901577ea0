"""`commhub bench soak`: a simulated 10k-device community at real speed through broker -> hub -> InfluxDB.

mosquitto, influxd 1.6.7, one `commhub hub` with the rules on, and `commhub simulate --devices N --speed 1
--no-replay`, for `--minutes` of wall time; the community model lists all N devices (the sample community's
devices cloned as the simulator clones them), so none is refused as unknown. Every `--sample-s` it prints
the hub's RSS and CPU and its counters as a CSV row; at the end, messages in against points written and the
hub's CPU per message after warm-up.

`--trace` has the hub count its live objects by type at every sample and, from the end of warm-up, trace its
allocations with tracemalloc (snapshots in the work directory); the end prints what was allocated after
warm-up and is still alive, by site, and which object counts grew. tracemalloc slows the hub and adds memory
of its own: use it to find what grows, not for the memory figures.
"""

from __future__ import annotations

import argparse
import collections
import gc
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import tracemalloc
import urllib.parse
import urllib.request
from bisect import bisect_right
from pathlib import Path

import yaml

from bench.hubrun import cpu_seconds, metric, wait_for
from commhub.config import load
from commhub.hubproc import rss_mb
from commhub.ports import free_port
from commhub.services import Influxd, Mosquitto
from simulators.fleet import select

REPO = Path(__file__).resolve().parents[1]
_TRACE_DIR = "COMMHUB_SOAK_TRACE_DIR"
_TRACE_EVERY = "COMMHUB_SOAK_TRACE_EVERY_S"
_TRACE_START = "COMMHUB_SOAK_TRACE_START_S"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options."""
    parser.add_argument("--minutes", type=float, default=30.0, help="wall minutes the simulator runs")
    parser.add_argument("--devices", type=int, default=10_000, help="simulated devices")
    parser.add_argument("--sample-s", type=float, default=60.0, help="seconds between samples")
    parser.add_argument("--warmup-min", type=float, default=5.0, help="minutes left out of the CPU-per-message figure")
    parser.add_argument("--trace", action="store_true", help="tracemalloc snapshots in the hub; print what grew")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")


def traced_hub() -> None:
    """Entry point of the hub under --trace: `commhub` with a thread dumping type counts and snapshots."""
    out = Path(os.environ[_TRACE_DIR])
    every = float(os.environ[_TRACE_EVERY])
    start_after = float(os.environ[_TRACE_START])

    def dump() -> None:
        # Tracing only from the end of warm-up: the snapshots then hold just what was allocated since and is
        # still alive, and the hub is not slowed down while it starts.
        t0 = time.monotonic()
        n = 0
        while True:
            time.sleep(every)
            if not tracemalloc.is_tracing() and time.monotonic() - t0 >= start_after:
                tracemalloc.start(8)
            elif tracemalloc.is_tracing():
                tracemalloc.take_snapshot().dump(str(out / f"snap-{n:03d}.bin"))
            counts = collections.Counter(type(o).__qualname__ for o in gc.get_objects())
            (out / f"types-{n:03d}.json").write_text(json.dumps(dict(counts)))
            n += 1

    threading.Thread(target=dump, name="soak-trace", daemon=True).start()
    from commhub.cli import main
    sys.exit(main(sys.argv[1:]))


def _growth(trace_dir: Path, top: int = 15) -> list[str]:
    """What grew after warm-up: live allocations since then by site, and object counts by type."""
    snaps = sorted(trace_dir.glob("snap-*.bin"))
    if not snaps:
        return ["trace: no snapshot (the soak ended before warm-up did)"]
    last = tracemalloc.Snapshot.load(str(snaps[-1]))
    stats = last.statistics("traceback")
    lines = [f"trace: {sum(s.size for s in stats) / 2**20:.1f} MiB allocated after warm-up and still alive "
             f"({snaps[-1].name})"]
    for stat in stats[:top]:
        frames = [f"{f.filename.removeprefix(str(REPO) + '/')}:{f.lineno}" for f in stat.traceback][:8]
        lines.append(f"live {stat.size / 1024:.0f} KiB in {stat.count} blocks: {' < '.join(frames)}")
    first = snaps[0].name.replace("snap-", "types-").replace(".bin", ".json")
    t0 = json.loads((trace_dir / first).read_text())
    t1 = json.loads(sorted(trace_dir.glob("types-*.json"))[-1].read_text())
    diffs = sorted(((t1.get(k, 0) - t0.get(k, 0), k) for k in set(t0) | set(t1)), reverse=True)[:top]
    lines += [f"objects {k}: {t0.get(k, 0)} -> {t1.get(k, 0)} ({d:+d})" for d, k in diffs]
    return lines


def _community(tmp: Path, devices: int) -> Path:
    """The sample community with its simulated devices cloned to `devices`, so the hub knows every one."""
    base = load(REPO / "configs" / "commhub.yaml").community
    fleet = select(base.devices, devices)
    community = base.model_copy(update={"devices": tuple(fleet)})
    path = tmp / "community.yaml"
    dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
    path.write_text(yaml.dump(community.model_dump(mode="json", exclude_defaults=True), Dumper=dumper,
                              allow_unicode=True))
    return path


def first_seen(url: str, db: str) -> list[float]:
    """Each device's first point (epoch seconds, device time), from InfluxDB: when the hub first met it."""
    qs = urllib.parse.urlencode({"db": db, "q": 'SELECT first("seq") FROM /.*/ GROUP BY "device_id"', "epoch": "s"})
    with urllib.request.urlopen(f"{url}/query?{qs}", timeout=600) as r:
        series = json.load(r)["results"][0].get("series", [])
    first: dict[str, float] = {}
    for s in series:
        device = s["tags"]["device_id"]
        first[device] = min(first.get(device, float("inf")), float(s["values"][0][0]))
    return sorted(first.values())


def run(args: argparse.Namespace) -> int:
    """Run the soak and print the samples and the figures."""
    # A background job ignores SIGINT: let SIGTERM stop the soak through its finally (hub, broker, InfluxDB).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    tmp = Path(tempfile.mkdtemp(prefix="commhub-bench-soak-"))
    broker, influx = Mosquitto(tmp / "mosquitto"), Influxd(tmp / "influxd")
    broker.start()
    influx.start()
    mport = free_port()
    cfg = {"community": str(_community(tmp, args.devices)),
           "mqtt": {"host": "127.0.0.1", "port": broker.port},
           "influx": {"url": influx.url, "database": "soak", "transport": "v1"},
           "hub": {"worker_id": "soak-hub", "metrics": {"port": mport}, "spool": {"dir": str(tmp / "spool")},
                   "snapshots_dir": str(tmp / "snapshots")},
           "alerts": {"enabled": True, "db_path": str(tmp / "alerts.db")},
           "agent": {"state_dir": str(tmp / "agents")}}
    (tmp / "soak.yaml").write_text(yaml.safe_dump(cfg))
    py = str(REPO / ".venv" / "bin" / "python")
    hub_args = ["--log-level", "WARNING", "hub", "--config", str(tmp / "soak.yaml")]
    env = dict(os.environ)
    trace_dir = tmp / "trace"
    if args.trace:
        trace_dir.mkdir()
        env |= {_TRACE_DIR: str(trace_dir), _TRACE_EVERY: str(args.sample_s),
                _TRACE_START: str(args.warmup_min * 60)}
        hub_cmd = [py, "-c", "import sys; from bench.soak import traced_hub; traced_hub()", *hub_args]
    else:
        hub_cmd = [py, "-m", "commhub.cli", *hub_args]
    with open(tmp / "hub.log", "w") as hub_log, open(tmp / "sim.log", "w") as sim_log:
        hub = subprocess.Popen(hub_cmd, stdout=hub_log, stderr=subprocess.STDOUT, cwd=REPO, env=env)
        sim: subprocess.Popen[bytes] | None = None
        try:
            wait_for(lambda: metric(mport, "commhub_messages_in_total") >= 0 or hub.poll() is not None, 300,
                     "the hub's metrics")
            sim = subprocess.Popen([py, "-m", "commhub.cli", "--log-level", "WARNING", "simulate", "--config",
                                    str(tmp / "soak.yaml"), "--devices", str(args.devices), "--speed", "1",
                                    "--no-replay", "--report-every", "60"],
                                   stdout=sim_log, stderr=subprocess.STDOUT, cwd=REPO)
            rows = _sample(hub, sim, mport, args)
            sim.terminate()
            sim.wait(300)
            # Everything the simulator published is in once the count stops moving.
            last = -2.0
            while (now := metric(mport, "commhub_points_written_total")) != last:
                last = now
                time.sleep(15)
            messages = metric(mport, "commhub_messages_in_total")
            written = metric(mport, "commhub_points_written_total")
            invalid = metric(mport, "commhub_messages_invalid_total")
            seen = first_seen(influx.url, "soak")
        finally:
            for proc in (sim, hub):
                if proc is not None and proc.poll() is None:
                    proc.terminate()
                    try:
                        proc.wait(120)
                    except subprocess.TimeoutExpired:
                        proc.kill()
                        proc.wait()
            broker.stop()
            influx.stop()
    # Devices the hub had met by each sample: per-device state (de-duplication, clocks, rule state, caches)
    # grows with this count, not with the messages.
    print("minute,hub_rss_mib,devices_seen")
    for r in rows:
        print(f"{r['minute']:.1f},{r['hub_rss_mib']:.0f},{bisect_right(seen, r['wall']):d}")
    warm = [r for r in rows if r["minute"] >= args.warmup_min]
    print(f"devices: {args.devices}")
    print(f"minutes: {args.minutes:g}")
    print(f"messages_in: {messages:.0f}")
    print(f"points_written: {written:.0f}")
    print(f"invalid: {invalid:.0f}")
    print(f"lost: {messages - written:.0f}")
    print(f"devices_seen: {len(seen)}")
    if len(warm) >= 2 and warm[-1]["messages_in"] > warm[0]["messages_in"]:
        cpu = (warm[-1]["hub_cpu_s"] - warm[0]["hub_cpu_s"]) / (warm[-1]["messages_in"] - warm[0]["messages_in"])
        span = warm[-1]["minute"] - warm[0]["minute"]
        print(f"hub_cpu_us_per_msg_after_warmup: {cpu * 1e6:.0f}")
        print(f"hub_rss_mib_after_warmup: {warm[0]['hub_rss_mib']:.0f}")
        print(f"hub_rss_mib_end: {warm[-1]['hub_rss_mib']:.0f}")
        print(f"hub_rss_mib_per_min_after_warmup: {(warm[-1]['hub_rss_mib'] - warm[0]['hub_rss_mib']) / span:.2f}")
    if args.trace:
        for line in _growth(trace_dir):
            print(line)
    if args.keep:
        print(f"workdir: {tmp}")
    else:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0 if messages == written and invalid == 0 else 1


def _sample(hub: subprocess.Popen[bytes], sim: subprocess.Popen[bytes], mport: int,
            args: argparse.Namespace) -> list[dict[str, float]]:
    """Sample every --sample-s until --minutes have passed; print each row as CSV."""
    rows: list[dict[str, float]] = []
    t0 = time.monotonic()
    print("minute,hub_rss_mib,hub_cpu_s,sim_rss_mib,messages_in,points_written,spool_points", flush=True)
    while (elapsed := time.monotonic() - t0) < args.minutes * 60 + 1:
        if hub.poll() is not None or sim.poll() is not None:
            raise RuntimeError(f"the {'hub' if hub.poll() is not None else 'simulator'} exited early")
        row = {"minute": elapsed / 60, "wall": time.time(), "hub_rss_mib": rss_mb(hub.pid),
               "hub_cpu_s": cpu_seconds(hub.pid),
               "sim_rss_mib": rss_mb(sim.pid), "messages_in": metric(mport, "commhub_messages_in_total"),
               "points_written": metric(mport, "commhub_points_written_total"),
               "spool_points": metric(mport, "commhub_spool_points")}
        rows.append(row)
        print(",".join(f"{v:.1f}" if k in ("minute", "hub_cpu_s") else f"{v:.0f}" for k, v in row.items()
                       if k != "wall"), flush=True)
        time.sleep(max(0.0, args.sample_s - (time.monotonic() - t0 - elapsed)))
    return rows
