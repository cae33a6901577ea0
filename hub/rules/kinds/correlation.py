"""correlation: member-rule signals (and raw events) from several devices in one place make one incident."""

from __future__ import annotations

from hub.rules.event import Event, Place, Signal, State, add_ref, matches, may_match
from hub.rules.kinds.base import Rule


class Correlation(Rule):
    """Count distinct devices per place within a window; fire once the count reaches min_devices."""

    def takes(self, kind: str, body_type: str) -> bool:
        """Only what `also` could match (keys() gives no key to any other event)."""
        return bool(self.spec.also) and may_match(self.spec.also, kind, body_type)

    def keys(self, ev: Event) -> list[str]:
        """Raw events in `also` count by their place, or (key door) at every door their camera covers."""
        if not self.spec.also or not matches(self.spec.also, ev):
            return []
        if self.spec.key == "door":
            return list(self.ctx.doors_seen_by.get(ev.device_id, ()))
        return super().keys(ev)

    def place_key(self, place: Place) -> str | None:
        """The scope key (door device, building or grid) of a place."""
        if self.spec.key == "door":
            return place.device
        return place.building if self.spec.key == "building" else place.grid

    def on_key_event(self, st: State, key: str, ev: Event) -> list[Signal]:
        """A raw event that counts as evidence at one of its keys."""
        if self.spec.key == "door":
            door = self.ctx.place(key)
            return self._add(st, key, door, ev.t, ev.device_id, ev.ref(), None)
        return self.on_event(st, ev)

    def on_event(self, st: State, ev: Event) -> list[Signal]:
        """A raw event that counts as evidence."""
        return self._add(st, self.key_of(ev), ev.place, ev.t, ev.device_id, ev.ref(), None)

    def on_signal(self, st: State, key: str, sig: Signal) -> list[Signal]:
        """A member rule fired."""
        device = sig.place.device or sig.subject
        ref = sig.refs[-1] if sig.refs else {"device_id": device, "seq": 0, "t": sig.t, "type": sig.code}
        return self._add(st, key, sig.place, sig.t, device, ref, [sig.rule, sig.subject])

    def _add(self, st: State, key: str, place: Place, t: float, device: str, ref: dict[str, object],
             member: list[str] | None) -> list[Signal]:
        d = st.data
        # One entry per (device, member), the newest: the count is of distinct devices, and a camera sending an
        # event a second would otherwise grow the state (and every batch's encode of it) with the window.
        window, newer = self.spec.window_s, False
        seen = []
        for x in d.get("seen", []):
            if t - x[0] > window:
                continue
            if x[1] == device and x[2] == member:
                if x[0] < t:
                    continue
                newer = True  # a late, older event does not shorten the evidence
            seen.append(x)
        if not newer:
            seen.append([t, device, member])
        d["seen"] = seen
        d["refs"] = add_ref(d.get("refs", []), ref)
        if self.spec.key == "door":
            d.setdefault("place", Place(place.site, place.grid, place.building, place.unit, place.device).to_dict())
        else:
            d.setdefault("place", Place(place.site, place.grid,
                                        place.building if self.spec.key == "building" else None, None,
                                        None).to_dict())
        st.due = t + self.spec.window_s
        devices = {x[1] for x in seen}
        members = [x[2] for x in seen if x[2]]
        if len(devices) < self.spec.min_devices or not members:
            return []
        out = self.fire(st, key, t, devices=len(devices), min_devices=self.spec.min_devices,
                        window_s=self.spec.window_s)
        for sig in out:
            sig.incident = sig.subject
            sig.members = [(r, s) for r, s in members]
        return out

    def on_timer(self, st: State, key: str, now: float) -> list[Signal]:
        """Forget evidence older than the window."""
        st.due = None
        d = st.data
        d["seen"] = [x for x in d.get("seen", []) if now - x[0] < self.spec.window_s]
        if not d["seen"]:
            d.clear()  # the incident stays open in the alert store; this rule only needed the window
        else:
            st.due = min(x[0] for x in d["seen"]) + self.spec.window_s
        return []
