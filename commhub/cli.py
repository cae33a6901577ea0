"""The `commhub` command: each subcommand lives in the module that owns it and is imported lazily."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

# name -> (module with add_arguments(parser) and run(args) -> int, one-line help)
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "up": ("commhub.up", "start broker, InfluxDB, hub and a simulated community on loopback"),
    "hub": ("hub.cli", "run one hub worker"),
    "agent": ("edge_agents.cli", "run an edge agent (access, facility, camera)"),
    "simulate": ("simulators.cli", "simulate a community's devices"),
    "scenario": ("simulators.scenario_cli", "run incident scenarios against a running hub"),
    "bench": ("bench.cli", "run a benchmark: ingest, alerts, camera, simulate, api, scale"),
    "api": ("api.cli", "serve the HTTP API and web console"),
    "mqtt": ("commhub.provision", "broker accounts: `mqtt provision` writes the password file, ACL and secrets"),
    "certs": ("commhub.certs", "TLS: `certs init` makes the CA, broker and per-account client certificates"),
    "alerts": ("api.commands.alerts", "list, show and act on alerts (on the store, like amtool)"),
    "silence": ("api.commands.silence", "add, list and expire silences"),
    "users": ("api.commands.users", "operator accounts: add, list, disable, reset-password, api-key"),
    "audit": ("api.commands.audit", "verify or show the audit log"),
    "evidence": ("api.commands.evidence", "verify an evidence package (hashes and signature)"),
    "coverage": ("api.commands.coverage", "coverage by grid cell: layers, devices online, alerts and gaps"),
}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="commhub", description="Smart-community sensor and security hub.")
    parser.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING or ERROR")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    # Only the chosen subcommand's module is imported, so `commhub hub` never loads OpenCV.
    chosen = next((a for a in argv if a in SUBCOMMANDS), None)
    modules = {}
    for name, (module, help_text) in SUBCOMMANDS.items():
        p = sub.add_parser(name, help=help_text)
        if name == chosen:
            try:
                modules[name] = importlib.import_module(module)
            except ModuleNotFoundError as e:
                if e.name != module:
                    raise
                parser.error(f"'{name}' is not available in this build ({module} is missing)")
            modules[name].add_arguments(p)
    args = parser.parse_args(argv)
    # Imported only now: building the config models is most of what `commhub --help` would otherwise cost.
    from commhub.config import ConfigError
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("httpx", "httpcore", "urllib3"):  # one line per request otherwise
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLogger().level))
    try:
        return int(modules[args.command].run(args) or 0)
    except ConfigError as e:
        print(f"configuration error:\n{e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
