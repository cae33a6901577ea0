"""The community plan as SVG, generated from the community model: grid cells side by side, buildings inside.

The model has no coordinates, so the layout is a schematic: each cell is a column of building blocks in
model order, and devices that belong to no building sit in the cell's common area strip.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from xml.sax.saxutils import escape, quoteattr

from commhub.community import Community

BLOCK_W, BLOCK_H, GAP, PAD, HEAD, COMMON_H = 120, 70, 16, 16, 34, 44


@dataclass(frozen=True)
class Box:
    """One drawn rectangle of the plan."""

    x: float
    y: float
    w: float
    h: float


def _cols(n: int) -> int:
    return max(1, min(3, math.ceil(math.sqrt(n))))


def layout(c: Community) -> tuple[dict[str, Box], dict[str, Box], tuple[float, float]]:
    """Boxes of every cell and building, and the size of the whole plan."""
    cells: dict[str, Box] = {}
    buildings: dict[str, Box] = {}
    x = PAD
    height = 0.0
    for g in c.grids:
        cols = _cols(len(g.buildings))
        rows = math.ceil(len(g.buildings) / cols) if g.buildings else 0
        w = cols * BLOCK_W + (cols + 1) * GAP
        h = HEAD + rows * (BLOCK_H + GAP) + COMMON_H + GAP
        cells[g.id] = Box(x, PAD, w, h)
        for i, b in enumerate(g.buildings):
            r, col = divmod(i, cols)
            buildings[b.id] = Box(x + GAP + col * (BLOCK_W + GAP), PAD + HEAD + r * (BLOCK_H + GAP), BLOCK_W, BLOCK_H)
        x += w + PAD
        height = max(height, h)
    return cells, buildings, (x, height + 2 * PAD)


def render(c: Community, common_label: str) -> str:
    """The plan as one <svg> element; the console's script colours it from live alerts and device status."""
    cells, buildings, (width, height) = layout(c)
    per_building = Counter(d.building for d in c.devices if d.building)
    common = Counter(d.grid for d in c.devices if not d.building)
    parts = [f'<svg class="plan" viewBox="0 0 {width:g} {height:g}" xmlns="http://www.w3.org/2000/svg" '
             f'role="group" aria-label={quoteattr(c.site.name or c.site.id)}>']
    for g in c.grids:
        cb = cells[g.id]
        label = g.name or g.id
        parts.append(f'<g class="cell" data-grid={quoteattr(g.id)}>'
                     f'<rect class="cell-area" x="{cb.x:g}" y="{cb.y:g}" width="{cb.w:g}" height="{cb.h:g}" rx="8"/>'
                     f'<text class="cell-name" x="{cb.x + GAP:g}" y="{cb.y + 22:g}">{escape(label)}</text>'
                     f'<text class="cell-count" data-grid={quoteattr(g.id)} x="{cb.x + cb.w - GAP:g}" '
                     f'y="{cb.y + 22:g}" text-anchor="end"></text>')
        for b in g.buildings:
            bb = buildings[b.id]
            name = b.name or b.id
            parts.append(f'<a class="bldg" href="/board?building={b.id}" data-building={quoteattr(b.id)} '
                         f'data-grid={quoteattr(g.id)} data-name={quoteattr(name)} '
                         f'data-devices="{per_building[b.id]}" aria-label={quoteattr(name)}>'
                         f'<rect x="{bb.x:g}" y="{bb.y:g}" width="{bb.w:g}" height="{bb.h:g}" rx="4"/>'
                         f'<text x="{bb.x + bb.w / 2:g}" y="{bb.y + bb.h / 2 + 5:g}" '
                         f'text-anchor="middle">{escape(name)}</text></a>')
        y = cb.y + cb.h - COMMON_H - GAP / 2
        parts.append(f'<a class="common" href="/board?grid={g.id}" data-grid={quoteattr(g.id)} '
                     f'data-devices="{common[g.id]}" aria-label={quoteattr(f"{label} {common_label}")}>'
                     f'<rect x="{cb.x + GAP:g}" y="{y:g}" width="{cb.w - 2 * GAP:g}" height="{COMMON_H:g}" rx="4"/>'
                     f'<text x="{cb.x + cb.w / 2:g}" y="{y + COMMON_H / 2 + 5:g}" '
                     f'text-anchor="middle">{escape(common_label)}</text></a></g>')
    parts.append("</svg>")
    return "".join(parts)
