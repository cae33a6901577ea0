"""`commhub silence add|list|expire` on the alert store."""

from __future__ import annotations

import argparse
import time

from api.commands.common import add_common, emit, guarded, operator_session, table, when
from api.services.errors import Invalid


def _matcher(text: str) -> tuple[str, str]:
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"expected label=value, got {text!r}")
    k, v = text.split("=", 1)
    return k.strip(), v.strip()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Subcommands and options."""
    sub = parser.add_subparsers(dest="op", required=True, metavar="OP")
    p = sub.add_parser("add", help="add a silence: commhub silence add code=door_forced grid=g1 --duration 2h")
    add_common(p)
    p.add_argument("matchers", nargs="+", type=_matcher, help="label=value (code, rule, layer, severity, grid, ...)")
    p.add_argument("--duration", default="1h", help="how long: 90s, 30m, 2h, 1d")
    p.add_argument("--comment", default="")
    p.add_argument("--maintenance", action="store_true", help="a maintenance window rather than a silence")
    p = sub.add_parser("list", help="list silences")
    add_common(p)
    p.add_argument("--active", action="store_true", help="only those in force now")
    p = sub.add_parser("expire", help="end a silence now")
    add_common(p)
    p.add_argument("id", type=int)


def seconds(text: str) -> float:
    """'90s', '30m', '2h', '1d' or plain seconds."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    try:
        value = float(text[:-1]) * units[text[-1]] if text and text[-1] in units else float(text)
    except ValueError:
        raise Invalid(f"duration {text!r}: use e.g. 90s, 30m, 2h or 1d") from None
    if not 0 < value <= 366 * 86400:
        raise Invalid(f"duration {text!r} must be more than 0 and at most a year")
    return value


COLS = ["id", "kind", "active", "matchers", "starts", "ends", "created_by", "comment"]


def run(args: argparse.Namespace) -> int:
    """Run one operation; every run leaves one audit row."""
    with operator_session(args) as (s, who):
        if args.op == "add":
            def do_add() -> int:
                now = time.time()
                row = s.alerts.add_silence(who, dict(args.matchers), now, now + seconds(args.duration),
                                           args.comment, "maintenance" if args.maintenance else "silence")
                emit(args, row, f"silence {row['id']} until {when(row['ends_at'])}")
                return 0
            return guarded(s, who, "silences.add", "silence", do_add)
        if args.op == "list":
            def do_list() -> int:
                rows = s.alerts.silences(args.active)
                shown = [{**r, "starts": when(r["starts_at"]), "ends": when(r["ends_at"])} for r in rows]
                emit(args, rows, table(shown, COLS))
                return 0
            return guarded(s, who, "silences.list", "silences", do_list)

        def do_expire() -> int:
            row = s.alerts.expire_silence(args.id)
            emit(args, row, f"silence {row['id']} expired")
            return 0
        return guarded(s, who, "silences.expire", f"silence:{args.id}", do_expire)
