"""The runner's output: a progress bar while running, a table at the end, and the JSON report."""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from typing import Any, TextIO

from simulators.scenario.matching import Score
from simulators.scenario.spec import Scenario

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


class Summary:
    """Figures over many scenarios by incident type: recall on time (hits) and false alerts (near misses)."""

    def __init__(self) -> None:
        self.by: dict[str, dict[str, int]] = {}

    def add(self, sc: Scenario, score: Score) -> None:
        """Count one scored scenario under its type (gen_<type>_<hit|near>_..., else its name)."""
        parts = sc.name.split("_")
        kind = sc.name
        if parts[0] == "gen" and ("hit" in parts or "near" in parts):
            cut = parts.index("hit") if "hit" in parts else parts.index("near")
            kind = "_".join(parts[1:cut])
        row = self.by.setdefault(kind, {"hits": 0, "on_time": 0, "late": 0, "missed": 0, "misrouted": 0,
                                        "quiet": 0, "false_alerts": 0, "scenarios": 0})
        row["scenarios"] += 1
        if sc.expect:
            row["hits"] += len(score.expected)
            for e in score.expected:
                row[e.status] = row.get(e.status, 0) + 1
        else:
            row["quiet"] += 1
        row["false_alerts"] += sum(1 for u in score.unexpected if u.in_scope)

    @property
    def passed(self) -> bool:
        """Every expected alert on time and no false alert anywhere."""
        return all(r["on_time"] == r["hits"] and not r["false_alerts"] for r in self.by.values())

    def rows(self) -> list[dict[str, object]]:
        """One dict per type, with recall on time."""
        return [{"type": k, **v, "recall_on_time": round(v["on_time"] / v["hits"], 3) if v["hits"] else None}
                for k, v in sorted(self.by.items())]

    def table(self) -> str:
        """The figures as a fixed-width table."""
        head = ("TYPE", "SCENARIOS", "EXPECTED", "ON TIME", "LATE", "MISSED", "MISROUTED", "RECALL", "FALSE ALERTS")
        rows = [head] + [(r["type"], str(r["scenarios"]), str(r["hits"]), str(r["on_time"]), str(r["late"]),
                          str(r["missed"]), str(r["misrouted"]),
                          "-" if r["recall_on_time"] is None else f"{r['recall_on_time']:.2f}", str(r["false_alerts"]))
                         for r in self.rows()]
        widths = [max(len(str(r[i])) for r in rows) for i in range(len(head))]
        return "\n".join("  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows)
