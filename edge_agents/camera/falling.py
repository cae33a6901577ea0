"""High-altitude throw: a small moving blob that falls, speeding up, seen by a camera looking up a facade."""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from itertools import pairwise

import numpy as np

from commhub.wire import FallingObject
from edge_agents.camera.config import FallingSettings
from edge_agents.camera.geometry import BoxT


@dataclass(slots=True)
class _Chain:
    points: list[tuple[float, float, float]] = field(default_factory=list)  # (ts, x, y), y down, motion px
    fired: bool = False


class FallingDetector:
    """Link small blobs frame to frame into downward chains; a long enough, accelerating fall is a throw."""

    def __init__(self, camera_id: str, settings: FallingSettings, frame_size: tuple[int, int], fps: float,
                 run_id: str) -> None:
        self.settings = settings
        self.size = frame_size
        self.fps = fps
        self.run_id = run_id
        self._chains: list[_Chain] = []
        self._count = 0
        self._frames = 0
        self._tag = hashlib.blake2s(camera_id.encode(), digest_size=3).hexdigest()

    def step(self, blobs: tuple[BoxT, ...], ts: float) -> list[FallingObject]:
        """One frame's motion blobs (motion-frame pixels) at `ts`."""
        s = self.settings
        w, h = self.size
        self._frames += 1
        if self._frames <= self.fps:
            return []  # the background model is still settling: its first second is full of specks
        limit = s.max_area_pct * w * h / 100.0
        room = round(s.isolation * w)
        grown = [_grow(b, room) for b in blobs]
        # A thing in free fall is small and alone: blobs with another blob close by are parts of something
        # bigger (a walking person falls apart into arms, legs and torso), and so are blobs that are too big.
        small = [(x + bw / 2, y + bh / 2) for i, (x, y, bw, bh) in enumerate(blobs)
                 if bw * bh <= limit
                 and not any(j != i and _overlaps(grown[i], b) for j, b in enumerate(blobs))]
        # A chain waits at most two frame periods for its next point; a thrown object never stops mid-air.
        self._chains = [c for c in self._chains if ts - c.points[-1][0] <= 2.5 / self.fps]
        used: set[int] = set()
        for chain in sorted(self._chains, key=lambda c: -len(c.points)):
            best = self._match(chain, small, used)
            if best is not None:
                used.add(best)
                chain.points.append((ts, *small[best]))
        self._chains += [_Chain([(ts, *p)]) for i, p in enumerate(small) if i not in used]
        out = []
        for chain in self._chains:
            if not chain.fired and self._is_fall(chain):
                chain.fired = True
                self._count += 1
                out.append(FallingObject(event_id=f"{self._tag}-{self.run_id}-fall{self._count}",
                                         est_floor=self._floor(chain.points[0][2])))
        return out

    def _match(self, chain: _Chain, blobs: list[tuple[float, float]], used: set[int]) -> int | None:
        _, px, py = chain.points[-1]
        h = self.size[1]
        best, best_d = None, math.inf
        for i, (x, y) in enumerate(blobs):
            dy = y - py
            # Downwards, mostly vertical (wind and a throw's push give some drift), not a jump across the frame.
            if i in used or dy <= 0 or dy > 0.6 * h or abs(x - px) > max(0.03 * self.size[0], 0.5 * dy):
                continue
            d = abs(x - px) + abs(dy - self._expected_dy(chain))
            if d < best_d:
                best, best_d = i, d
        return best

    @staticmethod
    def _expected_dy(chain: _Chain) -> float:
        if len(chain.points) < 2:
            return 0.0
        (_, _, y0), (_, _, y1) = chain.points[-2], chain.points[-1]
        return y1 - y0

    def _is_fall(self, chain: _Chain) -> bool:
        s = self.settings
        pts = chain.points
        if len(pts) < s.min_points:
            return False
        drop = pts[-1][2] - pts[0][2]
        if drop < s.min_drop * self.size[1] or abs(pts[-1][1] - pts[0][1]) > 0.5 * drop:
            return False
        # Gravity: the speed grows. Steps may wobble (blob centres jitter), so compare the halves.
        speeds = [(b[2] - a[2]) / max(1e-6, b[0] - a[0]) for a, b in pairwise(pts)]
        half = len(speeds) // 2
        early = sum(speeds[:half]) / max(1, half)
        late = sum(speeds[half:]) / max(1, len(speeds) - half)
        if late < early * s.min_speedup or late < s.min_speed * self.size[1]:
            return False
        # And the path is a smooth parabola in time (y) and a line (x): chains stitched from unrelated specks
        # are not.
        t = np.array([p[0] - pts[0][0] for p in pts])
        for values, degree in ((np.array([p[2] for p in pts]), 2), (np.array([p[1] for p in pts]), 1)):
            fit = np.polyval(np.polyfit(t, values, degree), t)
            if float(np.sqrt(np.mean((values - fit) ** 2))) > s.max_residual * drop:
                return False
        return True

    def _floor(self, y: float) -> int | None:
        s = self.settings
        if s.floors is None:
            return None
        rel = (s.ground_y - y / self.size[1]) / (s.ground_y - s.roof_y)
        return max(1, min(s.floors, 1 + int(rel * s.floors)))


def _grow(box: BoxT, by: int) -> BoxT:
    x, y, w, h = box
    return (x - by, y - by, w + 2 * by, h + 2 * by)


def _overlaps(a: BoxT, b: BoxT) -> bool:
    return a[0] < b[0] + b[2] and b[0] < a[0] + a[2] and a[1] < b[1] + b[3] and b[1] < a[1] + a[3]
