"""absence: no matching activity from a subject for a timeout (device offline, an inactive resident)."""

from __future__ import annotations

from hub.rules.event import Event, Place, Signal, State, matches
from hub.rules.kinds.base import Rule


class Absence(Rule):
    """A per-subject deadline that every activity pushes back; a will message can fire at once."""

    def types(self) -> set[str] | None:
        """Any type when every message counts."""
        if not self.spec.when:
            return None
        return {t for m in self.spec.when for t in m.type} | {"birth", "state"}

    def watches(self, ev: Event) -> bool:
        """Registered devices of the watched kinds (and residents' devices when so configured)."""
        if ev.device is None or (self.spec.kinds and ev.kind not in self.spec.kinds):
            return False
        return super().watches(ev)

    def _timeout(self, st: State) -> float:
        if self.spec.timeout_s is not None:
            return float(self.spec.timeout_s)
        return float(self.spec.intervals * st.data.get("interval", 60.0))

    def on_event(self, st: State, ev: Event) -> list[Signal]:
        """Push the deadline back, or fire on a will."""
        d = st.data
        key = self.key_of(ev)
        if ev.device is not None:
            d.setdefault("interval", ev.device.interval_s)
        if ev.type == "birth":
            d["session"] = ev.get("session")
            if self.spec.intervals is not None:
                d["interval"] = float(ev.get("interval_s"))
        if ev.type == "state" and ev.get("status") == "offline":
            if not self.spec.offline_state or ev.get("session") < d.get("session", 0):
                return []  # a stale will from an older session says nothing about this one
            self.remember(st, ev)
            d["offline"] = True
            st.due = None
            return self.fire(st, key, ev.t, reason="will", session=ev.get("session"))
        if self.spec.when and not matches(self.spec.when, ev):
            return []
        out = self.clear(st, key, ev.t) if d.get("active") else []
        d.pop("offline", None)
        d["place"] = ev.place.to_dict()
        last = d.get("last")
        # Store the new time only when it moves the deadline noticeably: fewer state writes at high rates.
        if last is None or ev.t - last >= min(60.0, self._timeout(st) * 0.05) or out or st.due is None \
                or not d.get("refs"):
            d["last"] = ev.t
            d["refs"] = [ev.ref()]  # the last sign of life is the evidence an absence alert carries
            st.due = ev.t + self._timeout(st)
        return out

    def on_timer(self, st: State, key: str, now: float) -> list[Signal]:
        """The deadline passed with no activity."""
        st.due = None
        d = st.data
        if d.get("active"):
            return []
        last = d.get("last", now)
        if now - last < self._timeout(st):
            st.due = last + self._timeout(st)
            return []
        return self.fire(st, key, now, timeout_s=self._timeout(st), silent_s=round(now - last, 1))

    def seed(self, known: set[str], now: float) -> dict[str, State]:
        """Start a deadline for every watched subject that has never reported."""
        out: dict[str, State] = {}
        ctx = self.ctx
        if self.spec.key == "resident":
            for r in ctx.community.residents:
                devs = [ctx.devices[d] for d in r.devices
                        if not self.spec.kinds or ctx.devices[d].kind in self.spec.kinds]
                if devs and r.ref not in known:
                    st = State({"last": now, "place": Place(ctx.community.site.id, r.grid, r.building, r.unit,
                                                            devs[0].id).to_dict()})
                    st.due = now + self._timeout(st)
                    out[r.ref] = st
            return out
        for d in ctx.community.devices:
            if d.id in known or (self.spec.kinds and d.kind not in self.spec.kinds):
                continue
            if self.spec.residents_only and d.id not in ctx.resident_of:
                continue
            st = State({"last": now, "interval": d.interval_s, "place": ctx.place(d.id).to_dict()})
            st.due = now + self._timeout(st)
            out[d.id] = st
        return out
