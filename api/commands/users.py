"""`commhub users add|list|disable|enable|reset-password|api-key` on the accounts in SQL."""

from __future__ import annotations

import argparse
import getpass
import secrets
import sys

from api.commands.common import add_common, emit, guarded, operator_session, table, when
from api.schemas import ROLES
from api.services.errors import Invalid


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Subcommands and options."""
    sub = parser.add_subparsers(dest="op", required=True, metavar="OP")
    p = sub.add_parser("add", help="add an account")
    add_common(p)
    p.add_argument("username")
    p.add_argument("--role", required=True, choices=ROLES)
    p.add_argument("--staff-id", default=None, help="roster id (required for grid_worker: their cells)")
    p.add_argument("--building", action="append", default=None, help="property: a building they manage")
    p.add_argument("--password", default=None, help="default: prompt, or generate with --generate")
    p.add_argument("--generate", action="store_true", help="generate a password and print it once")
    p = sub.add_parser("list", help="list accounts")
    add_common(p)
    for op in ("disable", "enable"):
        p = sub.add_parser(op, help=f"{op} an account")
        add_common(p)
        p.add_argument("username")
    p = sub.add_parser("reset-password", help="set a new password (ends the account's logins)")
    add_common(p)
    p.add_argument("username")
    p.add_argument("--password", default=None)
    p.add_argument("--generate", action="store_true")
    p = sub.add_parser("api-key", help="create an API key for an account (a machine)")
    add_common(p)
    p.add_argument("username")
    p.add_argument("--name", required=True, help="what uses it, e.g. 'video wall'")


def _password(args: argparse.Namespace) -> tuple[str, bool]:
    if args.password:
        return args.password, False
    if args.generate or not sys.stdin.isatty():
        return secrets.token_urlsafe(12), True
    pw = getpass.getpass("password: ")
    if pw != getpass.getpass("again: "):
        raise Invalid("the passwords differ")
    return pw, False


def run(args: argparse.Namespace) -> int:
    """Run one operation; every run leaves one audit row."""
    with operator_session(args) as (s, who):
        if args.op == "add":
            def do_add() -> int:
                pw, shown = _password(args)
                if len(pw) < 8:
                    raise Invalid("a password needs at least 8 characters")
                row = s.accounts.add(args.username, args.role, pw, args.staff_id, args.building)
                out = {k: v for k, v in row.items() if k != "password_hash"}
                emit(args, {**out, **({"password": pw} if shown else {})},
                     f"user {args.username} ({args.role}) added" + (f"; password: {pw}" if shown else ""))
                return 0
            return guarded(s, who, "users.add", f"user:{args.username}", do_add)
        if args.op == "list":
            def do_list() -> int:
                rows = [{k: v for k, v in r.items() if k != "password_hash"} for r in s.accounts.users()]
                shown = [{**r, "created": when(r["created_at"])} for r in rows]
                emit(args, rows, table(shown, ["username", "role", "staff_id", "buildings", "disabled", "created"]))
                return 0
            return guarded(s, who, "users.list", "users", do_list)
        if args.op in ("disable", "enable"):
            def do_toggle() -> int:
                s.accounts.set_disabled(args.username, args.op == "disable")
                emit(args, {"username": args.username, "disabled": args.op == "disable"},
                     f"user {args.username} {args.op}d")
                return 0
            return guarded(s, who, f"users.{args.op}", f"user:{args.username}", do_toggle)
        if args.op == "reset-password":
            def do_reset() -> int:
                pw, shown = _password(args)
                if len(pw) < 8:
                    raise Invalid("a password needs at least 8 characters")
                s.accounts.reset_password(args.username, pw)
                emit(args, {"username": args.username, **({"password": pw} if shown else {})},
                     f"password of {args.username} reset" + (f"; new password: {pw}" if shown else ""))
                return 0
            return guarded(s, who, "users.reset_password", f"user:{args.username}", do_reset)

        def do_key() -> int:
            row = s.accounts.add_key(args.username, args.name)
            emit(args, {k: v for k, v in row.items() if k != "key_hash"},
                 f"API key {row['id']} for {args.username}: {row['key']}  (shown once; send as X-API-Key)")
            return 0
        return guarded(s, who, "apikeys.add", f"user:{args.username}", do_key)
