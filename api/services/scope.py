"""Who the caller is (Principal) and the jurisdiction it implies, as SQL conditions and as a predicate."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy import ColumnElement, Table, false

from commhub.community import Community

AuthKind = Literal["user", "api_key", "cli"]

# Which alert actions each role may take (API names); reads are governed by scope alone.
ACTIONS: dict[str, frozenset[str]] = {
    "security_staff": frozenset({"acknowledge", "assign", "comment", "resolve", "false_alarm", "escalate"}),
    "grid_worker": frozenset({"acknowledge", "assign", "comment", "resolve", "false_alarm", "escalate"}),
    "property": frozenset({"acknowledge", "assign", "comment", "resolve", "false_alarm", "escalate"}),
    "police_liaison": frozenset({"comment", "escalate"}),
    "admin": frozenset(),
}


@dataclass(frozen=True)
class Principal:
    """An authenticated caller: role and jurisdiction (None = every cell / building / layer)."""

    username: str
    role: str
    grids: frozenset[str] | None
    buildings: frozenset[str] | None
    auth: AuthKind = "user"

    @property
    def layers(self) -> frozenset[str] | None:
        """Property management sees the facility layer only."""
        return frozenset({"facility"}) if self.role == "property" else None

    @property
    def sees_unblurred(self) -> bool:
        """Only the police liaison sees (and exports) unblurred evidence."""
        return self.role == "police_liaison"

    def may(self, action: str) -> bool:
        """Whether the role may take this alert action."""
        return action in ACTIONS.get(self.role, frozenset())

    def covers(self, grid: str | None, building: str | None, layer: str | None) -> bool:
        """Whether a thing at this place and layer is in the caller's jurisdiction (for streams)."""
        if self.grids is not None and grid not in self.grids:
            return False
        if self.buildings is not None and building not in self.buildings:
            return False
        return self.layers is None or layer in self.layers

    def where(self, table: Table, grid: str = "grid", building: str = "building",
              layer: str | None = "layer") -> list[ColumnElement[bool]]:
        """The jurisdiction as WHERE conditions on a table with grid / building / layer columns."""
        cond: list[ColumnElement[bool]] = []
        if self.grids is not None:
            cond.append(table.c[grid].in_(sorted(self.grids)) if self.grids else false())
        if self.buildings is not None:
            cond.append(table.c[building].in_(sorted(self.buildings)) if self.buildings else false())
        if layer is not None and self.layers is not None:
            cond.append(table.c[layer].in_(sorted(self.layers)))
        return cond


SYSTEM = Principal(username="cli", role="security_staff", grids=None, buildings=None, auth="cli")


def principal_for(user: Mapping[str, Any], community: Community, auth: AuthKind = "user") -> Principal:
    """The principal of an account: a grid worker's cells come from the roster entry named by staff_id."""
    role = str(user["role"])
    staff = next((s for s in community.staff if s.id == user.get("staff_id")), None)
    grids: frozenset[str] | None = None
    buildings: frozenset[str] | None = None
    if role == "grid_worker":
        # No roster entry, or one that is not a grid worker: no cells at all, never every cell.
        grids = frozenset(staff.grids) if staff is not None and staff.role == "grid_worker" else frozenset()
    elif role == "property":
        if user.get("buildings") is not None:
            buildings = frozenset(user["buildings"])
        elif staff is not None and staff.grids:
            buildings = frozenset(b.id for g in community.grids if g.id in staff.grids for b in g.buildings)
    return Principal(username=str(user["username"]), role=role, grids=grids, buildings=buildings, auth=auth)
