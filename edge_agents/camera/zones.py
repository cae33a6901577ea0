"""Object events from tracks: zones entered, dwell (intrusion, loitering), line crossings, crowd counts."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from commhub.wire import Box, CameraCrowd, CameraLineCross, CameraObject, FallingObject
from edge_agents.camera.config import Line, TrackSettings, Zone
from edge_agents.camera.geometry import foot, inside, segments_cross, side
from edge_agents.camera.tracker import Track

WireBody = CameraObject | CameraLineCross | CameraCrowd | FallingObject


@dataclass(frozen=True, slots=True)
class Pending:
    """A body to publish; `snapshot` asks the pipeline to attach a JPEG of this frame."""

    body: WireBody
    snapshot: bool = False


@dataclass(slots=True)
class _Obj:
    event_id: str
    zones_in: dict[str, float] = field(default_factory=dict)  # zone -> when the person entered it
    outside: dict[str, float] = field(default_factory=dict)  # zone -> since when the feet are outside it
    entered: list[str] = field(default_factory=list)
    fired: set[tuple[str, str]] = field(default_factory=set)  # (zone, "intrusion" | "loiter") already reported
    sides: dict[str, tuple[float, tuple[float, float]]] = field(default_factory=dict)  # line -> (side, point)
    last_report: float = 0.0


@dataclass(slots=True)
class _Crowd:
    reported: int = 0
    candidate: int = 0
    since: float = 0.0


class ZoneAnalytics:
    """Turn tracker output into CameraObject (new/update/end), CameraLineCross and CameraCrowd bodies.

    Zones and lines are given in analysis-frame pixels. A person is where their feet are (box bottom centre).
    """

    def __init__(self, camera_id: str, settings: TrackSettings, zones: Sequence[tuple[Zone, np.ndarray]],
                 lines: Sequence[tuple[Line, np.ndarray, np.ndarray]], frame_size: tuple[int, int],
                 run_id: str) -> None:
        self.camera_id = camera_id
        self.settings = settings
        self.zones = list(zones)
        self.lines = list(lines)
        w, h = frame_size
        self.margin = settings.line_margin * (w * w + h * h) ** 0.5
        self.frame_size = frame_size
        self.run_id = run_id
        self._objs: dict[int, _Obj] = {}
        self._crowds = {z.name: _Crowd() for z, _ in self.zones if z.crowd}
        self._tag = hashlib.blake2s(camera_id.encode(), digest_size=3).hexdigest()

    def step(self, live: list[Track], confirmed: list[Track], ended: list[Track], ts: float,
             counted: list[Track] | None = None) -> list[Pending]:
        """One frame: the live tracks, those confirmed now, those that ended now, and those counted (crowds)."""
        out: list[Pending] = []
        new_ids = {t.id for t in confirmed}
        for t in live:
            obj = self._objs.get(t.id)
            if obj is None:
                obj = self._objs[t.id] = _Obj(event_id=f"{self._tag}-{self.run_id}-{t.id}")
                self._seed_sides(obj, t)
            changed, fired = self._zones_step(obj, t, ts)
            out.extend(self._lines_step(obj, t))
            if t.id in new_ids:
                out.append(Pending(self._object(obj, t, "new", ts), snapshot=True))
                obj.last_report = ts
            elif changed or fired or ts - obj.last_report >= self.settings.update_s:
                # First intrusion of a zone carries a snapshot: it is what the guard looks at.
                snap = any(k == "intrusion" for _, k in fired)
                out.append(Pending(self._object(obj, t, "update", ts), snapshot=snap))
                obj.last_report = ts
        for t in ended:
            obj = self._objs.pop(t.id, None)
            if obj is not None:
                out.append(Pending(self._object(obj, t, "end", ts, ended=True)))
        out.extend(self._crowd_step(live if counted is None else counted, ts))
        return out

    # ---- zones ------------------------------------------------------------------------------------

    def _zones_step(self, obj: _Obj, t: Track, ts: float) -> tuple[bool, list[tuple[str, str]]]:
        p = foot(t.box)
        now_in = {z.name for z, poly in self.zones if inside(poly, p)}
        before = set(obj.zones_in)
        for name in now_in:
            obj.outside.pop(name, None)
            if name not in obj.zones_in:
                obj.zones_in[name] = ts
                if name not in obj.entered:
                    obj.entered.append(name)
        for name in before - now_in:
            # Leaving needs zone_exit_s outside: a box that flickers (legs missed for a frame) must not
            # restart the dwell clock or flood updates.
            left = obj.outside.setdefault(name, ts)
            if ts - left >= self.settings.zone_exit_s:
                del obj.zones_in[name]
                del obj.outside[name]
        changed = set(obj.zones_in) != before
        fired: list[tuple[str, str]] = []
        for z, _ in self.zones:
            since = obj.zones_in.get(z.name)
            if since is None:
                continue
            for kind, limit in (("intrusion", z.intrusion_s), ("loiter", z.loiter_s)):
                if limit is not None and ts - since >= limit and (z.name, kind) not in obj.fired:
                    obj.fired.add((z.name, kind))
                    fired.append((z.name, kind))
        return changed, fired

    def _object(self, obj: _Obj, t: Track, phase: Literal["new", "update", "end"], ts: float,
                ended: bool = False) -> CameraObject:
        x, y, w, h = t.box
        zones = () if ended else tuple(name for name in obj.entered if name in obj.zones_in)
        dwell = max((ts - since for since in obj.zones_in.values()), default=0.0)
        return CameraObject(event_id=obj.event_id, phase=phase, label="person",
                            score=_score(t.score), box=Box(x=x, y=y, w=w, h=h), zones=zones,
                            entered_zones=tuple(obj.entered), dwell_s=round(max(0.0, dwell), 2))

    # ---- lines ------------------------------------------------------------------------------------

    def _seed_sides(self, obj: _Obj, t: Track) -> None:
        """A new object starts on the side of each line where its track was first seen, not where it is now.

        A track is confirmed on its second detection; in a group walking together that can be a run or two
        after its first, and the person may have crossed meanwhile (on TUD-Campus a track first seen left of
        the line was confirmed on it and seen right of it next: the crossing was lost).
        """
        if t.born_box is None:
            return
        p = foot(t.born_box)
        for ln, a, b in self.lines:
            d = side(a, b, p)
            if abs(d) >= self.margin:
                obj.sides[ln.name] = (1.0 if d > 0 else -1.0, p)

    def _lines_step(self, obj: _Obj, t: Track) -> list[Pending]:
        p = foot(t.box)
        out = []
        for ln, a, b in self.lines:
            d = side(a, b, p)
            if abs(d) < self.margin:
                continue  # too close to the line to tell the side: box jitter must not count as crossings
            s = 1.0 if d > 0 else -1.0
            prev = obj.sides.get(ln.name)
            obj.sides[ln.name] = (s, p)
            if prev is None or prev[0] == s or not segments_cross(prev[1], p, a, b):
                continue
            into_right = s > 0
            direction: Literal["in", "out"] = "in" if into_right == (ln.in_side == "right") else "out"
            out.append(Pending(CameraLineCross(event_id=obj.event_id, line=ln.name, direction=direction,
                                               label="person"), snapshot=True))
        return out

    # ---- crowd ------------------------------------------------------------------------------------

    def _crowd_step(self, live: list[Track], ts: float) -> list[Pending]:
        out = []
        for z, poly in self.zones:
            c = self._crowds.get(z.name)
            if c is None:
                continue
            n = sum(1 for t in live if inside(poly, foot(t.box)))
            if n != c.candidate:
                c.candidate, c.since = n, ts
            if c.candidate != c.reported and ts - c.since >= self.settings.crowd_hold_s:
                c.reported = c.candidate
                out.append(Pending(CameraCrowd(zone=z.name, count=c.reported), snapshot=c.reported > 0))
        return out

    def counts(self, live: list[Track]) -> dict[str, int]:
        """People per zone now."""
        return {z.name: sum(1 for t in live if inside(poly, foot(t.box))) for z, poly in self.zones}


def _score(svm: float) -> float:
    # The HOG SVM margin is unbounded; squash it into 0..1 for the wire (0 margin -> 0.5).
    return round(float(1.0 / (1.0 + np.exp(-svm))), 3)
