"""Blurring faces in snapshots for every role but police: OpenCV's Haar face cascades, then person boxes.

Faces are found with the frontal and profile cascades that opencv-python-headless ships. A person box (from
the camera event, or OpenCV's HOG people detector) that holds no detected face has its upper part blurred,
so a face the cascade missed is not sent either. A frame that cannot be decoded is never sent.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

log = logging.getLogger(__name__)

Rect = tuple[int, int, int, int]  # x, y, w, h
_HEAD_PART = 0.4  # the upper share of a person box that holds the head
_PAD = 0.25  # margin around a detected face
_HOG_WIDTH = 640  # HOG runs on frames no wider than this (9-33 fps at 640x480 on this machine)


class BlurError(ValueError):
    """A snapshot could not be decoded or encoded, so it is not sent at all."""


def _cascade(name: str) -> cv2.CascadeClassifier:
    path = Path(cv2.data.haarcascades) / name  # type: ignore[attr-defined]
    c = cv2.CascadeClassifier(str(path))
    if c.empty():
        raise RuntimeError(f"OpenCV face model {path} is missing: opencv-python-headless 4.x ships it")
    return c


class FaceDetector:
    """The face model the blurring uses, also what the tests run on returned images."""

    def __init__(self) -> None:
        self._frontal = _cascade("haarcascade_frontalface_default.xml")
        self._profile = _cascade("haarcascade_profileface.xml")
        self._lock = threading.Lock()  # CascadeClassifier is not documented as thread-safe

    def faces(self, grey: np.ndarray) -> list[Rect]:
        """Face rectangles in a grey image (frontal, profile, and profile of the mirror image)."""
        eq = cv2.equalizeHist(grey)
        w = eq.shape[1]
        out: list[Rect] = []
        with self._lock:
            for c, img, mirrored in ((self._frontal, eq, False), (self._profile, eq, False),
                                     (self._profile, cv2.flip(eq, 1), True)):
                found = c.detectMultiScale(img, scaleFactor=1.1, minNeighbors=5, minSize=(20, 20))
                for x, y, fw, fh in (found if len(found) else []):
                    out.append((w - int(x) - int(fw), int(y), int(fw), int(fh)) if mirrored else
                               (int(x), int(y), int(fw), int(fh)))
        return out


class PersonDetector:
    """OpenCV's built-in HOG people detector (no download)."""

    def __init__(self) -> None:
        self._hog = cv2.HOGDescriptor()
        self._hog.setSVMDetector(cv2.HOGDescriptor_getDefaultPeopleDetector())  # type: ignore[attr-defined]
        self._lock = threading.Lock()

    def persons(self, bgr: np.ndarray) -> list[Rect]:
        """Person boxes in full-frame coordinates."""
        scale = min(1.0, _HOG_WIDTH / bgr.shape[1])
        img = cv2.resize(bgr, None, fx=scale, fy=scale) if scale < 1.0 else bgr
        with self._lock:
            rects, _ = self._hog.detectMultiScale(img, winStride=(8, 8), padding=(8, 8), scale=1.05)
        return [(int(x / scale), int(y / scale), int(w / scale), int(h / scale)) for x, y, w, h in rects]


def _clip(r: Rect, shape: tuple[int, ...]) -> Rect | None:
    x, y, w, h = r
    x0, y0 = max(0, x), max(0, y)
    x1, y1 = min(shape[1], x + w), min(shape[0], y + h)
    return (x0, y0, x1 - x0, y1 - y0) if x1 > x0 and y1 > y0 else None


def _obscure(img: np.ndarray, r: Rect) -> None:
    """Pixelate, then blur: nothing of the face survives, and the cascade no longer finds one."""
    c = _clip(r, img.shape)
    if c is None:
        return
    x, y, w, h = c
    roi = img[y:y + h, x:x + w]
    small = cv2.resize(roi, (max(1, w // 12), max(1, h // 12)), interpolation=cv2.INTER_AREA)
    mosaic = cv2.resize(small, (w, h), interpolation=cv2.INTER_NEAREST)
    k = max(3, (min(w, h) // 4) | 1)
    img[y:y + h, x:x + w] = cv2.GaussianBlur(mosaic, (k, k), 0)


def _contains(box: Rect, face: Rect) -> bool:
    fx, fy = face[0] + face[2] / 2, face[1] + face[3] / 2
    return box[0] <= fx <= box[0] + box[2] and box[1] <= fy <= box[1] + box[3]


class Blurrer:
    """Turns an original JPEG into one with faces (or the heads of person boxes) blurred."""

    def __init__(self, faces: FaceDetector | None = None, persons: PersonDetector | None = None) -> None:
        self.face_detector = faces or FaceDetector()
        self.person_detector = persons or PersonDetector()

    def blur(self, jpeg: bytes, person_boxes: Sequence[Rect] = ()) -> bytes:
        """The blurred JPEG; raises BlurError when the input is not an image we can read."""
        img = cv2.imdecode(np.frombuffer(jpeg, dtype=np.uint8), cv2.IMREAD_COLOR)
        if img is None or img.size == 0:
            raise BlurError("snapshot is not a decodable image")
        faces = self.face_detector.faces(cv2.cvtColor(img, cv2.COLOR_BGR2GRAY))
        boxes = list(person_boxes) + self.person_detector.persons(img)
        for x, y, w, h in faces:
            px, py = int(w * _PAD), int(h * _PAD)
            _obscure(img, (x - px, y - py, w + 2 * px, h + 2 * py))
        heads = 0
        for box in boxes:
            if not any(_contains(box, f) for f in faces):
                x, y, w, h = box
                _obscure(img, (x, y, w, max(1, int(h * _HEAD_PART))))
                heads += 1
        ok, out = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 90])
        if not ok:
            raise BlurError("could not encode the blurred snapshot")
        log.debug("blurred %d faces and %d person heads", len(faces), heads)
        return bytes(out.tobytes())
