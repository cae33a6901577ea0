"""Measure how tall the people on calibration frames are, to suggest a camera's `detect.min_person_px`."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from edge_agents.camera.config import DetectSettings
from edge_agents.camera.detect import WINDOW_PERSON_PX, PersonDetector, merge
from edge_agents.camera.learned import LearnedDetector


@dataclass(frozen=True, slots=True)
class Calibration:
    """People measured on calibration frames (pixels of those frames) and the suggested min_person_px."""

    people: int
    smallest: float
    median: float
    suggested: float
    detectors: tuple[str, ...]  # which detectors measured them ("learned", "hog")


def measure_person_px(frames: Sequence[np.ndarray], settings: DetectSettings,
                      learned: LearnedDetector | None = None) -> Calibration | None:
    """Find people of any size on whole frames and measure how tall they are.

    The detectors the camera would run: the learned one (when on) finds people of at least a fifth of the
    frame, in groups too; HOG at its largest upscale finds the small ones it cannot, and its boxes are added
    where they are not a person the learned detector found (as on a camera whose people are small).
    """
    detector = PersonDetector(settings)
    floor = WINDOW_PERSON_PX / settings.max_upscale
    heights: list[float] = []
    for image in frames:
        grey = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
        found = detector.detect(grey, None, floor)
        if learned is not None:
            colour = image if image.ndim == 3 else cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
            found = merge(learned.detect(colour, settings.learned_min_score), found)
        heights += [float(d.box[3]) for d in found]
    if not heights:
        return None
    ordered = sorted(heights)
    # The 10th percentile, not the minimum: one false detection on a small texture must not set the scale.
    low = ordered[int(0.1 * (len(ordered) - 1))]
    used = ("learned", "hog") if learned is not None else ("hog",)
    return Calibration(len(heights), low, ordered[len(ordered) // 2], round(max(floor, 0.9 * low), 1), used)
