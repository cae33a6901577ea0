"""`commhub coverage [--json]`: the coverage report by grid cell, from the store and InfluxDB directly."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime

from api.commands.common import add_common, emit, operator_session
from api.services.errors import ServiceError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """--config, --json and --grid."""
    add_common(parser)
    parser.add_argument("--grid", action="append", default=[], help="only these cells (repeatable)")


def run(args: argparse.Namespace) -> int:
    """Print the report; 7 when InfluxDB is unreachable."""
    with operator_session(args) as (s, who):
        try:
            s.data.reader.start()
            cells = [c for c in s.data.devices.coverage(who, datetime.now(UTC))
                     if not args.grid or c.grid in args.grid]
        except ServiceError as e:
            s.audit.append(who.username, who.role, "coverage.read", "coverage", f"{e.status}: {e}", "local")
            print(f"coverage: {e}")
            return 7
        finally:
            s.data.reader.stop()
        s.audit.append(who.username, who.role, "coverage.read", "coverage", f"ok: {len(cells)} cells", "local")
    lines = []
    for c in cells:
        lines.append(f"{c.grid} {c.name}: {c.online_pct if c.online_pct is not None else '-'}% online, "
                     f"patrol checkpoints {len(c.patrol_checkpoints)}, on duty: "
                     f"{', '.join(c.grid_workers_on_duty) or 'nobody'}")
        for lc in c.layers:
            kinds = ", ".join(f"{k} {n}" for k, n in sorted(lc.devices.items())) or "nothing"
            lines.append(f"  {lc.layer:<9} {lc.online}/{lc.total} online, {lc.open_alerts} open alerts: {kinds}")
        lines += [f"  gap: {g}" for g in c.gaps]
    emit(args, [c.model_dump() for c in cells], "\n".join(lines))
    return 0
