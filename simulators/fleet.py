"""Which devices to simulate: the community's, a subset that keeps every kind, or clones to reach a count."""

from __future__ import annotations

from collections.abc import Sequence

from commhub.community import Device
from simulators.models import MODELS

MAX_ID_LEN = 64


class FleetError(ValueError):
    """The requested fleet cannot be built from the community."""


def select(devices: Sequence[Device], count: int | None = None) -> list[Device]:
    """The modelled devices; with count, a round-robin subset over kinds, or clones '<id>-x<k>' beyond them."""
    base = [d for d in devices if d.kind in MODELS]
    if not base:
        raise FleetError("the community has no device the simulator models")
    if count is None or count == len(base):
        return base
    if count < 1:
        raise FleetError(f"device count must be >= 1, got {count}")
    if count < len(base):
        by_kind: dict[str, list[Device]] = {}
        for d in base:
            by_kind.setdefault(d.kind.value, []).append(d)
        queues = [list(reversed(v)) for _, v in sorted(by_kind.items())]
        out: list[Device] = []
        while len(out) < count:
            for q in queues:
                if q and len(out) < count:
                    out.append(q.pop())
        return out
    out = list(base)
    k = 1
    while len(out) < count:
        for d in base:
            if len(out) >= count:
                break
            clone_id = f"{d.id}-x{k}"
            if len(clone_id) > MAX_ID_LEN:
                raise FleetError(f"clone id {clone_id!r} is longer than {MAX_ID_LEN} characters")
            out.append(d.model_copy(update={"id": clone_id}))
        k += 1
    return out
