"""`commhub simulate`: publish a community's normal life through the edge agents' publish path."""

from __future__ import annotations

import argparse
import logging
import math
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any

from commhub import config as config_mod
from simulators.clock import SimClock
from simulators.engine import Simulation, Stats
from simulators.fleet import FleetError, select
from simulators.models import ModelContext
from simulators.publish import CountingPublisher, make_agent
from simulators.recordings import RecordingError, Recordings, default_data_dir, load
from simulators.rhythm import LocalTime
from simulators.units import iso, parse_duration, parse_start

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `commhub simulate`."""
    parser.add_argument("--config", default="configs/commhub.yaml", help="commhub config (community, mqtt, agent)")
    parser.add_argument("--seed", type=int, default=1, help="random seed; same seed and start give the same run")
    parser.add_argument("--speed", type=float, default=1.0,
                        help="simulated seconds per wall second; 0 = as fast as possible")
    parser.add_argument("--duration", default=None, help="simulated time to run (90, 15m, 2h, 1d); default forever")
    parser.add_argument("--devices", type=int, default=None,
                        help="simulate this many devices (a subset, or clones of the community's)")
    parser.add_argument("--start", default=None,
                        help="simulated start, ISO-8601 with offset (default: now, to the minute)")
    parser.add_argument("--data-dir", type=Path, default=None,
                        help="recordings folder (default: ../shared/data beside the repository)")
    parser.add_argument("--no-replay", action="store_true", help="synthesize env/electrical readings instead")
    parser.add_argument("--dry-run", action="store_true", help="generate and count, publish nothing")
    parser.add_argument("--report-every", type=float, default=5.0, help="wall seconds between progress lines")


def recordings(args: argparse.Namespace) -> Recordings | None:
    """The replayed recordings, unless --no-replay."""
    if args.no_replay:
        return None
    return load(args.data_dir or default_data_dir())


def progress_line(stats: Stats) -> str:
    """One line of progress: simulated time, messages, rate, devices."""
    when = iso(stats.sim_ts) if not math.isnan(stats.sim_ts) else "-"
    return (f"sim {when}  published {stats.published:,}  injected {stats.injected:,}  "
            f"rate {stats.rate:,.0f} msg/s  devices {stats.devices:,}  wall {stats.wall_s:,.1f}s")


def install_stop(stop: Callable[[], None]) -> None:
    """SIGINT/SIGTERM stop the loop cleanly, so the agent still flushes."""
    def handler(_sig: int, _frame: FrameType | None) -> None:
        stop()
    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)


def run(args: argparse.Namespace) -> int:
    """Run the simulator; 0 when everything published was acknowledged."""
    cfg = config_mod.load(args.config)
    try:
        duration = parse_duration(args.duration) if args.duration is not None else math.inf
        start = parse_start(args.start) if args.start else float(int(time.time()) // 60 * 60)
        # Cameras with a configured source are watched by the real camera agent, not simulated.
        real_cameras = {c.id for c in cfg.cameras.devices}
        devices = select(tuple(d for d in cfg.community.devices if d.id not in real_cameras), args.devices)
        recs = recordings(args)
    except (ValueError, FleetError, RecordingError) as e:
        print(f"commhub simulate: {e}", file=sys.stderr)
        return 2
    if start < time.time() - 60 and not args.dry_run:
        log.warning("the simulated start lies in the past: the agent's births carry the wall clock and look newer "
                    "than every simulated message, so a hub's absence rules will not see them as activity")
    ctx = ModelContext(site=cfg.community.site.id, local=LocalTime(cfg.community.site.timezone), recordings=recs)
    clock = SimClock(start, args.speed)
    agent: Any = CountingPublisher() if args.dry_run else make_agent(cfg, devices)
    sim = Simulation(devices, agent, clock, ctx, args.seed, end=start + duration,
                     progress=lambda s: print(progress_line(s), flush=True), progress_every_s=args.report_every)
    install_stop(sim.stop)
    print(f"simulating {len(sim.devices):,} devices of site {ctx.site} from {iso(start)} "
          f"at speed {args.speed:g}{' (dry run)' if args.dry_run else ''}", flush=True)
    ok = True
    if not args.dry_run:
        agent.start()
    try:
        stats = sim.run()
    finally:
        if not args.dry_run:
            ok = bool(agent.flush(30.0))
            agent.stop()
    print(f"done: {stats.published:,} messages from {stats.devices:,} devices in {stats.wall_s:.1f}s "
          f"({stats.rate:,.0f} msg/s); simulated until {iso(stats.sim_ts) if not math.isnan(stats.sim_ts) else '-'}"
          f"{'' if ok else '; NOT all acknowledged by the broker (kept in the agent spool)'}", flush=True)
    return 0 if ok else 1
