"""absence: no matching activity from a subject for a timeout (device offline, an inactive resident)."""

from __future__ import annotations

from typing import Any

from hub.rules.event import Event, Place, Signal, State, matches
from hub.rules.kinds.base import Rule

AGENT = "agent/"  # key prefix of an edge agent (it owns the will of every device it serves)
_MAX_LISTED = 20  # devices named in an agent alert's thresholds (the count is always exact)


class Absence(Rule):
    """A per-subject deadline that every activity pushes back; a will fires at once, a planned stop never.

    States are ordered by their session number, not by their timestamps: a will is stamped when its session
    connected, older than that session's own `online`, yet it is that session's last word.
    """

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

    def takes(self, kind: str, body_type: str) -> bool:
        """An agent's own messages (offline rules), else only the watched kinds (as keys and watches)."""
        if self.spec.offline_state and kind == "agent":
            return body_type in ("state", "birth")
        if self.spec.offline_state and body_type == "birth":
            return True  # a device's birth names its agent, whose key it also touches
        return not self.spec.kinds or kind in self.spec.kinds

    def keys(self, ev: Event) -> list[str]:
        """The device's key, plus its agent's key for births and the agent's own states (offline rules)."""
        spec = self.spec
        if spec.offline_state and ev.kind == "agent":
            return [AGENT + ev.device_id] if ev.type in ("state", "birth") else []
        # Rule.keys without its calls for the usual key (every message comes here).
        out = super().keys(ev) if spec.key != "device" else [ev.device_id] if ev.device_id and self.watches(ev) else []
        if spec.offline_state and ev.type == "birth" and ev.get("agent"):
            out.append(AGENT + str(ev.get("agent")))
        return out

    def _timeout(self, st: State) -> float:
        if self.spec.timeout_s is not None:
            return float(self.spec.timeout_s)
        return float(self.spec.intervals * st.data.get("interval", 60.0))

    def on_key_event(self, st: State, key: str, ev: Event) -> list[Signal]:
        """An agent's key gets births and the agent's own states; a device's key everything else."""
        if key.startswith(AGENT):
            return self._agent(st, key, ev)
        return self.on_event(st, ev)

    def on_event(self, st: State, ev: Event) -> list[Signal]:
        """Push the deadline back, mark a planned stop, or fire on a will."""
        key = self.key_of(ev)
        d = st.data
        if ev.device is not None:
            d.setdefault("interval", ev.device.interval_s)
        session = ev.get("session")
        if ev.type == "birth" or (ev.type == "state" and ev.get("status") == "online"):
            if session is not None and session <= d.get("down", -1):
                return []  # a repeat of the session that went down (a retained or redelivered message)
            if session is not None:
                d["session"] = max(session, d.get("session", 0))
            if ev.type == "birth" and self.spec.intervals is not None:
                d["interval"] = float(ev.get("interval_s"))
        if ev.type == "state" and ev.get("status") == "offline":
            if not self.spec.offline_state or session < d.get("session", 0):
                return []  # a stale will from an older session says nothing about this one
            d["down"] = session
            st.due = None
            if ev.get("clean"):
                d["offline"] = "stopped"  # a planned stop: offline, and nobody needs to be told
                return []
            self.remember(st, ev)
            d["offline"] = "will"
            return self._will(st, key, ev.t)
        if self.spec.when and not matches(self.spec.when, ev):
            return []
        if "down" in d and ev.type != "birth" and not (ev.type == "state" and ev.get("status") == "online"):
            return []  # replayed history from before it went down; a new session revives it
        out = self.clear(st, key, ev.t) if d.get("active") else []
        revived = d.pop("offline", None) is not None
        d.pop("down", None)
        d.pop("will_at", None)  # back within the grace: the will it left says nothing now
        d["place"] = ev.place.to_dict()
        last = d.get("last")
        if last is not None and ev.t < last and not revived:
            return out  # a late delivery must not move the deadline back
        # Store the new time only when it moves the deadline noticeably: fewer state writes at high rates.
        if last is None or revived or ev.t - last >= min(60.0, self._timeout(st) * 0.05) or out \
                or st.due is None or not d.get("refs"):
            d["last"] = ev.t if last is None or revived else max(ev.t, last)
            d["refs"] = [ev.ref()]  # the last sign of life is the evidence an absence alert carries
            st.due = d["last"] + self._timeout(st)
        return out

    def _agent(self, st: State, key: str, ev: Event) -> list[Signal]:
        """An agent's key: which devices it serves (from their births) and its own online/offline states."""
        d = st.data
        session = ev.get("session")
        if ev.kind != "agent":  # a device's birth naming this agent, in the session it belongs to
            served: dict[str, int] = d.setdefault("devices", {})
            served[ev.device_id] = max(int(session or 0), served.get(ev.device_id, 0))
            return []
        if ev.type == "birth" or ev.get("status") == "online":
            if session is None or session <= d.get("down", -1):
                return []
            d["session"] = max(session, d.get("session", 0))
            d.pop("down", None)
            d.pop("fanout", None)
            if d.pop("will_at", None) is not None:
                st.due = None  # back within the grace (a broker restart): no alert
            return self.clear(st, key, ev.t) if d.get("active") else []
        if session < d.get("session", 0) or session <= d.get("down", -1):
            return []  # a stale will, or a repeat of this one
        d["down"] = session
        d["fanout"] = {"session": session, "clean": bool(ev.get("clean"))}
        if ev.get("clean"):
            return []  # a planned stop (commhub up stopping, an upgrade): the devices go quietly offline
        d["place"] = self._common_place(self.served(st, session)).to_dict()
        d["refs"] = [ev.ref()]
        return self._will(st, key, ev.t)

    def _will(self, st: State, key: str, t: float) -> list[Signal]:
        """Fire on a will now, or once its grace has passed with no newer session (see on_timer)."""
        grace = self.spec.will_grace_s
        if grace > 0:
            st.data["will_at"] = t
            st.due = t + grace
            return []
        return self._fire_will(st, key, t)

    def _fire_will(self, st: State, key: str, t: float) -> list[Signal]:
        session = int(st.data["down"])
        if not key.startswith(AGENT):
            return self.fire(st, key, t, reason="will", session=session)
        devices = self.served(st, session)
        return self.fire(st, key, t, reason="will", session=session, devices=len(devices),
                         listed=",".join(devices[:_MAX_LISTED]))

    @staticmethod
    def served(st: State, session: int) -> list[str]:
        """The devices an agent served in a session (their births named it, with that session)."""
        return sorted(k for k, v in st.data.get("devices", {}).items() if v == session)

    def mark_down(self, st: State, fanout: dict[str, Any]) -> None:
        """A device whose agent died (or stopped): offline now, with no alert of its own."""
        d = st.data
        if fanout["session"] < d.get("session", 0) or "down" in d:
            return  # the device already lives in a newer session, or is already down
        d["down"] = fanout["session"]
        d["offline"] = "stopped" if fanout["clean"] else "agent"
        st.due = None

    def _common_place(self, devices: list[str]) -> Place:
        places = [self.ctx.place(x) for x in devices] or [Place(self.ctx.community.site.id, "unassigned")]
        grid = places[0].grid if all(p.grid == places[0].grid for p in places) else "unassigned"
        building = places[0].building if all(p.building == places[0].building for p in places) else None
        unit = places[0].unit if building and all(p.unit == places[0].unit for p in places) else None
        return Place(self.ctx.community.site.id, grid, building, unit, None)

    def on_timer(self, st: State, key: str, now: float) -> list[Signal]:
        """The deadline passed with no activity."""
        st.due = None
        d = st.data
        if "will_at" in d:  # a will's grace ran out with no newer session: it stands
            d.pop("will_at")
            return [] if d.get("active") else self._fire_will(st, key, now)
        if d.get("active") or "down" in d:
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
