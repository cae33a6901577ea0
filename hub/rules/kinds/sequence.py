"""sequence: door and credential state machines.

- unauthorized_open: the door opens with no grant or exit request in the previous window_s (forced door);
  clears when it closes.
- held_open: the door is still open hold_s after an authorized opening; severity steps up over time.
- repeat_without: a credential enters twice without exiting in between (anti-passback), within window_s; a
  re-read at the same reader within debounce_s is the same entry (a face gate reads a waiting face again).
- count_per_grant: more passages than grants allow (max_count each) within window_s (tailgating). Every grant
  adds its own allowance, so a queue (grant, grant, passage, passage) is fine.

With settle_s, unauthorized_open and count_per_grant judge an opening or passage with no grant only settle_s
later: a grant older than it that arrives meanwhile (from another hub worker) still allows it. held_open then
times an opening whose grant comes within settle_s after it, judges an opening whose closing came first as
closed, and raises each threshold settle_s after it (at its own time), so a closing before it that another
worker still holds prevents it; repeat_without judges a second entry settle_s later, so an exit between the two
that arrives meanwhile excuses it.

A settle is due settle_s after the later of the event's device time and the time the hub received it
(Ctx.received): in a backlog drain device time runs ahead of the wall clock, and a settle on device time alone
would be due before the other worker's batch, holding the grant or exit, commits.
"""

from __future__ import annotations

from typing import Any

from hub.rules.event import SEQ_ORDER_S, Event, Signal, State, subject_key
from hub.rules.kinds.base import Rule

_AUTH = ("access_granted", "exit_request")
_DOOR = ("door_opened", "door_closed")
# A grant logged a moment after the passage it allowed (controller and sensor clocks differ) still allows it.
_ORDER_SLACK_S = 2.0


def _seq_before(device: str, seq: int, t: float, other: list[Any] | None, other_t: float) -> bool:
    """Whether (device, seq) at t, stamped up to SEQ_ORDER_S after `other` ([device, seq]) at other_t, came first."""
    return other is not None and other[0] == device and seq < other[1] and 0 <= t - other_t <= SEQ_ORDER_S


