"""Late messages held and handed to the rules in device-time order once the replay settles, all together.

A spool replayed over several reconnects, or from more than one spool file, arrives out of order: an opening
before its exit request (a forced door that was not), a passage before its grant (a tailgater missed). A queue
that several workers share gives each some of a device's messages, committed in any order. The order-sensitive
rules therefore get late messages only once the replay has been quiet for a moment, on every worker, sorted by
their own time. The rules relate devices (a credential's entry at one gate and its exit at another), so the
hold is one for the whole replay: everything held goes in together, never one device's part before another's.

The held messages are kept with the rule state, in the same transaction as the batch, before the broker is
acknowledged, so a hub that dies while holding them finds them again on restart, and its timer releases them.
Each batch that holds any writes one `_hold` state row (its marker: a count and a timer) and its messages,
sorted by device time, as a run under the marker's key in the store's table of held messages (pack: RUN_PART
lines to a stored part). The key starts with the batch's receive time (the hold's age is read from the keys);
the timer is SETTLE_S after it, so a marker not yet due says its replay came on within the last SETTLE_S. When
let go, the runs are merged (one part of each in memory at a time) and fed RELEASE_CHUNK at a time, so memory
does not bound how much a replay may hold. A replay's last seconds lag too little to be late: a device's
recent messages join the hold while one is held (up to HOLD_SPAN_S) or when they come in the same batch as its
late ones (hub.rules.engine). Messages of other devices are never held, nor a queue of one device drained by
one worker in order (hub.rules.engine.Engine._held).
"""

from __future__ import annotations

import heapq
import logging
import math
import uuid
from collections.abc import Iterable, Iterator
from itertools import count
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
# Nor more messages than this (held by one process since it last let go): the let-go is one transaction, about
# 25 µs a message.
HOLD_MAX_N = 500_000
RELEASE_CHUNK = 2_000  # messages turned into events and fed at a time
# Held messages per stored part of a run. A let-go keeps one part of each run in memory, about 40 kB: 100 runs
# (a 100,000-message drain in batches of 1,000) take 4 MB.
RUN_PART = 64

# A held message: (device, time, seq, device kind, historical, body JSON).
Held = tuple[str, float, int, str, bool, str]

_BODY: TypeAdapter[Any] = TypeAdapter(Body)


def since(key: str) -> float:
    """When (on the engine's clock) the batch that wrote a hold row was received (-inf: a row of an older hub,
    one per device, kept since it was upgraded; let go at once)."""
    try:
        return float(key.split(":", 1)[0])
    except ValueError:
        return -math.inf


class Reorder(Rule):
    """The hold: a marker state row per batch that held late messages (the messages themselves are in the
    store: StateStore.keep), and their rows turned back into events when let go."""

    def __init__(self, ctx: Ctx) -> None:
        super().__init__(SimpleNamespace(id=HOLD), ctx)
        self._token = uuid.uuid4().hex[:12]  # hold row keys are unique across workers and restarts
        self._count = count()

    def key(self, received: float) -> str:
        """A new hold row's key for a batch received at `received`."""
        return f"{received:.3f}:{self._token}:{next(self._count)}"

    def on_key_event(self, st: State, key: str, ev: Event) -> list[Signal]:
        """Count one late message in its batch's marker (the engine has the store keep the message itself)."""
        st.data["n"] = st.data.get("n", 0) + 1
        if st.due is None:
            st.due = since(key) + SETTLE_S  # until then the marker says its replay is still coming
        return []

    @staticmethod
    def row(ev: Event) -> Held:
        """A late message as the store keeps it."""
        return ev.device_id, ev.t, ev.seq, ev.kind, ev.historical, ev.body.model_dump_json()

    @staticmethod
    def inline(key: str, st: State) -> list[Held]:
        """The messages an older hub kept inside a hold row (one per batch, or one per device keyed by its id)."""
        out: list[Held] = []
        for h in st.data.get("held", ()):
            try:
                dev, t, seq, kind, historical, body = h if len(h) == 6 else [key, *h]
                out.append((str(dev), float(t), int(seq), str(kind), bool(historical), str(body)))
            except (TypeError, ValueError):
                log.error("dropping a message an older hub held under %s: its entry does not read", key)
        return out

    def events(self, page: list[Held]) -> list[Event]:
        """A page of held messages as events."""
        out: list[Event] = []
        for dev, t, seq, kind, historical, raw in page:
            try:
                body = _BODY.validate_json(raw)
            except ValueError:
                # Valid when held; a hub upgraded meanwhile may read it otherwise. The timer must not spin on it.
                log.exception("dropping held %s seq %d: its body no longer validates", dev, seq)
                continue
            dev, kind = intern(dev), intern(kind)
            out.append(Event(dev, kind, body.type, t, seq, body, self.ctx.place(dev), self.ctx.devices.get(dev),
                             bool(historical)))
        return out


def order(h: Held) -> tuple[float, int, str]:
    """A held message's place in a replay: (time, seq, device)."""
    return h[1], h[2], h[0]


def pack(held: list[Held]) -> list[str]:
    """A run of held messages as stored: sorted by (time, seq, device), a line each (tab-separated, the body's
    JSON last: JSON text has no raw tab or newline, nor have ids), RUN_PART lines to a part."""
    held.sort(key=order)
    lines = [f"{t!r}\t{seq}\t{dev}\t{kind}\t{int(historical)}\t{body}" for dev, t, seq, kind, historical, body in held]
    return ["\n".join(lines[i:i + RUN_PART]) for i in range(0, len(lines), RUN_PART)]


def unpack(part: str) -> Iterator[Held]:
    """The held messages of one stored part, in order (a line that does not read is logged and skipped: the
    timer must not spin on it)."""
    for line in part.split("\n"):
        try:
            t, seq, dev, kind, historical, body = line.split("\t", 5)
            held = dev, float(t), int(seq), kind, historical == "1", body
        except ValueError:
            log.error("dropping a held message whose stored line (%d chars) does not read", len(line))
            continue
        yield held


def merge(runs: Iterable[Iterable[Held]]) -> Iterator[Held]:
    """Sorted runs as one stream in (time, seq, device) order, each message once (a redelivery inside the
    replay is held twice, by two workers or in two batches)."""
    last: tuple[float, int, str] | None = None
    for h in heapq.merge(*runs, key=order):
        at = order(h)
        if at != last:
            last = at
            yield h
