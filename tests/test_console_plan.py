"""The community plan SVG, generated from the community model (no map tiles, no coordinates in the model)."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

from api.console.plan import layout, render
from commhub.community import Community
from commhub.config import load_community

SAMPLE = Path(__file__).resolve().parents[1] / "configs" / "community" / "sample.yaml"
SVG = "{http://www.w3.org/2000/svg}"


def test_every_cell_and_building_of_the_sample_is_drawn_once() -> None:
    """One cell group per grid, one link per building, with the device count from the model."""
    c = load_community(SAMPLE)
    root = ET.fromstring(render(c, "common"))
    cells = [g for g in root.iter(f"{SVG}g") if g.get("class") == "cell"]
    assert [g.get("data-grid") for g in cells] == [g.id for g in c.grids]
    links = [a for a in root.iter(f"{SVG}a") if a.get("class") == "bldg"]
    assert [a.get("data-building") for a in links] == [b.id for g in c.grids for b in g.buildings]
    per_building = {b.id: 0 for g in c.grids for b in g.buildings}
    for d in c.devices:
        if d.building:
            per_building[d.building] += 1
    assert {a.get("data-building"): int(a.get("data-devices", "-1")) for a in links} == per_building
    assert all(a.get("href") == f"/board?building={a.get('data-building')}" for a in links)


def test_buildings_sit_inside_their_cell_and_never_overlap() -> None:
    """The schematic layout keeps every building box inside its cell, apart from the others."""
    c = load_community(SAMPLE)
    cells, buildings, (width, height) = layout(c)
    for g in c.grids:
        cb = cells[g.id]
        assert cb.x + cb.w <= width and cb.y + cb.h <= height
        for b in g.buildings:
            bb = buildings[b.id]
            assert cb.x <= bb.x and bb.x + bb.w <= cb.x + cb.w and cb.y <= bb.y and bb.y + bb.h <= cb.y + cb.h
    boxes = list(buildings.values())
    for i, p in enumerate(boxes):
        for q in boxes[i + 1:]:
            assert p.x + p.w <= q.x or q.x + q.w <= p.x or p.y + p.h <= q.y or q.y + q.h <= p.y, (p, q)


def test_hostile_names_stay_text() -> None:
    """A name from the model with markup in it is escaped: the SVG still parses and holds no script."""
    c = Community.model_validate({
        "site": {"id": "s1", "name": 'x"><script>alert(1)</script>'},
        "grids": [{"id": "g1", "name": "<b>cell</b>", "buildings": [{"id": "b1", "name": "1 & 2 \"楼\""}]},
                  {"id": "g2"}],
    })
    svg = render(c, "<common>")
    root = ET.fromstring(svg)
    assert "<script" not in svg and not list(root.iter(f"{SVG}script"))
    texts = [t.text for t in root.iter(f"{SVG}text")]
    assert "<b>cell</b>" in texts and '1 & 2 "楼"' in texts and "<common>" in texts
    assert root.get("aria-label") == 'x"><script>alert(1)</script>'
    # A cell with no buildings still gets its common area.
    assert any(a.get("data-grid") == "g2" for a in root.iter(f"{SVG}a"))
