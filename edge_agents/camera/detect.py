"""Person detection with OpenCV's built-in HOG people detector (no model download)."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from edge_agents.camera.config import DetectSettings
from edge_agents.camera.geometry import BoxT

_WIN_W, _WIN_H = 64, 128  # the default detector's window
_PAD = 8


@dataclass(frozen=True, slots=True)
class Detection:
    """One person: box in analysis-frame pixels and the SVM score."""

    box: BoxT
    score: float


class PersonDetector:
    """HOG + linear SVM on a grey frame scaled to `settings.width`, optionally only inside a region."""

    def __init__(self, settings: DetectSettings) -> None:
        self.settings = settings
        self._hog: cv2.HOGDescriptor | None = None

    def detect(self, grey: np.ndarray, roi: BoxT | None = None) -> list[Detection]:
        """People in a grey analysis frame; `roi` (analysis pixels) limits the search."""
        if self._hog is None:
            self._hog = cv2.HOGDescriptor()
            people = cv2.HOGDescriptor_getDefaultPeopleDetector()  # type: ignore[attr-defined]
            self._hog.setSVMDetector(people)
        s = self.settings
        h, w = grey.shape[:2]
        k = min(1.0, s.width / w)
        small = grey if k == 1.0 else cv2.resize(grey, (round(w * k), round(h * k)), interpolation=cv2.INTER_AREA)
        sh, sw = small.shape[:2]
        x0, y0, x1, y1 = 0, 0, sw, sh
        if roi is not None:
            x0, y0, x1, y1 = _grow((roi[0] * k, roi[1] * k, (roi[0] + roi[2]) * k, (roi[1] + roi[3]) * k), sw, sh)
        crop = small[y0:y1, x0:x1]
        if crop.shape[0] < _WIN_H or crop.shape[1] < _WIN_W:
            return []
        stride = (s.win_stride, s.win_stride)
        rects, weights = self._hog.detectMultiScale(crop, hitThreshold=s.hit_threshold, winStride=stride,
                                                    padding=(_PAD, _PAD), scale=s.scale,
                                                    groupThreshold=s.group_threshold)
        found = []
        for (rx, ry, rw, rh), score in zip(rects, np.ravel(weights), strict=True):
            if score < s.min_score:
                continue
            # The window has margins around the person: keep the body (measured on TUD ground truth: the
            # person spans 7-88 % of the window's height and the middle 60 % of its width).
            bx, by = (rx + x0 + 0.2 * rw) / k, (ry + y0 + 0.07 * rh) / k
            box = (int(bx), int(by), int(0.6 * rw / k), int(0.81 * rh / k))
            found.append(Detection(_clip(box, w, h), float(score)))
        return _suppress(found)


def _grow(box: tuple[float, float, float, float], w: int, h: int) -> tuple[int, int, int, int]:
    # Motion blobs are partial people (a moving arm, the legs): widen the search by a person's size.
    x0, y0, x1, y1 = box
    mx, my = _WIN_W, _WIN_H
    cx0, cy0 = max(0, int(x0 - mx)), max(0, int(y0 - my))
    cx1, cy1 = min(w, int(x1 + mx)), min(h, int(y1 + my))
    return cx0, cy0, cx1, cy1


def _clip(box: BoxT, w: int, h: int) -> BoxT:
    x, y, bw, bh = box
    x, y = max(0, x), max(0, y)
    return (x, y, max(1, min(bw, w - x)), max(1, min(bh, h - y)))


def _suppress(found: list[Detection]) -> list[Detection]:
    """Drop a detection mostly inside a stronger one (HOG grouping leaves nested boxes)."""
    found.sort(key=lambda d: d.score, reverse=True)
    kept: list[Detection] = []
    for d in found:
        area = d.box[2] * d.box[3]
        if all(_overlap(d.box, o.box) < 0.6 * min(area, o.box[2] * o.box[3]) for o in kept):
            kept.append(d)
    return kept


def _overlap(a: BoxT, b: BoxT) -> int:
    ix = max(0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    return ix * iy
