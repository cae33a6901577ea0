"""Person detection with OpenCV's built-in HOG people detector (no model download)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from edge_agents.camera.config import DetectSettings
from edge_agents.camera.geometry import BoxT

_WIN_W, _WIN_H = 64, 128  # the default detector's window
_PAD = 8
_NEAR_LOW = 0.9  # a refresh looks for a tracked person from 0.9x their last height
_NEAR_LEVELS = 3  # ... up to 0.9 * 1.1 ** 2 = 1.09x (a person's size changes little between runs)


@dataclass(frozen=True, slots=True)
class Detection:
    """One person: box in analysis-frame pixels and the SVM score."""

    box: BoxT
    score: float


# A person fills about 81 % of the default detector's 128 px window (measured on TUD ground truth: the
# person spans 7-88 % of the window's height), so this is the height the detector finds best.
WINDOW_PERSON_PX = 104.0


def detection_scale(person_px: float, settings: DetectSettings) -> float:
    """Factor that makes a person `person_px` tall fill the detector's window (bounded both ways)."""
    return min(settings.max_upscale, max(settings.min_downscale, WINDOW_PERSON_PX / max(1.0, person_px)))


class PersonDetector:
    """HOG + linear SVM on regions of a grey frame, each scaled so the smallest expected person fills the window.

    Small people (far away, a low-resolution camera) are found by upscaling only the regions that move; large
    people by downscaling, which is cheaper. The pyramid of each region covers every larger size, and the
    boxes of all regions are merged.
    """

    def __init__(self, settings: DetectSettings) -> None:
        self.settings = settings
        self._hog: cv2.HOGDescriptor | None = None
        self._near: cv2.HOGDescriptor | None = None
        self.pixels = 0  # pixels scanned at the top of the pyramid (a cost measure for benches)

    def detect(self, grey: np.ndarray, regions: Sequence[BoxT] | None, person_px: float) -> list[Detection]:
        """People at least `person_px` tall in a grey frame; `regions` (frame pixels) limit the search."""
        if self._hog is None:
            self._hog = cv2.HOGDescriptor()
            people = cv2.HOGDescriptor_getDefaultPeopleDetector()  # type: ignore[attr-defined]
            self._hog.setSVMDetector(people)
        s = self.settings
        h, w = grey.shape[:2]
        k = detection_scale(person_px, s)
        found: list[Detection] = []
        for x0, y0, x1, y1 in search_areas(regions, w, h, k):
            crop = grey[y0:y1, x0:x1]
            size = (round((x1 - x0) * k), round((y1 - y0) * k))
            if size[0] < _WIN_W or size[1] < _WIN_H:
                continue
            interp = cv2.INTER_AREA if k < 1.0 else cv2.INTER_LINEAR
            scaled = crop if k == 1.0 else cv2.resize(crop, size, interpolation=interp)
            self.pixels += size[0] * size[1]
            rects, weights = self._hog.detectMultiScale(scaled, hitThreshold=s.hit_threshold,
                                                        winStride=(s.win_stride, s.win_stride), padding=(_PAD, _PAD),
                                                        scale=s.scale, groupThreshold=s.group_threshold)
            for (rx, ry, rw, rh), score in zip(rects, np.ravel(weights), strict=True):
                if score < s.min_score:
                    continue
                found.append(Detection(_clip(body_box((rx, ry, rw, rh), k, x0, y0), w, h), float(score)))
        return _suppress(found)

    def refresh(self, grey: np.ndarray, boxes: Sequence[BoxT]) -> list[Detection]:
        """Re-find people already tracked: around each box only, at sizes near its own (a few pyramid levels)."""
        if self._near is None:
            # The default people detector with a short pyramid: sizes from _NEAR_LOW of a track's to
            # _NEAR_LOW * scale ** (levels - 1) of it.
            self._near = cv2.HOGDescriptor((_WIN_W, _WIN_H), (16, 16), (8, 8), (8, 8), 9, 1, -1.0,
                                           cv2.HOGDescriptor_L2Hys, 0.2, False, _NEAR_LEVELS)
            self._near.setSVMDetector(cv2.HOGDescriptor_getDefaultPeopleDetector())  # type: ignore[attr-defined]
        s = self.settings
        h, w = grey.shape[:2]
        found: list[Detection] = []
        for bx, by, bw, bh in boxes:
            # Scale the crop so this person at their smallest expected size fills 81 % of the window's height
            # (as WINDOW_PERSON_PX, unrounded).
            k = _WIN_H * 0.81 / max(8.0, _NEAR_LOW * bh)
            win_w, win_h = _WIN_W / k, _WIN_H / k
            cx, cy = bx + bw / 2, by + bh / 2
            # The crop holds the top level's window (scale ** (levels - 1) times the smallest) wherever the
            # person has walked since the last run: up to a fifth of a height sideways, a tenth up or down.
            top = s.scale ** (_NEAR_LEVELS - 1)
            half_w, half_h = 0.5 * top * win_w + 0.2 * bh, 0.5 * top * win_h + 0.1 * bh
            x0, y0 = max(0, int(cx - half_w)), max(0, int(cy - half_h))
            x1, y1 = min(w, int(cx + half_w)), min(h, int(cy + half_h))
            size = (round((x1 - x0) * k), round((y1 - y0) * k))
            if size[0] < _WIN_W or size[1] < _WIN_H:
                continue
            interp = cv2.INTER_AREA if k < 1.0 else cv2.INTER_LINEAR
            scaled = cv2.resize(grey[y0:y1, x0:x1], size, interpolation=interp)
            self.pixels += size[0] * size[1]
            rects, weights = self._near.detectMultiScale(scaled, hitThreshold=s.refresh_hit_threshold,
                                                         winStride=(s.win_stride, s.win_stride), padding=(_PAD, _PAD),
                                                         scale=s.scale, groupThreshold=s.group_threshold)
            for (rx, ry, rw, rh), score in zip(rects, np.ravel(weights), strict=True):
                if score >= s.min_score:
                    found.append(Detection(_clip(body_box((rx, ry, rw, rh), k, x0, y0), w, h), float(score)))
        return _suppress(found)