class Sequence(Rule):
    """One of the door/credential patterns above."""

    def types(self) -> set[str] | None:
        """Body types the pattern reads."""
        p = self.spec.pattern
        if p == "repeat_without":
            return {"access_granted"}
        if p == "count_per_grant":
            return {"access_granted", "passage"}
        return {*_AUTH, *_DOOR}

    def takes(self, kind: str, body_type: str) -> bool:
        """Only the watched kinds (keys() gives no key to any other)."""
        return not self.spec.kinds or kind in self.spec.kinds

    def keys(self, ev: Event) -> list[str]:
        """Subject by door, or by credential for anti-passback."""
        if self.spec.kinds and ev.kind not in self.spec.kinds:
            return []
        if self.spec.pattern == "repeat_without" and not ev.get("credential_ref"):
            return []
        key = subject_key(self.spec.key, ev, self.ctx)
        return [key] if key else []

    def on_event(self, st: State, ev: Event) -> list[Signal]:
        """Dispatch to the pattern."""
        key = self.key_of(ev)
        out: list[Signal] = getattr(self, "_" + self.spec.pattern)(st, key, ev)
        return out

    def _unauthorized_open(self, st: State, key: str, ev: Event) -> list[Signal]:
        d = st.data
        if ev.type in _AUTH:
            if ev.t >= d.get("auth", ev.t):
                d["auth_ref"] = [ev.device_id, ev.seq]
            d["auth"] = max(ev.t, d.get("auth", ev.t))
            opened = d.get("opened")
            if opened is not None and (0 <= opened - ev.t <= self.spec.window_s
                                       or _seq_before(ev.device_id, ev.seq, ev.t, d.get("opened_ref"), opened)):
                d.pop("opened")  # the grant of an opening still settling: authorized after all
                d.pop("opened_ref", None)
                d.pop("closed", None)
            return []
        if ev.type == "door_closed":
            if d.get("opened") is not None:
                d["closed"] = ev.t  # the settling opening decides; its timer clears after firing
                return []
            out = self.clear(st, key, ev.t)
            d.pop("place", None)
            return out
        if self._authorized(d, ev.t):
            return []
        auth, ref = d.get("auth"), d.get("auth_ref")
        if auth is not None and ref and _seq_before(ref[0], ref[1], auth, [ev.device_id, ev.seq], ev.t):
            return []  # its grant, older by the device's seq, though another worker's clock put it later
        self.remember(st, ev)
        if self.spec.settle_s:
            # Another worker may still hold the grant that allowed it: judge when the opening has settled.
            if d.get("opened") is None:
                d["opened"] = ev.t
                d["opened_ref"] = [ev.device_id, ev.seq]
            st.due = self._settle_at(ev.t)
            return []
        return self._forced(st, key, ev.t)

    def _authorized(self, d: dict[str, Any], opened: float) -> bool:
        auth = d.get("auth")
        return auth is not None and 0 <= opened - auth <= self.spec.window_s

    def _forced(self, st: State, key: str, opened: float) -> list[Signal]:
        auth = st.data.get("auth")
        since = None if auth is None else round(opened - auth, 3)
        return self.fire(st, key, opened, window_s=self.spec.window_s, last_grant_s_before=since or -1)

    def _settled(self, st: State, key: str, now: float) -> list[Signal]:
        """unauthorized_open with settle_s: an opening no grant arrived for fires (and clears if it closed)."""
        d = st.data
        opened = d.pop("opened")
        d.pop("opened_ref", None)
        closed = d.pop("closed", None)
        out = self._forced(st, key, opened)
        if closed is not None:
            out = [*out, *self.clear(st, key, closed)]
            d.pop("place", None)
        return out

    def _held_open(self, st: State, key: str, ev: Event) -> list[Signal]:
        d = st.data
        settle = self.spec.settle_s
        if ev.type in _AUTH:
            d["auth"] = max(ev.t, d.get("auth", ev.t))
            unauth = d.get("unauth")
            if unauth is not None and 0 <= unauth - ev.t <= self.spec.window_s and "open_since" not in d:
                # The grant of an opening still settling: it is timed from its own opening after all.
                del d["unauth"]
                return self._opened(st, key, unauth)
            return []
        if ev.type == "door_closed":
            since = d.get("open_since")
            if settle and (since is None or ev.t < since):
                # Its opening may still come from another worker (or this is an older opening's closing, late):
                # remembered, so that opening is judged as closed by then.
                d["shut"] = max(ev.t, d.get("shut", ev.t))
                if since is None:
                    d.pop("unauth", None)
                    st.due = None
                    return self.clear(st, key, ev.t)
                return []
            out = self._closed(st, key, ev.t)
            reopened = d.pop("reopened", None)
            if reopened is not None and reopened > ev.t:
                out = [*out, *self._opened(st, key, reopened)]  # the opening we took for "already open"
            return out
        auth = d.get("auth")
        if auth is None or not 0 <= ev.t - auth <= self.spec.window_s:
            if settle and "open_since" not in d:
                d["unauth"] = ev.t  # forced, or its grant is still on the way from another worker
                self.remember(st, ev)
                st.due = self._settle_at(ev.t)
            return []  # forced: held_open times authorized openings only
        if "open_since" in d:
            if settle and ev.t > d["open_since"]:
                d["reopened"] = ev.t  # or the closing between the two is still on its way from another worker
            return []  # already open
        self.remember(st, ev)
        return self._opened(st, key, ev.t)

    def _opened(self, st: State, key: str, t: float) -> list[Signal]:
        """An authorized opening at t: time it (or, its closing already known, judge it closed)."""
        d = st.data
        shut = d.pop("shut", None)
        d["open_since"] = t
        if shut is not None and shut >= t:
            return self._closed(st, key, shut)
        st.due = t + self.spec.hold_s + self.spec.settle_s
        return []

    def _closed(self, st: State, key: str, t: float) -> list[Signal]:
        """held_open: the door closed at t; raised after all if it was open hold_s (a replay), then cleared."""
        d = st.data
        since = d.get("open_since")
        out = []
        if since is not None and not d.get("active") and t - since >= self.spec.hold_s:
            # Its opening and closing came late together (a replay): it was held open all the same.
            out = self.fire(st, key, since + self.spec.hold_s, hold_s=self.spec.hold_s, open_s=round(t - since, 1))
            for s in self.spec.steps[d.get("step", 0):] if out else ():
                if t - since >= s.after_s:
                    out.append(self.signal("fire", st, key, since + s.after_s, s.severity, after_s=s.after_s,
                                           open_s=round(t - since, 1)))
        out = [*out, *self.clear(st, key, t)]
        for k in ("open_since", "step", "unauth", *(() if "reopened" in d else ("place",))):
            d.pop(k, None)
        st.due = None
        return out

    def on_timer(self, st: State, key: str, now: float) -> list[Signal]:
        """held_open: fire at hold_s, then raise severity at each step (each settle_s later, at its own time)."""
        st.due = None
        d = st.data
        if d.get("opened") is not None:
            return self._settled(st, key, now)
        if d.get("unpaid"):
            return self._settle_passages(st, key, now)
        if d.get("repeats"):
            return self._settle_repeats(st, key, now)
        settle = self.spec.settle_s
        if d.pop("unauth", None) is not None and "open_since" not in d:
            for k in ("place", *(() if d.get("active") else ("refs",))):
                d.pop(k, None)  # no grant came: a forced opening, door_forced_open's business
        since = d.get("open_since")
        if self.spec.pattern != "held_open" or since is None:
            return self._expire(st, now)
        out: list[Signal] = []
        open_s = now - since
        # With settle_s each threshold is judged settle_s after it, at its own time: a closing before it may
        # still come from another worker.
        if not d.get("active") and open_s >= self.spec.hold_s + settle:
            at = since + self.spec.hold_s if settle else now
            out = self.fire(st, key, at, hold_s=self.spec.hold_s, open_s=round(at - since, 1))
        step = d.get("step", 0)
        while d.get("active") and step < len(self.spec.steps) and open_s >= self.spec.steps[step].after_s + settle:
            s = self.spec.steps[step]
            step += 1
            d["step"] = step
            at = since + s.after_s if settle else now
            out = [*out, self.signal("fire", st, key, at, s.severity, after_s=s.after_s, open_s=round(at - since, 1))]
        if not d.get("active"):
            st.due = since + self.spec.hold_s + settle
        elif step < len(self.spec.steps):
            st.due = since + self.spec.steps[step].after_s + settle
        return out

    def _expire(self, st: State, now: float) -> list[Signal]:
        # Old grants and passages need no memory once their window is over.
        d = st.data
        if d.get("auth") is not None and now - d["auth"] > self.spec.window_s and not d.get("active"):
            d.pop("auth", None)
        if self.spec.pattern == "count_per_grant" and now - d.get("last_grant", now) > self.spec.window_s:
            d.clear()
        return []

    def _repeat_without(self, st: State, key: str, ev: Event) -> list[Signal]:
        d = st.data
        direction = ev.get("direction")
        last, last_t, last_dev = d.get("dir"), d.get("t"), d.get("dev")
        ident = f"{ev.device_id}#{ev.seq}"
        if ident == d.get("last"):
            return []  # a redelivered message
        repeats = d.get("repeats")
        if repeats and direction != "in":
            # An exit between two entries still settling, from another worker: those were no repeat after all.
            kept = [r for r in repeats if not r[1] <= ev.t <= r[0]]
            if len(kept) != len(repeats):
                self._set_repeats(st, kept)
                return []
        if direction == "in" and last == "in" and last_t is not None and last_dev == ev.device_id \
                and abs(ev.t - last_t) <= self.spec.debounce_s:
            d["t"] = max(ev.t, last_t)
            return []  # the same entry read twice
        if last_t is not None and ev.t < last_t:
            return []  # older than what we know: the order of entries is unknown
        d["dir"], d["t"], d["dev"], d["last"] = direction, ev.t, ev.device_id, ident
        if direction == "in" and last == "in" and last_t is not None and ev.t - last_t <= self.spec.window_s:
            self.remember(st, ev)
            if self.spec.settle_s:
                # The exit between the two may still come from another worker: judged when the entry settled.
                self._set_repeats(st, [*(repeats or []), [ev.t, last_t, self._settle_at(ev.t)]])
                return []
            return self._repeated(st, key, ev.t)
        return []

    def _repeated(self, st: State, key: str, t: float) -> list[Signal]:
        out = self.fire(st, key, t, window_s=self.spec.window_s)
        st.data.pop("refs", None)
        st.data["active"] = False  # each repeat is its own violation; the alert store merges re-fires
        return out

    def _set_repeats(self, st: State, repeats: list[list[float]]) -> None:
        """repeat_without with settle_s: the entries still settling ([entry, previous entry]) and their timer."""
        if repeats:
            st.data["repeats"] = repeats
            st.due = min(self._stored_due(r, 2) for r in repeats)
        else:
            st.data.pop("repeats", None)
            st.data.pop("refs", None)
            st.due = None

    def _settle_repeats(self, st: State, key: str, now: float) -> list[Signal]:
        """repeat_without with settle_s: entries no exit arrived for are repeats (anti-passback)."""
        out: list[Signal] = []
        keep = []
        for r in st.data.pop("repeats"):
            if self._stored_due(r, 2) <= now:
                out.extend(self._repeated(st, key, r[0]))
            else:
                keep.append(r)
        if keep:
            self._set_repeats(st, keep)
        return out

    def _count_per_grant(self, st: State, key: str, ev: Event) -> list[Signal]:
        d = st.data
        w = self.spec.window_s
        ident = f"{ev.device_id}#{ev.seq}"
        seen: list[str] = d.setdefault("seen", [])
        if ident in seen:
            return []  # a redelivered grant or passage must not count twice
        seen.append(ident)
        del seen[:-32]
        # Unused allowances: [grant time, passages left]; a passage spends the oldest one still valid.
        grants: list[list[Any]] = [g for g in d.get("grants", []) if ev.t - g[0] <= w]
        if ev.type == "access_granted":
            if ev.get("direction") == "in":
                left = self._pay(d, ev, float(self.spec.max_count))
                if left > 0:
                    grants.append([ev.t, left, ev.device_id, ev.seq])
                grants.sort(key=lambda g: g[0])
            d["grants"] = grants
            d["last_grant"] = max(ev.t, d.get("last_grant", ev.t))
            # Every grant's time (used or not), so a passage older than the newest grant still finds its own.
            d["recent"] = sorted([g for g in d.get("recent", []) if ev.t - g <= w] + [ev.t])[-32:]
            st.due = self._next_due(d, ev.t + w)
            return []
        if ev.get("direction") != "in":
            d["grants"] = grants
            return []
        last_grant = d.get("last_grant")
        recent = d.get("recent") or ([] if last_grant is None else [last_grant])
        if not any(0 <= ev.t - g <= w for g in recent):
            d["grants"] = grants
            return []  # no grant nearby: a free-passage gate or an exit; nothing to compare with
        people = int(ev.get("count") or 1)
        extra = 0
        for _ in range(people):
            # Older than the passage by time, or by its device's seq ([t, left, device, seq]).
            usable = [g for g in grants if g[1] > 0 and (
                g[0] <= ev.t + _ORDER_SLACK_S
                or (len(g) > 3 and _seq_before(g[2], g[3], g[0], [ev.device_id, ev.seq], ev.t)))]
            if usable:
                usable[0][1] -= 1
            else:
                extra += 1
        d["grants"] = [g for g in grants if g[1] > 0]
        if not extra:
            return []
        self.remember(st, ev)
        if self.spec.settle_s:
            # Its grant may still come from another worker: judged when the passage has settled.
            d.setdefault("unpaid", []).append([ev.t, extra, people, self._settle_at(ev.t), ev.device_id, ev.seq])
            st.due = self._next_due(d, st.due)
            return []
        return self._tailgated(st, key, ev.t, extra, people)

    def _tailgated(self, st: State, key: str, t: float, extra: int, people: int) -> list[Signal]:
        out = self.fire(st, key, t, passages=people, extra=extra, max_count=self.spec.max_count)
        st.data.pop("refs", None)
        st.data["active"] = False
        return out

    def _settle_at(self, t: float) -> float:
        """When an event at device time t has settled: settle_s after it, and after the hub received it."""
        received = self.ctx.received
        return max(t, t if received is None else received) + self.spec.settle_s

    def _stored_due(self, entry: list[Any], at: int) -> float:
        """A settling entry's due, kept at index `at` (a repeat [entry, previous entry, due]: 2; a passage [t,
        extra, people, due, device, seq]: 3); one stored before the received bound has only its time."""
        return entry[at] if len(entry) > at else entry[0] + self.spec.settle_s

    def _pay(self, d: dict[str, Any], grant: Event, allowance: float) -> float:
        """A grant that came after passages it allows pays for them; returns the allowance left."""
        unpaid = d.get("unpaid")
        if not unpaid:
            return allowance
        granted = grant.t
        for u in unpaid:
            # Older than the passage by time, or by its device's seq though another worker's clock says newer.
            ordered = granted <= u[0] + _ORDER_SLACK_S or (
                len(u) > 5 and _seq_before(grant.device_id, grant.seq, granted, u[4:6], u[0]))
            if allowance > 0 and ordered and u[0] - granted <= self.spec.window_s:
                spent = min(u[1], allowance)
                u[1] -= spent
                allowance -= spent
        d["unpaid"] = [u for u in unpaid if u[1] > 0]
        if not d["unpaid"]:
            del d["unpaid"]
        return allowance

    def _next_due(self, d: dict[str, Any], due: float | None) -> float | None:
        """The earlier of `due` and the first unpaid passage's settle."""
        settles = [self._stored_due(u, 3) for u in d.get("unpaid", ())]
        return min([*settles, *([] if due is None else [due])], default=None)

    def _settle_passages(self, st: State, key: str, now: float) -> list[Signal]:
        """count_per_grant with settle_s: passages no grant arrived for are tailgating."""
        d = st.data
        out: list[Signal] = []
        keep = []
        for u in d.pop("unpaid"):
            if self._stored_due(u, 3) <= now:
                out.extend(self._tailgated(st, key, u[0], int(u[1]), int(u[2])))
            else:
                keep.append(u)
        if keep:
            d["unpaid"] = keep
        last_grant = d.get("last_grant")
        expiry = None if last_grant is None else last_grant + self.spec.window_s
        if expiry is not None and expiry <= now and not keep:
            d.clear()
            expiry = None
        st.due = self._next_due(d, expiry)
        return out
