"""Camera tamper: covered or dark, defocused, moved (scene change against a learned reference), signal lost."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Literal

import cv2
import numpy as np

from commhub.wire import Tamper
from edge_agents.camera.config import TamperSettings

log = logging.getLogger(__name__)

TamperKind = Literal["covered", "defocused", "moved", "signal_lost"]
_DILATE = cv2.getStructuringElement(cv2.MORPH_RECT, (5, 5))
_MIN_EDGE_FRACTION = 0.005  # a reference with fewer edge pixels (a blank wall, darkness) cannot show a move


@dataclass(frozen=True, slots=True)
class TamperMetrics:
    """The measurements of the last frame, for offline analysis and tuning."""

    mean: float
    std: float
    sharpness: float
    ref_sharpness: float
    change: float


class _Condition:
    """Raise after `hold_s` of continuous presence, clear after `clear_s` of continuous absence."""

    def __init__(self, kind: TamperKind, hold_s: float, clear_s: float) -> None:
        self.kind = kind
        self.hold_s = hold_s
        self.clear_s = clear_s
        self.active = False
        self._since: float | None = None  # start of the current run that contradicts the state

    def update(self, present: bool, ts: float) -> Tamper | None:
        if present == self.active:
            self._since = None
            return None
        if self._since is None:
            self._since = ts
        if ts - self._since >= (self.hold_s if present else self.clear_s):
            self.active, self._since = present, None
            return Tamper(kind=self.kind, active=present)
        return None

    @property
    def pending(self) -> bool:
        return self._since is not None


class TamperDetector:
    """Feed a small and a medium grey frame per analysed frame; returns Tamper bodies when a state changes."""

    def __init__(self, settings: TamperSettings, fps: float) -> None:
        self.settings = settings
        self.fps = fps
        s = settings
        self._conds = {k: _Condition(k, s.hold_s, s.clear_s) for k in ("covered", "defocused", "moved")}
        self._lost = _Condition("signal_lost", 0.0, 0.0)
        self._last_frame_ts: float | None = None
        self._learn_start: float | None = None
        self._learn_sharp: list[float] = []
        self._edge_avg: np.ndarray | None = None
        self._ref_edges: np.ndarray | None = None
        self._ref_count = 0
        self._ref_sharp = 0.0
        self._frames = 0
        self.metrics = TamperMetrics(0.0, 0.0, 0.0, 0.0, 0.0)

    @property
    def learned(self) -> bool:
        """The reference scene (sharpness, edges) is learned."""
        return self._ref_edges is not None

    def active(self) -> list[TamperKind]:
        """Tamper kinds raised now."""
        return [c.kind for c in (*self._conds.values(), self._lost) if c.active]

    def update(self, small: np.ndarray, medium: np.ndarray, ts: float) -> list[Tamper]:
        """One frame: `small` is the motion-size grey frame, `medium` a larger one for sharpness."""
        s = self.settings
        out: list[Tamper] = []
        if self._lost.active:
            cleared = self._lost.update(False, ts)
            if cleared is not None:
                out.append(cleared)
        self._last_frame_ts = ts
        mean, std = cv2.meanStdDev(small)
        mean_v, std_v = float(mean[0, 0]), float(std[0, 0])
        sharp = float(cv2.Laplacian(medium, cv2.CV_32F).var())
        edges = cv2.Canny(cv2.GaussianBlur(small, (3, 3), 0), 50, 150)
        covered = mean_v < s.dark_mean or std_v < s.uniform_std
        scene_change = 0.0
        defocused = moved = False
        if self._ref_edges is None:
            if not covered:
                self._learn(sharp, edges, ts)
        else:
            defocused = not covered and sharp < s.blur_ratio * self._ref_sharp
            if self._ref_count > 0:
                found = cv2.countNonZero(cv2.bitwise_and(self._ref_edges, cv2.dilate(edges, _DILATE)))
                scene_change = 1.0 - found / self._ref_count
            moved = not covered and not defocused and self._ref_count > 0 and scene_change >= s.moved_change
        self.metrics = TamperMetrics(round(mean_v, 1), round(std_v, 1), round(sharp, 1),
                                     round(self._ref_sharp, 1), round(scene_change, 3))
        for kind, present in (("covered", covered), ("defocused", defocused), ("moved", moved)):
            result = self._conds[kind].update(present, ts)
            if result is not None:
                log.info("camera tamper %s %s", kind, "raised" if present else "cleared")
                out.append(result)
        if self._ref_edges is not None and not (covered or defocused or moved) and not self.active():
            self._adapt(sharp, edges)
        return out

    def missing(self, ts: float) -> list[Tamper]:
        """No frame at `ts`: raise signal_lost once frames have been missing for signal_lost_s."""
        if self._last_frame_ts is None:
            self._last_frame_ts = ts  # count from the first call: the source never delivered yet
        gone = ts - self._last_frame_ts >= self.settings.signal_lost_s
        change = self._lost.update(gone, ts) if gone else None
        if change is not None:
            log.warning("camera signal lost")
        return [change] if change is not None else []

    # ---- the reference ----------------------------------------------------------------------------

    def _learn(self, sharp: float, edges: np.ndarray, ts: float) -> None:
        if self._learn_start is None:
            self._learn_start = ts
            self._edge_avg = np.zeros(edges.shape, np.float32)
        assert self._edge_avg is not None
        self._learn_sharp.append(sharp)
        self._edge_avg += edges.astype(np.float32) / 255.0
        self._frames += 1
        if ts - self._learn_start < self.settings.learn_s:
            return
        self._edge_avg /= self._frames
        self._ref_sharp = float(np.median(self._learn_sharp))
        self._learn_sharp = []
        self._set_reference()
        log.info("camera reference learned: sharpness %.1f, %d edge pixels", self._ref_sharp, self._ref_count)

    def _set_reference(self) -> None:
        assert self._edge_avg is not None
        # Edges present in at least half the frames: the fixed scene, not the people walking through it.
        ref = np.where(self._edge_avg >= 0.5, 255, 0).astype(np.uint8)
        count = cv2.countNonZero(ref)
        self._ref_edges = ref
        self._ref_count = count if count >= _MIN_EDGE_FRACTION * ref.size else 0

    def _adapt(self, sharp: float, edges: np.ndarray) -> None:
        # Follow slow changes (daylight, seasons) while nothing is wrong, so they never look like tamper.
        assert self._edge_avg is not None
        alpha = min(1.0, 1.0 / (self.settings.adapt_s * self.fps))
        self._ref_sharp += alpha * (sharp - self._ref_sharp)
        cv2.accumulateWeighted((edges > 0).astype(np.float32), self._edge_avg, alpha)
        self._frames += 1
        if self._frames % max(1, int(self.fps * 10)) == 0:
            self._set_reference()