def body_box(window: BoxT, k: float = 1.0, x0: int = 0, y0: int = 0) -> BoxT:
    """The person inside a detector window found on a frame scaled by k and cropped at (x0, y0).

    The window has margins around the person: the person spans 7-88 % of its height and the middle 60 % of
    its width (measured on TUD ground truth).
    """
    rx, ry, rw, rh = window
    return (int(x0 + (rx + 0.2 * rw) / k), int(y0 + (ry + 0.07 * rh) / k), int(0.6 * rw / k), int(0.81 * rh / k))


def search_areas(regions: Sequence[BoxT] | None, w: int, h: int, k: float) -> list[tuple[int, int, int, int]]:
    """Regions grown by a window's size and merged where they overlap, as (x0, y0, x1, y1); None = the frame."""
    if regions is None:
        return [(0, 0, w, h)]
    # Motion blobs are partial people (a moving arm, the legs): widen the search by a window at this scale.
    mx, my = _WIN_W / k, _WIN_H / k
    areas = [(max(0, int(x - mx)), max(0, int(y - my)), min(w, int(x + bw + mx)), min(h, int(y + bh + my)))
             for x, y, bw, bh in regions]
    merged = True
    while merged:
        merged = False
        out: list[tuple[int, int, int, int]] = []
        for a in areas:
            for i, b in enumerate(out):
                if a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]:
                    out[i] = (min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3]))
                    merged = True
                    break
            else:
                out.append(a)
        areas = out
    # Scanning nearly all of the frame in pieces costs more than scanning it once.
    if sum((a[2] - a[0]) * (a[3] - a[1]) for a in areas) >= 0.8 * w * h:
        return [(0, 0, w, h)]
    return areas


def merge(first: Sequence[Detection], extra: Sequence[Detection]) -> list[Detection]:
    """`first` and those of `extra` that are not the same person (scores of the two detectors do not compare)."""
    out = list(first)
    for d in extra:
        area = d.box[2] * d.box[3]
        if all(_overlap(d.box, o.box) < 0.5 * min(area, o.box[2] * o.box[3]) for o in out):
            out.append(d)
    return out


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
