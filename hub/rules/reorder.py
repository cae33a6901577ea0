"""Late messages held per device and handed to the rules in device-time order once the replay settles.

A spool replayed over several reconnects, or from more than one spool file, arrives out of order: an opening
before its exit request (a forced door that was not), a passage before its grant (a tailgater missed). The
order-sensitive rules therefore get a device's late messages only once its replay has been quiet for a
moment, sorted by their own time. The held messages are rule state (the `_hold` pseudo-rule, one key per
device): written in the batch's transaction, before the broker is acknowledged, so a hub that dies while
holding them finds them again on restart, and its timer releases them. A replay's last seconds lag too little
to be late: a device's recent messages join its hold while one is held (up to HOLD_SPAN_S) or when they come
in the same batch as its late ones (hub.rules.engine). Messages of other devices are never held, nor a queue
of one device drained by one worker in order (hub.rules.engine.Engine._held).
"""

from __future__ import annotations

import logging
import math
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
# Held at most this long from the first timer tick after the first one came: a device whose clock jumped
# back looks late until the clock relearns it (120 s), and its live messages must not wait that long.
HOLD_MAX_S = 30.0
# The longest a hold lasts; a recent message joins a device's hold only this long after the first one did.
HOLD_SPAN_S = HOLD_MAX_S + 2 * SETTLE_S
HOLD_MAX_N = 256  # nor more than this many (the state row is rewritten with each held message)

_BODY: TypeAdapter[Any] = TypeAdapter(Body)


class Reorder(Rule):
    """The per-device hold: keeps late messages in the state, gives them back sorted when due."""

    def __init__(self, ctx: Ctx) -> None:
        super().__init__(SimpleNamespace(id=HOLD), ctx)
        # Per device, the held list last seen and its (t, seq) pairs: a redelivery is found without scanning the
        # list for every message held (up to HOLD_MAX_N each, two workers' drains made that a tenth of the hold's
        # CPU). Valid only for that very list object (a load from the store, the other worker's, is a new one).
        self._ids: dict[str, tuple[list[list[Any]], set[tuple[float, int]]]] = {}

    def on_key_event(self, st: State, key: str, ev: Event) -> list[Signal]:
        """Hold one late message (once: a redelivery inside the replay is the same message)."""
        held: list[list[Any]] = st.data.setdefault("held", [])
        cached = self._ids.get(key)
        if cached is None or cached[0] is not held or len(cached[1]) != len(held):
            cached = (held, {(h[0], h[1]) for h in held})
            self._ids[key] = cached
        ids = cached[1]
        if (ev.t, ev.seq) in ids:
            return []
        ids.add((ev.t, ev.seq))
        held.append([ev.t, ev.seq, ev.kind, ev.historical, ev.body.model_dump_json()])
        if st.due is None:
            st.due = ev.t  # in the past: the next tick sees it, then waits for the replay to settle
        return []

    def release(self, st: State, key: str, now: float, arriving: bool, quiet: float = -math.inf) -> list[Event]:
        """The held messages in device-time order when due (st emptied), or none (st waits on).

        `arriving`: another late message came since the last look, so the replay is still coming in. `quiet`:
        when the replay as a whole is quiet, if later than now: the hold waits until then, as every other does.
        """
        d = st.data
        held: list[list[Any]] = d.get("held", [])
        since = d.setdefault("since", now)
        if held and arriving and now - since < HOLD_MAX_S and len(held) < HOLD_MAX_N:
            st.due = min(quiet if quiet > now else now + SETTLE_S, since + HOLD_MAX_S)  # never past the bound
            return []
        d.clear()
        st.due = None
        self._ids.pop(key, None)
        held.sort(key=lambda h: (h[0], h[1]))
        out: list[Event] = []
        for t, seq, kind, historical, raw in held:
            try:
                body = _BODY.validate_json(raw)
            except ValueError:
                # Valid when held; a hub upgraded meanwhile may read it otherwise. The timer must not spin on it.
                log.exception("dropping held %s seq %d: its body no longer validates", key, seq)
                continue
            out.append(Event(key, kind, body.type, t, seq, body, self.ctx.place(key), self.ctx.devices.get(key),
                             historical))
        return out
