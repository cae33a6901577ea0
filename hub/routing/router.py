"""Pick recipients for an alert tier from the duty roster, and decide whether it is silenced or inhibited."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from commhub.community import Community, Staff
from hub.routing.spec import Inhibit, Route, RoutingSpec, Window

_DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def matches(matchers: Mapping[str, Any], labels: Mapping[str, Any]) -> bool:
    """Whether labels satisfy every matcher (a value, or a list of allowed values)."""
    for k, want in matchers.items():
        have = labels.get(k)
        if isinstance(want, list):
            if have not in want:
                return False
        elif have != want:
            return False
    return True


@dataclass(slots=True)
class Decision:
    """The route chosen for one tier of one alert."""

    tier: int
    recipients: list[dict[str, str]]
    reason: str
    group: str
    suppressed: str | None = None
    last_tier: bool = True
    deadline_s: float | None = None
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """The JSON kept with the alert and sent in notices."""
        return {"tier": self.tier, "recipients": self.recipients, "reason": self.reason, "group": self.group,
                "suppressed": self.suppressed}


class Router:
    """Routes, deadlines, silences, maintenance windows and inhibition from the routing spec."""

    def __init__(self, spec: RoutingSpec, community: Community) -> None:
        self.spec = spec
        self.community = community
        self.tz = ZoneInfo(community.site.timezone)
        self.residents = {r.ref: r for r in community.residents}

    def route_for(self, labels: Mapping[str, Any]) -> tuple[int, Route]:
        """The first route whose matchers accept the labels."""
        for i, r in enumerate(self.spec.routes):
            if matches(r.match, labels):
                return i, r
        return len(self.spec.routes) - 1, self.spec.routes[-1]

    def decide(self, labels: Mapping[str, Any], subject: str, tier: int, now: float,
               silences: Iterable[Window] = (), active: Iterable[Mapping[str, Any]] = ()) -> Decision:
        """Recipients of one tier, why, and whether a silence, maintenance window or inhibition applies."""
        idx, route = self.route_for(labels)
        tier = min(tier, len(route.tiers) - 1)
        local = datetime.fromtimestamp(now, UTC).astimezone(self.tz)
        recipients: list[dict[str, str]] = []
        why: list[str] = []
        skipped: list[str] = []
        while True:
            recipients, why = self._tier(route.tiers[tier], labels, subject, local)
            if recipients or tier >= len(route.tiers) - 1:
                break
            # A tier that resolves to nobody (a building-level fire has no household) must not cost a deadline.
            skipped.append(f"tier {tier} resolves to nobody ({'; '.join(why)}), skipped")
            tier += 1
        if not recipients:
            got, note = self._resolve("control_room", labels, subject, local)
            recipients.extend(got)
            why.append("nobody found for this tier, so " + note)
        why = [*skipped, *why]
        match = ", ".join(f"{k}={v}" for k, v in route.match.items()) or "default"
        reason = f"route {idx} ({match}) tier {tier}/{len(route.tiers) - 1}: " + "; ".join(why)
        group = "|".join(f"{k}={labels.get(k)}" for k in self.spec.group_by)
        suppressed = self.suppression(labels, now, silences, active)
        deadline = route.deadline_s or self.deadline(str(labels["severity"]), now)
        return Decision(tier, recipients, reason, group, suppressed, tier >= len(route.tiers) - 1, deadline)

    def _tier(self, roles: tuple[str, ...], labels: Mapping[str, Any], subject: str,
              local: datetime) -> tuple[list[dict[str, str]], list[str]]:
        recipients: list[dict[str, str]] = []
        why: list[str] = []
        for role in roles:
            got, note = self._resolve(role, labels, subject, local)
            recipients.extend(got)
            why.append(note)
        return recipients, why

    def _resolve(self, role: str, labels: Mapping[str, Any], subject: str,
                 local: datetime) -> tuple[list[dict[str, str]], str]:
        if role == "household":
            if labels.get("building") and labels.get("unit"):
                return [{"role": role, "id": f"{labels['building']}/{labels['unit']}"}], "household of the unit"
            return [], "household: no unit known"
        if role == "emergency_contact":
            resident = self.residents.get(subject.split(":", 1)[-1])
            if resident and resident.emergency_contact:
                return [{"role": role, "id": resident.emergency_contact}], "the resident's emergency contact"
            return [], "emergency contact: none on file"
        grid = str(labels.get("grid"))
        staff = [s for s in self.community.staff if s.role == role and self._serves(s, grid)]
        if not staff:
            return [], f"{role}: nobody configured for {grid}"
        on = [s for s in staff if s.on_duty(local)]
        if on:
            return [{"role": role, "id": s.id} for s in on], f"{role} on duty: {', '.join(s.id for s in on)}"
        return ([{"role": role, "id": s.id} for s in staff],
                f"{role}: nobody on duty at {local:%a %H:%M}, so all of: {', '.join(s.id for s in staff)}")

    def _serves(self, s: Staff, grid: str) -> bool:
        if s.role == "police_liaison":
            return s.jurisdiction == self.community.site.jurisdiction
        return s.covers_grid(grid)

    def deadline(self, severity: str, now: float) -> float:
        """Seconds to acknowledge: fixed per severity, or one working day for low."""
        if severity in self.spec.deadlines_s:
            return float(self.spec.deadlines_s[severity])
        local = datetime.fromtimestamp(now, UTC).astimezone(self.tz)
        nxt = local + timedelta(days=1)
        while _DAYS[nxt.weekday()] not in self.spec.working_day.days:
            nxt += timedelta(days=1)
        return (nxt - local).total_seconds()

    def suppression(self, labels: Mapping[str, Any], now: float, silences: Iterable[Window] = (),
                    active: Iterable[Mapping[str, Any]] = ()) -> str | None:
        """The id of the silence, maintenance window or inhibition that keeps this alert quiet, if any."""
        local = datetime.fromtimestamp(now, UTC).astimezone(self.tz)
        for w in (*self.spec.silences, *silences):
            if _window_on(w, now, local) and matches(w.matchers, labels):
                return f"silence:{w.id}"
        for w in self.spec.maintenance:
            if _window_on(w, now, local) and matches(w.matchers, labels):
                return f"maintenance:{w.id}"
        active = list(active)
        for i, inh in enumerate(self.spec.inhibit):
            if matches(inh.target, labels) and any(self._inhibits(inh, src, labels) for src in active):
                return f"inhibit:{i}"
        return None

    def inhibitors(self) -> list[Inhibit]:
        """The inhibition rules (the store looks up their active sources)."""
        return list(self.spec.inhibit)

    @staticmethod
    def _inhibits(inh: Inhibit, src: Mapping[str, Any], labels: Mapping[str, Any]) -> bool:
        if src.get("rule") == labels.get("rule") and src.get("subject") == labels.get("subject"):
            return False
        return matches(inh.source, src) and all(src.get(k) == labels.get(k) and src.get(k) is not None
                                                for k in inh.equal)


def _window_on(w: Window, now: float, local: datetime) -> bool:
    if w.weekly:
        return any(s.covers(local) for s in w.weekly)
    start = w.starts_at if w.starts_at is not None else float("-inf")
    end = w.ends_at if w.ends_at is not None else float("inf")
    return start <= now < end
