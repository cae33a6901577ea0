"""Jurisdiction: which cells, buildings and layers a principal may read, as a value the queries carry."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from commhub.community import Community


class NotFound(LookupError):
    """Absent or outside the caller's jurisdiction: both answer 404, so nothing confirms it exists."""


@dataclass(frozen=True, slots=True)
class Scope:
    """What one principal may read; None means no restriction on that axis."""

    grids: frozenset[str] | None = None
    buildings: frozenset[str] | None = None
    layers: frozenset[str] | None = None

    @classmethod
    def everything(cls) -> Scope:
        """Every cell, building and layer (control room, police liaison)."""
        return cls()

    @classmethod
    def nothing(cls) -> Scope:
        """No place at all."""
        return cls(grids=frozenset())

    @classmethod
    def for_role(cls, role: str, grids: Iterable[str] = (), buildings: Iterable[str] = ()) -> Scope:
        """The scope of a role and its assignment (the roles of issue 8)."""
        g, b = frozenset(grids), frozenset(buildings)
        if role in ("security_staff", "police_liaison"):
            return cls.everything()
        if role == "grid_worker":
            # A grid worker without cells sees nothing rather than everything.
            return cls(grids=g) if g else cls.nothing()
        if role == "property":
            # Property sees the facility layer of its buildings; with none assigned, of its cells or the site.
            return cls(grids=g or None, buildings=b or None, layers=frozenset({"facility"}))
        return cls.nothing()

    @property
    def empty(self) -> bool:
        """Whether nothing at all is visible."""
        return any(s is not None and not s for s in (self.grids, self.buildings, self.layers))

    def allows(self, grid: str | None, building: str | None = None, layer: str | None = None) -> bool:
        """Whether a thing at this place and layer is visible; unknown parts of a restricted axis are not."""
        if self.empty:
            return False
        if self.grids is not None and grid not in self.grids:
            return False
        if self.buildings is not None and building not in self.buildings:
            return False
        return self.layers is None or layer in self.layers

    def check(self, grid: str | None, building: str | None = None, layer: str | None = None) -> None:
        """Raise NotFound unless visible."""
        if not self.allows(grid, building, layer):
            raise NotFound("not found")


def check_place(community: Community, scope: Scope, grid: str | None, building: str | None) -> None:
    """A requested grid/building must exist, agree with each other and be in scope; else NotFound."""
    grids = {g.id: g for g in community.grids}
    if grid is not None:
        if grid not in grids:
            raise NotFound(f"no grid cell {grid!r}")
        if scope.grids is not None and grid not in scope.grids:
            raise NotFound(f"no grid cell {grid!r}")
    if building is not None:
        owner = next((g.id for g in community.grids for b in g.buildings if b.id == building), None)
        if owner is None or (grid is not None and owner != grid):
            raise NotFound(f"no building {building!r}")
        if (scope.grids is not None and owner not in scope.grids) or \
                (scope.buildings is not None and building not in scope.buildings):
            raise NotFound(f"no building {building!r}")
