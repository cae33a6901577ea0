"""`commhub scenario run|check|generate`: score a hub (or the rules offline) on incident scenarios, validate
scenario files, or generate variants of every catalogue incident and its near miss."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from commhub import config as config_mod
from simulators.cli import recordings
from simulators.recordings import RecordingError
from simulators.rhythm import LocalTime
from simulators.scenario.generate import KINDS, busy_gates, variants
from simulators.scenario.incidents import PlanError, plan
from simulators.scenario.offline import run_offline
from simulators.scenario.report import Summary, as_json, table
from simulators.scenario.runner import ScenarioRunner
from simulators.scenario.spec import Scenario, ScenarioError, load_scenario


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `commhub scenario`."""
    sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    run_p = sub.add_parser("run", help="run scenarios against a running hub and score its alerts")
    check_p = sub.add_parser("check", help="validate scenario files against the community, publish nothing")
    gen_p = sub.add_parser("generate", help="write generated variants of every catalogue incident and near miss")
    for p in (run_p, check_p):
        p.add_argument("files", nargs="+", type=Path, help="scenario YAML files (or folders of them)")
        p.add_argument("--config", default="configs/commhub.yaml", help="commhub config (community, mqtt, agent)")
    gen_p.add_argument("--config", default="configs/commhub.yaml", help="commhub config (its community)")
    gen_p.add_argument("--seed", type=int, default=1, help="the same seed writes the same variants")
    gen_p.add_argument("--variants", type=int, default=20, help="variants per incident type (and as many near misses)")
    gen_p.add_argument("--out", type=Path, default=Path("run/scenarios/generated"), help="folder to write")
    gen_p.add_argument("--kinds", default="", help="comma-separated incident types (default: all)")
    gen_p.add_argument("--no-busy-gates", action="store_true", help="leave out the busy morning at the gates")
    run_p.add_argument("--offline", action="store_true",
                       help="score through the rule engine in-process on simulated time (no broker, no hub)")
    run_p.add_argument("--json", type=Path, default=None, help="write the report as JSON to this file")
    run_p.add_argument("--speed", type=float, default=None, help="override the scenario's simulated speed")
    run_p.add_argument("--grace", type=float, default=20.0,
                       help="wall seconds to wait after the end for alerts still expected")
    run_p.add_argument("--data-dir", type=Path, default=None, help="recordings folder (default ../shared/data)")
    run_p.add_argument("--no-replay", action="store_true", help="synthesize env/electrical readings instead")
    run_p.add_argument("--quiet", action="store_true", help="no progress bar")
    hub = run_p.add_mutually_exclusive_group()
    hub.add_argument("--with-hub", action="store_true",
                     help="run a hub worker in-process on the scenario's simulated clock (own topic root, alert "
                          "database and InfluxDB database '<db>_scenarios'); needs only broker and InfluxDB")
    hub.add_argument("--wall-clock", action="store_true",
                     help="for a running hub that keeps wall-clock time: start the scenario now, at speed 1")
    run_p.add_argument("--rules", type=Path, default=None, help="with --with-hub: this rule pack instead")
    run_p.add_argument("--workdir", type=Path, default=Path("run/scenarios"),
                       help="with --with-hub: where its spool and alert database go")


def _files(paths: list[Path]) -> list[Path]:
    out: list[Path] = []
    for p in paths:
        out += sorted(p.glob("*.yaml")) if p.is_dir() else [p]
    return out


def generate(args: argparse.Namespace) -> int:
    """Write the variants as YAML files; 2 on bad input."""
    cfg = config_mod.load(args.config)
    kinds = tuple(k for k in args.kinds.split(",") if k) or None
    unknown = set(kinds or ()) - set(KINDS)
    if unknown:
        print(f"commhub scenario: unknown incident types {sorted(unknown)}; use {', '.join(KINDS)}", file=sys.stderr)
        return 2
    made = variants(cfg.community, args.seed, args.variants, kinds)
    if not args.no_busy_gates and kinds is None:
        made.append(busy_gates(cfg.community, args.seed))
    args.out.mkdir(parents=True, exist_ok=True)
    for sc in made:
        doc = sc.model_dump(mode="json", exclude_defaults=True)
        (args.out / f"{sc.name}.yaml").write_text(yaml.safe_dump(doc, sort_keys=False, allow_unicode=True),
                                                  encoding="utf-8")
    print(f"wrote {len(made)} scenarios to {args.out}")
    return 0


def run(args: argparse.Namespace) -> int:
    """0 when every scenario passed, 1 when one failed, 2 on bad input."""
    if args.action == "generate":
        return generate(args)
    cfg = config_mod.load(args.config)
    args.files = _files(args.files)
    try:
        scenarios = [load_scenario(f) for f in args.files]
        local = LocalTime(cfg.community.site.timezone)
        for f, sc in zip(args.files, scenarios, strict=True):
            try:
                plan(sc, cfg.community.device_index(), local, cfg.community.site.id)
            except PlanError as e:
                raise ScenarioError(f"{f}: {e}") from None
    except ScenarioError as e:
        print(f"commhub scenario: {e}", file=sys.stderr)
        return 2
    if args.action == "check":
        for f, sc in zip(args.files, scenarios, strict=True):
            print(f"{f}: ok ({sc.name}: {len(sc.incidents)} incidents, {len(sc.expect)} expected alerts)")
        return 0
    try:
        recs = recordings(args)
    except RecordingError as e:
        print(f"commhub scenario: {e}", file=sys.stderr)
        return 2
    reports = []
    failed = 0
    if args.offline:
        return _offline(args, cfg, scenarios, recs)
    for sc in scenarios:
        workdir = None
        if args.with_hub:
            workdir = (args.workdir / f"{sc.name}-{int(time.time())}").resolve()
        runner = ScenarioRunner(cfg, sc, speed=args.speed, grace_s=args.grace, recordings=recs,
                                out=None if args.quiet else sys.stderr, with_hub=workdir, rules_file=args.rules,
                                wall_clock=args.wall_clock)
        result = runner.run()
        print(table(sc.name, result.score), flush=True)
        if result.meta["alert_clock"] == "wall" and not args.wall_clock:
            print("warning: the hub stamps alerts on the wall clock, not on simulated time: its hold times and "
                  "absence timers do not follow the scenario. Use --with-hub, or --wall-clock.", file=sys.stderr)
        reports.append(as_json(sc.name, result.meta, result.score))
        failed += 0 if result.score.passed else 1
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        doc = reports[0] if len(reports) == 1 else {"scenarios": reports, "failed": failed}
        args.json.write_text(json.dumps(doc, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    if len(scenarios) > 1:
        print(f"{len(scenarios) - failed}/{len(scenarios)} scenarios passed")
    return 1 if failed else 0


def _offline(args: argparse.Namespace, cfg: config_mod.Config, scenarios: list[Scenario], recs: Any) -> int:
    """Score every scenario through the rule engine; a summary per incident type (recall on time, false alerts)."""
    reports = []
    summary = Summary()
    for sc in scenarios:
        result, loop = run_offline(sc, cfg.community, recs)
        summary.add(sc, result)
        if not args.quiet or not result.passed:
            print(table(sc.name, result), flush=True)
        reports.append(as_json(sc.name, {"offline": True, "duplicated": loop.duplicated}, result))
    print(summary.table())
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        doc = {"scenarios": reports, "summary": summary.rows()}
        args.json.write_text(json.dumps(doc, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return 0 if summary.passed else 1
