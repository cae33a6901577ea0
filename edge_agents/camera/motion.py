"""Motion in zones: MOG2 background subtraction on a small grey frame, with masks."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from edge_agents.camera.config import MotionSettings
from edge_agents.camera.geometry import BoxT

_KERNEL = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (3, 3))


@dataclass(frozen=True, slots=True)
class MotionResult:
    """Motion in one frame: the verdict, moving area (% of the watched pixels), zones and where it is."""

    active: bool
    area_pct: float
    zones: tuple[str, ...]
    box: BoxT | None  # bounding box of the moving blobs, in motion-frame pixels
    blobs: tuple[BoxT, ...] = ()  # the moving blobs themselves (motion-frame pixels)


class MotionDetector:
    """Feed small grey frames; each gives a MotionResult. Zones are (name, uint8 mask) at the same size."""

    def __init__(self, settings: MotionSettings, fps: float, zones: Sequence[tuple[str, np.ndarray]],
                 watched: np.ndarray) -> None:
        self.settings = settings
        self.fps = fps
        self.watched = watched  # 255 where motion counts (the frame minus masks)
        self.zones = [(name, cv2.bitwise_and(m, watched)) for name, m in zones]
        self._zone_px = [max(1, cv2.countNonZero(m)) for _, m in self.zones]
        self._watched_px = max(1, cv2.countNonZero(watched))
        self._all_watched = self._watched_px == watched.size
        self._mog: cv2.BackgroundSubtractorMOG2 | None = None
        self.frames = 0  # frames seen since the background model started (1: the first, no background yet)
        self._min_blob = max(4, int(watched.size * 0.0002))

    def apply(self, grey: np.ndarray) -> MotionResult:
        """Update the background with one frame and report its motion."""
        if self._mog is None:
            history = max(10, int(self.settings.history_s * self.fps))
            # Shadow detection stays off: on grey frames it calls any darker pixel a shadow, and so it hid
            # people in grey clothes (TUD-Campus recall fell from 1.0 to 0.67 with it on).
            self._mog = cv2.createBackgroundSubtractorMOG2(history=history,
                                                           varThreshold=self.settings.var_threshold,
                                                           detectShadows=False)
        blurred = cv2.GaussianBlur(grey, (5, 5), 0)
        fg = self._mog.apply(blurred)
        self.frames += 1
        if self.frames == 1:
            # MOG2 calls the whole first frame foreground: there is no background yet.
            return MotionResult(False, 0.0, (), None)
        fg = cv2.morphologyEx(fg, cv2.MORPH_OPEN, _KERNEL)
        if not self._all_watched:
            fg = cv2.bitwise_and(fg, self.watched)
        moving = cv2.countNonZero(fg)
        area_pct = min(100.0, moving * 100.0 / self._watched_px)
        if moving == 0:
            return MotionResult(False, 0.0, (), None)
        threshold = self.settings.min_area_pct
        zones = tuple(name for (name, m), px in zip(self.zones, self._zone_px, strict=True)
                      if cv2.countNonZero(cv2.bitwise_and(fg, m)) * 100.0 / px >= threshold)
        active = bool(zones) if self.zones else area_pct >= threshold
        blobs = self._blobs(fg)
        return MotionResult(active, area_pct, zones, _union(blobs) if active else None, blobs)

    def _blobs(self, fg: np.ndarray) -> tuple[BoxT, ...]:
        # Only blobs big enough to matter, so stray pixels don't stretch the detection area.
        n, _, stats, _ = cv2.connectedComponentsWithStats(fg, connectivity=8)
        keep = stats[1:n][stats[1:n, cv2.CC_STAT_AREA] >= self._min_blob]
        return tuple((int(x), int(y), int(w), int(h)) for x, y, w, h, _ in keep)


def _union(blobs: tuple[BoxT, ...]) -> BoxT | None:
    if not blobs:
        return None
    x0 = min(b[0] for b in blobs)
    y0 = min(b[1] for b in blobs)
    x1 = max(b[0] + b[2] for b in blobs)
    y1 = max(b[1] + b[3] for b in blobs)
    return (x0, y0, x1 - x0, y1 - y0)
