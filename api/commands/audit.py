"""`commhub audit verify|show`: check the hash chain of the audit log, or print its newest rows."""

from __future__ import annotations

import argparse

from api.commands.common import add_common, emit, open_services, table, when


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Subcommands and options."""
    sub = parser.add_subparsers(dest="op", required=True, metavar="OP")
    p = sub.add_parser("verify", help="recompute the chain; exit 1 if any row was edited, deleted or inserted")
    add_common(p)
    p = sub.add_parser("show", help="the newest rows")
    add_common(p)
    p.add_argument("--limit", type=int, default=50)


def run(args: argparse.Namespace) -> int:
    """Verify or show. Verify writes nothing, so checking a copy of a database leaves it as it was."""
    s = open_services(args)
    try:
        if args.op == "verify":
            v = s.audit.verify()
            text = (f"audit log OK: {v.rows} rows, chain intact" if v.ok else
                    f"audit log FAILED: {v.rows} rows, {len(v.problems)} problems\n  " + "\n  ".join(v.problems))
            emit(args, {"ok": v.ok, "rows": v.rows, "problems": v.problems}, text)
            return 0 if v.ok else 1
        rows = s.audit.page(limit=max(1, min(args.limit, 10000)))
        shown = [{**r, "when": when(r["at"])} for r in rows]
        emit(args, rows, table(shown, ["seq", "when", "actor", "role", "action", "target", "result", "address"]))
        return 0
    finally:
        s.stop()
