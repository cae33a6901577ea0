"""`commhub bench <name>`: each benchmark is bench/<name>.py with add_arguments(parser) and run(args)."""

from __future__ import annotations

import argparse
import importlib

NAMES = ("ingest", "live", "alerts", "camera", "simulate", "api", "scale", "soak")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the benchmark name and pass the rest through."""
    parser.add_argument("name", choices=NAMES, help="which benchmark")
    parser.add_argument("bench_args", nargs=argparse.REMAINDER, help="options for that benchmark")


def run(args: argparse.Namespace) -> int:
    """Import bench.<name> and run it with its own options."""
    try:
        module = importlib.import_module(f"bench.{args.name}")
    except ModuleNotFoundError as e:
        if e.name != f"bench.{args.name}":
            raise
        print(f"benchmark {args.name!r} is not written yet")
        return 2
    parser = argparse.ArgumentParser(prog=f"commhub bench {args.name}")
    module.add_arguments(parser)
    return int(module.run(parser.parse_args(args.bench_args)) or 0)
