"""Jurisdiction checks on places named in a request (the Principal of api.services.scope carries the reach)."""

from __future__ import annotations

from api.services.errors import NotFound
from api.services.scope import Principal
from commhub.community import Community


def visible(who: Principal) -> bool:
    """Whether the caller can see anything at all (an empty set of cells or buildings sees nothing)."""
    return not any(s is not None and not s for s in (who.grids, who.buildings, who.layers))


def check_place(community: Community, who: Principal, grid: str | None, building: str | None) -> None:
    """A requested grid/building must exist, agree with each other and be in the caller's reach; else 404."""
    if grid is not None and (all(g.id != grid for g in community.grids)
                             or (who.grids is not None and grid not in who.grids)):
        raise NotFound(f"no grid cell {grid!r}")
    if building is not None:
        owner = next((g.id for g in community.grids for b in g.buildings if b.id == building), None)
        if owner is None or (grid is not None and owner != grid) \
                or (who.grids is not None and owner not in who.grids) \
                or (who.buildings is not None and building not in who.buildings):
            raise NotFound(f"no building {building!r}")
