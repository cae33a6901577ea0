"""Zone, mask and line geometry in analysis-frame pixels."""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from edge_agents.camera.config import Coords, Point

BoxT = tuple[int, int, int, int]  # x, y, w, h


def to_pixels(points: Sequence[Point], coords: Coords, source_size: tuple[int, int],
              target_size: tuple[int, int]) -> np.ndarray:
    """Convert configured points to float (x, y) pixels of a frame of target_size (w, h)."""
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    tw, th = target_size
    if coords == "normalised":
        return pts * (tw, th)
    sw, sh = source_size
    return pts * (tw / sw, th / sh)


def polygon_mask(size: tuple[int, int], polygons: Sequence[np.ndarray]) -> np.ndarray:
    """A uint8 mask (255 inside any polygon) of size (w, h)."""
    w, h = size
    mask = np.zeros((h, w), np.uint8)
    if polygons:
        cv2.fillPoly(mask, [np.round(p).astype(np.int32) for p in polygons], 255)
    return mask


def inside(polygon: np.ndarray, point: tuple[float, float]) -> bool:
    """Whether a point is inside (or on) a polygon."""
    return cv2.pointPolygonTest(polygon.astype(np.float32), (float(point[0]), float(point[1])), False) >= 0


def side(a: np.ndarray, b: np.ndarray, p: tuple[float, float]) -> float:
    """Signed distance of p from the line a->b; positive is the right-hand side in image coordinates (y down)."""
    dx, dy = float(b[0] - a[0]), float(b[1] - a[1])
    norm = (dx * dx + dy * dy) ** 0.5
    return (dx * (p[1] - a[1]) - dy * (p[0] - a[0])) / norm


def segments_cross(p: tuple[float, float], q: tuple[float, float], a: np.ndarray, b: np.ndarray) -> bool:
    """Whether segment p-q crosses segment a-b (touching counts)."""
    def orient(u: Sequence[float] | np.ndarray, v: Sequence[float] | np.ndarray,
               w: Sequence[float] | np.ndarray) -> float:
        return float((v[0] - u[0]) * (w[1] - u[1]) - (v[1] - u[1]) * (w[0] - u[0]))

    d1, d2 = orient(a, b, p), orient(a, b, q)
    d3, d4 = orient(p, q, a), orient(p, q, b)
    return d1 * d2 <= 0 and d3 * d4 <= 0


def foot(box: BoxT) -> tuple[float, float]:
    """Where a person stands: the bottom centre of the box."""
    x, y, w, h = box
    return (x + w / 2.0, float(y + h))


def iou(a: BoxT, b: BoxT) -> float:
    """Intersection over union of two boxes."""
    ix = max(0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = a[2] * a[3] + b[2] * b[3] - inter
    return inter / union if union > 0 else 0.0
