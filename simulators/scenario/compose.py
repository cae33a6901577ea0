"""Several scenarios as one: each placed on one timeline (at its own time of day when it can), so one hub
session runs them all. Their places must not clash: two parts that use one device are kept hours apart."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from commhub.community import Community
from simulators.scenario.runner import background
from simulators.scenario.spec import Background, Delivery, Expect, Late, Scenario

DAY = 86400.0
_STEP_S = 3600.0  # how far a part moves when its own time of day is taken


@dataclass(frozen=True)
class Part:
    """Where one scenario landed in the composite: its offset and its expectations' indexes."""

    name: str
    offset: float
    expect: range


class ComposeError(ValueError):
    """The parts cannot share one timeline (too long, or no free slot for a shared device)."""


def compose(name: str, base: Scenario, parts: Sequence[Scenario], community: Community,
            margin_s: float = 3 * 3600.0, time_of_day: bool = True, step_s: float = _STEP_S,
            trim: bool = False) -> tuple[Scenario, list[Part]]:
    """base (its background and its whole duration) plus every part at its own time of day (or, without
    time_of_day, as early as it fits), moved by step_s until none of its incident devices is in use by another
    part within margin_s; trim cuts the composite to the end of its last part."""
    start = base.start_ts
    used: dict[str, list[tuple[float, float]]] = {}
    incidents = list(base.incidents)
    late: list[Late] = list(base.delivery.late)
    expect: list[Expect] = []
    bg_ids = {d.id for d in background(community.devices, base.background)}
    layout: list[Part] = []
    if base.incidents or base.expect:
        layout.append(Part(base.name, 0.0, range(0, len(base.expect))))
        expect.extend(base.expect)
        _claim(used, base, 0.0)
    for sc in parts:
        own = (sc.start_ts - start) % DAY if time_of_day else 0.0
        offset = next((o for o in _candidates(own, sc.duration, base.duration, step_s)
                       if _free(used, sc, o, margin_s)), None)
        if offset is None:
            raise ComposeError(f"{name}: no slot for {sc.name} in {base.duration:g}s")
        _claim(used, sc, offset)
        incidents += [inc.model_copy(update={"at": inc.at + offset}) for inc in sc.incidents]
        late += [w.model_copy(update={"at": w.at + offset}) for w in sc.delivery.late]
        first = len(expect)
        expect += [e.model_copy(update={"after": sc.reference(e) + offset}) for e in sc.expect]
        layout.append(Part(sc.name, offset, range(first, len(expect))))
        bg_ids |= {d.id for d in background(community.devices, sc.background)}
    allow = tuple(sorted({*base.allow, *(a for sc in parts for a in sc.allow)}))
    duration = base.duration
    if trim:
        duration = max([p.offset + sc.duration for p, sc in zip(layout[-len(parts):], parts, strict=True)]
                       + [max((i.at for i in base.incidents), default=0.0) + 1.0])
    composite = base.model_copy(update={"duration": duration,
        "name": name, "incidents": tuple(sorted(incidents, key=lambda i: i.at)), "expect": tuple(expect),
        "allow": allow, "background": Background(devices=tuple(sorted(bg_ids))),
        "delivery": Delivery(duplicate_share=base.delivery.duplicate_share, late=tuple(late)),
        "description": f"{base.name} with {', '.join(sc.name for sc in parts)}"})
    return Scenario.model_validate(composite.model_dump()), layout


def _candidates(own: float, duration: float, total: float, step: float) -> list[float]:
    out = []
    for k in range(int(DAY // step)):
        o = (own + k * step) % DAY
        if o + duration <= total:
            out.append(o)
    return out


def _devices(sc: Scenario) -> set[str]:
    out = {inc.device for inc in sc.incidents}
    for inc in sc.incidents:
        out |= set(getattr(inc, "devices", ()))
    return out


def _free(used: dict[str, list[tuple[float, float]]], sc: Scenario, offset: float, margin: float) -> bool:
    a, b = offset, offset + sc.duration
    return all(b + margin <= x or a >= y + margin for dev in _devices(sc) for x, y in used.get(dev, []))


def _claim(used: dict[str, list[tuple[float, float]]], sc: Scenario, offset: float) -> None:
    for dev in _devices(sc):
        used.setdefault(dev, []).append((offset, offset + sc.duration))
