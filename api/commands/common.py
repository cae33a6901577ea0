"""What the operator commands share: options, opening the services, printing, and auditing each run."""

from __future__ import annotations

import argparse
import getpass
import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy.exc import DBAPIError

from api.services.errors import ServiceError
from api.services.scope import Principal
from api.state import Services
from commhub.config import load

REPO = Path(__file__).resolve().parents[2]
EXIT = {400: 2, 401: 3, 403: 3, 404: 4, 409: 5, 429: 6, 503: 7}


def add_common(parser: argparse.ArgumentParser) -> None:
    """--config and --json."""
    parser.add_argument("--config", default=str(REPO / "configs" / "commhub.yaml"), help="configuration file")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")


def open_services(args: argparse.Namespace) -> Services:
    """The store and friends for this configuration, migrated; no broker connection."""
    s = Services(load(args.config), live=False)
    try:
        s.store.start()
    except DBAPIError as e:
        print(f"error: the database is unavailable ({type(e.orig).__name__})", file=sys.stderr)
        raise SystemExit(7) from None
    return s


@contextmanager
def operator_session(args: argparse.Namespace) -> Iterator[tuple[Services, Principal]]:
    """The services for --config and the local operator, stopped when the command ends."""
    s = open_services(args)
    try:
        yield s, operator()
    finally:
        s.stop()


def operator() -> Principal:
    """The local operator: full jurisdiction, named after the OS account so the audit says who."""
    try:
        name = getpass.getuser()
    except (KeyError, OSError):
        name = "unknown"
    return Principal(username=f"cli:{name}"[:64], role="security_staff", grids=None, buildings=None, auth="cli")


def when(t: float | None) -> str:
    """Epoch seconds as a short UTC time."""
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d %H:%M:%S") if t else "-"


def table(rows: list[dict[str, Any]], cols: list[str]) -> str:
    """A plain aligned table."""
    cells = [[str(c) for c in cols]] + [["-" if r.get(c) is None else str(r.get(c)) for c in cols] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(cols))]
    return "\n".join("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip() for row in cells)


def emit(args: argparse.Namespace, data: Any, text: str) -> None:
    """JSON with --json, else the text."""
    print(json.dumps(data, indent=2, ensure_ascii=False, default=str) if args.json else text)


def guarded(s: Services, who: Principal, action: str, target: str, fn: Callable[[], int]) -> int:
    """Run one command, audit it (exactly one row), and turn a service error into a message and exit code."""
    try:
        code = fn()
    except DBAPIError as e:
        # Nothing can be audited either; the operator sees why.
        print(f"error: the database is unavailable ({type(e.orig).__name__})", file=sys.stderr)
        return 7
    except ServiceError as e:
        s.audit.append(who.username, who.role, action, target, f"{e.status}: {e}"[:300], "cli")
        print(f"error: {e}", file=sys.stderr)
        return EXIT.get(e.status, 1)
    s.audit.append(who.username, who.role, action, target, "ok", "cli")
    return code
