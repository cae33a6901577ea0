"""`commhub agent <access|facility|camera> --config FILE ...`: run one edge agent until SIGINT/SIGTERM."""

from __future__ import annotations

import argparse
import importlib
import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any, Protocol

from commhub.config import load
from edge_agents.base.serve import serve

log = logging.getLogger(__name__)

CAMERA_CLI = "edge_agents.camera.cli"


class _Runnable(Protocol):
    base: Any

    def start(self) -> None: ...

    def stop(self) -> None: ...


class _LazyParser(argparse.ArgumentParser):
    """A sub-parser whose arguments are added only when it is chosen (so `agent access` never loads OpenCV)."""

    loader: Callable[[argparse.ArgumentParser], None] | None = None

    def parse_known_args(self, args: Sequence[str] | None = None,  # type: ignore[override]
                         namespace: argparse.Namespace | None = None) -> tuple[argparse.Namespace, list[str]]:
        if self.loader is not None:
            loader, self.loader = self.loader, None
            loader(self)
        return super().parse_known_args(args, namespace)


def _load_camera(parser: argparse.ArgumentParser) -> None:
    try:
        module = importlib.import_module(CAMERA_CLI)
    except ModuleNotFoundError as e:
        # Only "the camera module (or its package) is not there"; a missing dependency inside it is a real error.
        if not e.name or not (e.name == CAMERA_CLI or CAMERA_CLI.startswith(e.name + ".")):
            raise
        parser.error(f"the camera agent is not available in this build ({CAMERA_CLI} is missing)")
    module.add_arguments(parser)
    parser.set_defaults(camera_run=module.run)


def _common(p: argparse.ArgumentParser, kind: str) -> None:
    p.add_argument("--config", required=True, type=Path, help="the commhub YAML config (with community:)")
    p.add_argument("--name", default=kind, help=f"agent name: MQTT client id and state dir (default {kind})")
    p.add_argument("--simulate", action="store_true", help="run the simulated adapter for every device")
    p.add_argument("--state-dir", type=Path, help="override <agent.state_dir>/<name>")
    p.add_argument("--duration", type=float, help="stop after this many seconds (default: until SIGINT/SIGTERM)")
    p.add_argument("--seed", type=int, help="seed of the simulated adapter")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the agent kind and its options."""
    sub = parser.add_subparsers(dest="agent_kind", required=True, metavar="KIND", parser_class=_LazyParser)
    access = sub.add_parser("access", help="door controllers, face gates, turnstiles")
    _common(access, "access")
    access.add_argument("--no-http", action="store_true", help="do not serve the controller push endpoint")
    access.add_argument("--http-port", type=int, help="override agent.access.http.port")
    facility = sub.add_parser("facility", help="smoke, gas, leak, hydrant, fire door, manhole, elevator, ...")
    _common(facility, "facility")
    facility.add_argument("--no-modbus", action="store_true", help="do not poll the configured Modbus servers")
    camera = sub.add_parser("camera", help="OpenCV camera analytics (options: commhub agent camera --help)")
    assert isinstance(camera, _LazyParser)
    camera.loader = _load_camera


def _build(args: argparse.Namespace) -> _Runnable:
    config = load(args.config)
    if args.agent_kind == "access":
        from edge_agents.access.agent import AccessAgent
        if args.http_port is not None:
            access = config.agent.access
            http = access.http.model_copy(update={"port": args.http_port})
            agent_cfg = config.agent.model_copy(update={"access": access.model_copy(update={"http": http})})
            config = config.model_copy(update={"agent": agent_cfg})
        return AccessAgent(config, args.name, simulate=args.simulate, http=False if args.no_http else None,
                           state_dir=args.state_dir, seed=args.seed)
    from edge_agents.facility.agent import FacilityAgent
    return FacilityAgent(config, args.name, simulate=args.simulate, modbus=not args.no_modbus,
                         state_dir=args.state_dir, seed=args.seed)


def run(args: argparse.Namespace) -> int:
    """Start the agent, wait for a signal (or --duration), stop it and print its counters."""
    if args.agent_kind == "camera":
        return int(args.camera_run(args) or 0)
    agent = _build(args)
    rc = serve(agent, f"{args.agent_kind} agent", args.duration)
    if rc:
        return rc
    if agent.base is not None:
        print(json.dumps({"agent": args.name, **asdict(agent.base.stats)}))
    return 0
