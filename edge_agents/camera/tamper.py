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
_GRID = (8, 6)  # cells across and down for the scene comparison
_CELL_MATCH = 0.5  # a cell whose correlation with the reference falls below this has changed
_CELL_TEXTURE = 4.0  # grey std a reference cell needs to be compared (flat sky or wall carries no position)
_MIN_CELLS = 6  # fewer textured cells (darkness, a blank wall) and a move cannot be told


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
        self._ref: np.ndarray | None = None  # the scene: blurred small grey frame, float32
        self._textured: np.ndarray | None = None  # reference cells with enough texture to compare
        self._ref_sharp = 0.0
        self._frames = 0
        self._acc: np.ndarray | None = None
        self.metrics = TamperMetrics(0.0, 0.0, 0.0, 0.0, 0.0)

    @property
    def learned(self) -> bool:
        """The reference scene (sharpness, look) is learned."""
        return self._ref is not None

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
        sharp = sharpness(medium)
        scene = cv2.GaussianBlur(small, (5, 5), 0).astype(np.float32)
        covered = mean_v < s.dark_mean or std_v < s.uniform_std
        scene_change = 0.0
        defocused = moved = False
        if self._ref is None:
            if not covered:
                self._learn(sharp, scene, ts)
        else:
            if self._textured is not None:
                scene_change = changed_cells(self._ref, scene, self._textured)
            # A blurred scene still correlates with its reference (measured change <= 0.33), but a camera
            # turned to a plain wall also loses sharpness: so a changed scene is "moved", not "defocused".
            moved = not covered and self._textured is not None and scene_change >= s.moved_change
            defocused = not covered and not moved and sharp < s.blur_ratio * self._ref_sharp
        self.metrics = TamperMetrics(round(mean_v, 1), round(std_v, 1), round(sharp, 4),
                                     round(self._ref_sharp, 4), round(scene_change, 3))
        for kind, present in (("covered", covered), ("defocused", defocused), ("moved", moved)):
            result = self._conds[kind].update(present, ts)
            if result is not None:
                log.info("camera tamper %s %s", kind, "raised" if present else "cleared")
                out.append(result)
        if self._ref is not None and not (covered or defocused or moved) and not self.active():
            self._adapt(sharp, scene)
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

    def _learn(self, sharp: float, scene: np.ndarray, ts: float) -> None:
        if self._learn_start is None:
            self._learn_start = ts
            self._acc = np.zeros(scene.shape, np.float32)
        assert self._acc is not None
        self._learn_sharp.append(sharp)
        self._acc += scene
        self._frames += 1
        if ts - self._learn_start < self.settings.learn_s:
            return
        # The mean of the learning frames: people walking through are faint, the fixed scene stays.
        self._ref_sharp = float(np.median(self._learn_sharp))
        self._learn_sharp = []
        self._set_reference(self._acc / self._frames)
        log.info("camera reference learned: sharpness %.2f, %d textured cells", self._ref_sharp,
                 0 if self._textured is None else int(self._textured.sum()))

    def _set_reference(self, ref: np.ndarray) -> None:
        self._ref = ref
        textured = _cells(ref).std(axis=1) > _CELL_TEXTURE
        self._textured = textured if int(textured.sum()) >= _MIN_CELLS else None

    def _adapt(self, sharp: float, scene: np.ndarray) -> None:
        # Follow slow changes (daylight, seasons, a parked car) while nothing is wrong, so they never look
        # like tamper.
        assert self._ref is not None
        alpha = min(1.0, 1.0 / (self.settings.adapt_s * self.fps))
        self._ref_sharp += alpha * (sharp - self._ref_sharp)
        cv2.accumulateWeighted(scene, self._ref, alpha)
        self._frames += 1
        if self._frames % max(1, int(self.fps * 10)) == 0:
            self._set_reference(self._ref)


def sharpness(grey: np.ndarray) -> float:
    """Laplacian variance over grey variance: fine detail relative to contrast, so dimming does not look blurred."""
    _, std = cv2.meanStdDev(grey)
    return float(cv2.Laplacian(grey, cv2.CV_32F).var()) / (float(std[0, 0]) ** 2 + 1.0)


def _cells(img: np.ndarray) -> np.ndarray:
    gx, gy = _GRID
    h, w = img.shape[:2]
    ch, cw = h // gy, w // gx
    return img[:ch * gy, :cw * gx].reshape(gy, ch, gx, cw).transpose(0, 2, 1, 3).reshape(gy * gx, ch * cw)


def changed_cells(ref: np.ndarray, cur: np.ndarray, textured: np.ndarray) -> float:
    """Fraction of the reference's textured cells that no longer correlate with the current frame.

    Correlation per cell ignores brightness and contrast (lights, sun), but not a shift or a turn.
    """
    a, b = _cells(ref), _cells(cur)
    a = a - a.mean(axis=1, keepdims=True)
    b = b - b.mean(axis=1, keepdims=True)
    r = (a * b).sum(axis=1) / (np.sqrt((a * a).sum(axis=1) * (b * b).sum(axis=1)) + 1e-6)
    return float(np.count_nonzero((r < _CELL_MATCH) & textured) / np.count_nonzero(textured))
