"""`commhub alerts list|show|ack|resolve|false-alarm|comment|assign|escalate` on the alert store."""

from __future__ import annotations

import argparse

from api.commands.common import add_common, emit, guarded, operator_session, table, when
from api.services.alerts import AlertFilter

ACTIONS = {"ack": "acknowledge", "resolve": "resolve", "false-alarm": "false_alarm", "comment": "comment",
           "assign": "assign", "escalate": "escalate"}
COLS = ["id", "severity", "state", "code", "grid", "building", "subject", "opened", "count"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Subcommands and options."""
    sub = parser.add_subparsers(dest="op", required=True, metavar="OP")
    p = sub.add_parser("list", help="list alerts")
    add_common(p)
    for name in ("grid", "building", "layer", "code", "severity", "state"):
        p.add_argument(f"--{name}", action="append", default=[], help=f"filter by {name} (repeatable)")
    p.add_argument("--sort", default="-id", help="id, opened_at, updated_at or severity; '-' for descending")
    p.add_argument("--limit", type=int, default=50)
    p.add_argument("--cursor", default=None, help="next_cursor of the previous page")
    p = sub.add_parser("show", help="one alert with its timeline")
    add_common(p)
    p.add_argument("id", type=int)
    for op in ACTIONS:
        p = sub.add_parser(op, help=f"{ACTIONS[op].replace('_', ' ')} an alert")
        add_common(p)
        p.add_argument("id", type=int)
        if op == "assign":
            p.add_argument("assignee")
        p.add_argument("-m", "--note", default="", help="note kept with the transition")


def run(args: argparse.Namespace) -> int:
    """Run one operation; every run leaves one audit row."""
    with operator_session(args) as (s, who):
        if args.op == "list":
            def do_list() -> int:
                f = AlertFilter(grid=args.grid, building=args.building, layer=args.layer, code=args.code,
                                severity=args.severity, state=args.state)
                rows, nxt = s.alerts.search(who, f, args.sort.lstrip("-"), args.sort.startswith("-"),
                                          max(1, min(args.limit, 10000)), args.cursor)
                shown = [{**r, "opened": when(r["opened_at"])} for r in rows]
                emit(args, {"items": rows, "next_cursor": nxt},
                     table(shown, COLS) + (f"\nnext page: --cursor {nxt}" if nxt else ""))
                return 0
            return guarded(s, who, "alerts.list", "alerts", do_list)
        if args.op == "show":
            def do_show() -> int:
                a = s.alerts.get(who, args.id)
                lines = [f"alert {a['id']}  {a['severity']}  {a['state']}  {a['code']}  ({a['rule']})",
                         f"  where    {a['site']}/{a['grid']}/{a['building'] or '-'}/{a['unit'] or '-'}  "
                         f"device {a['device_id'] or '-'}",
                         f"  subject  {a['subject']}   count {a['count']}   incident {a['incident'] or '-'}",
                         f"  route    tier {a['route'].get('tier')}: {a['route'].get('reason', '')}",
                         f"  thresholds {a['thresholds']}", "  timeline"]
                lines += [f"    {when(t['at'])}  {t['transition']:<16} {t['from_state'] or '-':>12} -> "
                          f"{t['to_state']:<12} by {t['by']}  {t['note']}" for t in a["timeline"]]
                lines += ["  events"] + [f"    {e['ts']}  {e['device_id']}  {e['type']}  seq {e['seq']}"
                                         for e in a["events"]]
                emit(args, a, "\n".join(lines))
                return 0
            return guarded(s, who, "alerts.show", f"alert:{args.id}", do_show)
        action = ACTIONS[args.op]

        def do_act() -> int:
            n = s.alerts.act(who, args.id, action, args.note, getattr(args, "assignee", None))
            emit(args, n.model_dump(mode="json"),
                 f"alert {n.alert_id}: {n.transition} -> {n.state} (notice {n.notice_id})")
            return 0
        return guarded(s, who, f"alerts.{action}", f"alert:{args.id}", do_act)
