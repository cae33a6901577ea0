"""The runner's output: a progress bar while running, a table at the end, and the JSON report."""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from typing import Any, TextIO

from simulators.scenario.matching import Score

BAR = 30


def _clock(ts: float | None) -> str:
    if ts is None:
        return "-"
    return datetime.fromtimestamp(ts, UTC).strftime("%m-%d %H:%M:%S")


def _where(where: dict[str, str]) -> str:
    return " ".join(f"{k}={v}" for k, v in where.items()) or "-"


class Progress:
    """A one-line progress bar on a terminal (redrawn in place), or a line now and then elsewhere."""

    def __init__(self, name: str, total_s: float, out: TextIO = sys.stderr) -> None:
        self.name = name
        self.total_s = total_s
        self.out = out
        self.tty = out.isatty()
        self._last_pct = -100

    def update(self, elapsed_s: float, published: int, alerts: int) -> None:
        """Draw the state: simulated seconds done, messages published, alerts seen."""
        frac = 0.0 if self.total_s <= 0 else max(0.0, min(1.0, elapsed_s / self.total_s))
        pct = int(frac * 100)
        line = (f"{self.name} [{'#' * int(frac * BAR):<{BAR}}] {pct:3d}%  "
                f"sim {elapsed_s / 60:,.1f}/{self.total_s / 60:,.1f} min  msgs {published:,}  alerts {alerts}")
        if self.tty:
            self.out.write("\r" + line)
            self.out.flush()
        elif pct >= self._last_pct + 10 or (pct == 100 and self._last_pct != 100):
            self.out.write(line + "\n")
            self.out.flush()
            self._last_pct = pct

    def done(self) -> None:
        """End the bar's line."""
        if self.tty:
            self.out.write("\n")
            self.out.flush()


def table(name: str, score: Score) -> str:
    """The verdicts as a fixed-width table."""
    rows = [("EXPECTED", "WHERE", "STATUS", "LATE (s)", "DEADLINE (s)", "RAISED (UTC)", "ALERT")]
    for e in score.expected:
        rows.append((e.code, _where(e.where), e.status.upper().replace("_", " "),
                     "-" if e.late_s is None else f"{e.late_s:,.1f}", f"{e.deadline_s:,.0f}", _clock(e.raised_at),
                     "-" if e.alert_id is None else str(e.alert_id)))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = [f"scenario {name}: {'PASSED' if score.passed else 'FAILED'}"]
    if score.expected:
        lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    else:
        lines.append("no alert expected")
    counted = [u for u in score.unexpected if u.in_scope]
    ignored = [u for u in score.unexpected if not u.in_scope]
    lines.append(f"unexpected alerts: {len(counted) or 'none'}")
    for u in counted:
        lines.append(f"  {u.code} [{u.severity}] {_where(u.where)} raised {_clock(u.raised_at)} alert {u.alert_id}")
    if ignored:
        by_code: dict[str, int] = {}
        for u in ignored:
            by_code[u.code] = by_code.get(u.code, 0) + 1
        summary = ", ".join(f"{code} x{n}" for code, n in sorted(by_code.items()))
        lines.append(f"not counted (about devices this scenario does not simulate, or allowed): {summary}")
    return "\n".join(lines)


def as_json(name: str, meta: dict[str, Any], score: Score) -> dict[str, Any]:
    """The JSON report of one run."""
    return {"scenario": name, **meta, **score.to_dict()}
