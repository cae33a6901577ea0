"""Late messages held and handed to the rules in device-time order once the replay settles, all together.

A spool replayed over several reconnects, or from more than one spool file, arrives out of order: an opening
before its exit request (a forced door that was not), a passage before its grant (a tailgater missed). A queue
that several workers share gives each some of a device's messages, committed in any order. The order-sensitive
rules therefore get late messages only once the replay has been quiet for a moment, on every worker, sorted by
their own time. The rules relate devices (a credential's entry at one gate and its exit at another), so the
hold is one for the whole replay: everything held goes in together, never one device's part before another's.

The held messages are rule state (the `_hold` pseudo-rule): one row per batch that held any, written once in
the batch's transaction, before the broker is acknowledged, so a hub that dies while holding them finds them
again on restart, and its timer releases them. Its key starts with the batch's receive time (the hold's age is
read from the keys); its timer is SETTLE_S after it, so a row not yet due says its replay came on within the last
SETTLE_S. A replay's last seconds lag too little to be late: a device's recent messages join the hold while one
is held (up to HOLD_SPAN_S) or when they come in the same batch as its late ones (hub.rules.engine). Messages
of other devices are never held, nor a queue of one device drained by one worker in order
(hub.rules.engine.Engine._held).
"""

from __future__ import annotations

import logging
import math
import uuid
from collections.abc import Iterable, Iterator
from itertools import count
from operator import itemgetter
from sys import intern
from types import SimpleNamespace
from typing import Any

from pydantic import TypeAdapter

from commhub.wire import Body
from hub.rules.event import Ctx, Event, Signal, State
from hub.rules.kinds.base import Rule

log = logging.getLogger(__name__)

HOLD = "_hold"  # the pseudo-rule under which held messages are kept with the rule state
# A replay quiet for this long (on the engine's clock; between this and twice it, as timers tick) is in:
# a replay comes as a burst, its messages well under a second apart.
SETTLE_S = 5.0
# Held at most this long from the batch that began the hold: a device whose clock jumped back looks late until
# the clock relearns it (120 s), and its live messages must not wait that long; nor does a replay that never
# goes quiet keep everything else waiting.
HOLD_MAX_S = 30.0
# The longest a hold lasts; a recent message joins a device's hold only this long after the first one did.
HOLD_SPAN_S = HOLD_MAX_S + 2 * SETTLE_S
# Nor more messages than this (held by one process since it last let go): all of them are read back at once.
HOLD_MAX_N = 60_000
RELEASE_CHUNK = 2_000  # messages turned back into events and fed at a time

_BODY: TypeAdapter[Any] = TypeAdapter(Body)


def since(key: str) -> float:
    """When (on the engine's clock) the batch that wrote a hold row was received (-inf: a row of an older hub,
    one per device, kept since it was upgraded; let go at once)."""
    try:
        return float(key.split(":", 1)[0])
    except ValueError:
        return -math.inf


class Reorder(Rule):
    """The hold: keeps late messages in per-batch state rows, gives them all back sorted when let go."""

    def __init__(self, ctx: Ctx) -> None:
        super().__init__(SimpleNamespace(id=HOLD), ctx)
        self._token = uuid.uuid4().hex[:12]  # hold row keys are unique across workers and restarts
        self._count = count()

    def key(self, received: float) -> str:
        """A new hold row's key for a batch received at `received`."""
        return f"{received:.3f}:{self._token}:{next(self._count)}"

    def on_key_event(self, st: State, key: str, ev: Event) -> list[Signal]:
        """Hold one late message in its batch's row."""
        st.data.setdefault("held", []).append(
            [ev.device_id, ev.t, ev.seq, ev.kind, ev.historical, ev.body.model_dump_json()])
        if st.due is None:
            st.due = since(key) + SETTLE_S  # until then the row says its replay is still coming
        return []

    def take(self, rows: Iterable[tuple[str, State]]) -> list[list[Any]]:
        """Empty these (key, row)s; their held messages, sorted by device time (then seq, then device)."""
        held: list[list[Any]] = []
        for key, st in rows:
            for h in st.data.get("held", ()):
                if len(h) != 6:
                    h = [key, *h]  # an older hub's row: one device's, the key its id
                h[0], h[3] = intern(h[0]), intern(h[3])  # a replay's worth: one copy of each id and kind
                held.append(h)
            st.data.clear()
            st.due = None
        # By (time, seq, device): stable sorts from the least significant field, with no key tuple per message.
        for field in (0, 2, 1):
            held.sort(key=itemgetter(field))
        return held

    def events(self, held: list[list[Any]]) -> Iterator[list[Event]]:
        """take()'s messages as events, each once, a chunk at a time."""
        out: list[Event] = []
        last: tuple[str, float, int] | None = None
        for dev, t, seq, kind, historical, raw in held:
            if last == (dev, t, seq):
                continue  # a redelivery inside the replay, held twice (by two workers, or in two batches)
            last = (dev, t, seq)
            try:
                body = _BODY.validate_json(raw)
            except ValueError:
                # Valid when held; a hub upgraded meanwhile may read it otherwise. The timer must not spin on it.
                log.exception("dropping held %s seq %d: its body no longer validates", dev, seq)
                continue
            out.append(Event(dev, kind, body.type, t, seq, body, self.ctx.place(dev), self.ctx.devices.get(dev),
                             historical))
            if len(out) >= RELEASE_CHUNK:
                yield out
                out = []
        if out:
            yield out
