"""Scoring: which expected alerts were raised and how late, and which alerts nobody expected."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from simulators.scenario.alerts import ObservedAlert
from simulators.scenario.spec import Expect, Scenario

# An alert opened this long before its incident still counts (clock granularity of the rules' timers).
EARLY_TOLERANCE_S = 2.0


@dataclass
class Expected:
    """The verdict on one expected alert."""

    code: str
    where: dict[str, str]
    reference: float  # simulated epoch seconds the deadline counts from
    deadline_s: float
    status: str = "missed"  # on_time | late | missed | misrouted (raised in time, but not paged/routed as expected)
    alert_id: int | None = None
    raised_at: float | None = None
    late_s: float | None = None


@dataclass
class Unexpected:
    """An alert no expectation accounts for."""

    alert_id: int
    code: str
    severity: str
    where: dict[str, str]
    raised_at: float
    in_scope: bool  # about a simulated device or place (else an artefact of a partial fleet)


@dataclass
class Score:
    """The outcome of one scenario run."""

    expected: list[Expected] = field(default_factory=list)
    unexpected: list[Unexpected] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        """Every expected alert on time and nothing unexpected about the simulated devices."""
        return all(e.status == "on_time" for e in self.expected) and not any(u.in_scope for u in self.unexpected)

    def to_dict(self) -> dict[str, Any]:
        """For JSON."""
        return {"passed": self.passed, "expected": [asdict(e) for e in self.expected],
                "unexpected": [asdict(u) for u in self.unexpected]}


def _where(a: ObservedAlert) -> dict[str, str]:
    return {k: v for k, v in (("grid", a.grid), ("building", a.building), ("unit", a.unit),
                              ("device", a.device_id)) if v}


def _matches(exp: Expect, a: ObservedAlert) -> bool:
    return (a.code == exp.code and (exp.device is None or a.device_id == exp.device)
            and (exp.grid is None or a.grid == exp.grid) and (exp.building is None or a.building == exp.building)
            and (exp.unit is None or a.unit == exp.unit) and (exp.severity is None or a.severity == exp.severity))


def _routed(exp: Expect, seen: Sequence[ObservedAlert]) -> bool:
    """Whether the alert's transitions were paged (or kept quiet) and reached the named recipients."""
    if exp.paged is not None and any((a.suppressed is None) == exp.paged for a in seen) is False:
        return False
    got = {r for a in seen if a.suppressed is None for r in a.recipients}
    roles = {r.split(":", 1)[0] for r in got}
    return all((want in got) if ":" in want else (want in roles) for want in exp.recipients)


def score(scenario: Scenario, observed: Sequence[ObservedAlert], raised_at: Callable[[ObservedAlert], float],
          in_scope: Callable[[ObservedAlert], bool]) -> Score:
    """Match each expectation to the earliest fitting alert raised after its reference time; the rest are unexpected.

    raised_at gives an alert's raise time on the simulated clock; in_scope says whether an alert is about
    something the scenario simulated.
    """
    start = scenario.start_ts
    # One entry per alert id: its first sighting (re-triggers and later transitions are the same alert), and
    # the first sighting of each severity it reached (a step from low to medium is expected on its own).
    first: dict[int, ObservedAlert] = {}
    by_severity: dict[tuple[int, str], ObservedAlert] = {}
    trail: dict[int, list[ObservedAlert]] = {}
    for a in observed:
        first.setdefault(a.alert_id, a)
        by_severity.setdefault((a.alert_id, a.severity), a)
        trail.setdefault(a.alert_id, []).append(a)
    alerts = sorted(first.values(), key=raised_at)
    used: set[int] = set()
    stepped: set[tuple[int, str]] = set()
    out = Score()
    for exp in scenario.expect:
        ref = start + scenario.reference(exp)
        where = {k: v for k, v in (("device", exp.device), ("grid", exp.grid), ("building", exp.building),
                                   ("unit", exp.unit)) if v}
        verdict = Expected(exp.code, where, ref, exp.within)
        candidates = alerts if exp.severity is None else sorted(
            (a for (i, sev), a in by_severity.items() if sev == exp.severity and (i, sev) not in stepped),
            key=raised_at)
        for a in candidates:
            if (exp.severity is None and a.alert_id in used) or not _matches(exp, a):
                continue
            t = raised_at(a)
            if t < ref - EARLY_TOLERANCE_S:
                continue
            late = t - ref > exp.within
            if late and verdict.status == "misrouted":
                break  # raised in time but routed wrongly: a later raise does not make that late
            # Routing is judged on what the alert did by its deadline; an alert raised after it is late, whatever
            # its routing (its trail up to the deadline is empty: it was not misrouted).
            if not late and not _routed(exp, [x for x in trail[a.alert_id] if raised_at(x) <= ref + exp.within]):
                verdict.status = "misrouted"
                continue
            if exp.severity is None:
                used.add(a.alert_id)
            else:
                stepped.add((a.alert_id, a.severity))
                used.add(a.alert_id)
            verdict.alert_id, verdict.raised_at, verdict.late_s = a.alert_id, t, round(t - ref, 3)
            verdict.status = "on_time" if t - ref <= exp.within else "late"
            break
        out.expected.append(verdict)
    for a in alerts:
        if a.alert_id in used:
            continue
        t = raised_at(a)
        if t < start - EARLY_TOLERANCE_S:
            continue  # opened before this run: not ours to judge
        if any(_matches(e, a) and t >= start + scenario.reference(e) - EARLY_TOLERANCE_S for e in scenario.expect):
            continue  # a second alert of an expected kind and place after its incident (e.g. a second rule)
        out.unexpected.append(Unexpected(a.alert_id, a.code, a.severity, _where(a), t,
                                         in_scope(a) and a.code not in scenario.allow))
    return out
