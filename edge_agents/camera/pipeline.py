"""The camera analytics as a pure pipeline: feed (frame, timestamp), get wire bodies and JPEG snapshots.

No I/O and no clock: the same object serves the live agent, offline analysis of a recording and the tests.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass

import cv2
import numpy as np

from commhub.wire import CameraCrowd, CameraLineCross, CameraMotion, CameraObject, FallingObject, Tamper
from edge_agents.camera.config import CameraConfig
from edge_agents.camera.detect import Detection, PersonDetector, merge
from edge_agents.camera.falling import FallingDetector
from edge_agents.camera.geometry import BoxT, foot, inside, polygon_mask, to_pixels
from edge_agents.camera.learned import MIN_PERSON_FRAC, LearnedDetector
from edge_agents.camera.motion import MotionDetector, MotionResult
from edge_agents.camera.tamper import TamperDetector
from edge_agents.camera.tracker import Tracker
from edge_agents.camera.zones import Pending, ZoneAnalytics

log = logging.getLogger(__name__)

CameraBody = CameraObject | CameraLineCross | CameraCrowd | CameraMotion | Tamper | FallingObject
_MEDIUM_W = 320  # sharpness is measured at this width: fine detail survives, and it costs ~0.2 ms


@dataclass(frozen=True, slots=True)
class Output:
    """A body to publish; `jpeg` is the snapshot it names (sent once, with the first body naming it)."""

    body: CameraBody
    jpeg: bytes | None = None


@dataclass(frozen=True, slots=True)
class FrameResult:
    """What one analysed frame gave."""

    index: int
    ts: float
    motion: bool
    motion_pct: float
    motion_zones: tuple[str, ...]
    detected: bool  # the person detector ran on this frame
    detections: int  # people it found (0 when it did not run)
    persons: int  # people tracked now (confirmed tracks), which bridges frames the detector missed
    outputs: list[Output]
    found: tuple[BoxT, ...] = ()  # the detector's boxes on this frame (analysis-frame pixels)


class _Geometry:
    """Frame sizes, zones, masks and lines converted for one source frame size."""

    def __init__(self, cfg: CameraConfig, source_size: tuple[int, int]) -> None:
        sw, sh = source_size
        k = min(1.0, cfg.width / sw)
        self.size = (max(1, round(sw * k)), max(1, round(sh * k)))
        d = cfg.detect
        # The smallest person to find, in analysis pixels.
        self.person_px = d.min_person_px * k if d.min_person_px is not None else d.min_person_frac * self.size[1]
        aw, ah = self.size
        mw = min(cfg.motion.width, aw)
        self.motion_size = (mw, max(1, round(ah * mw / aw)))
        medium_w = min(_MEDIUM_W, aw)
        self.medium_size = (medium_w, max(1, round(ah * medium_w / aw)))
        self.zones = [(z, to_pixels(z.polygon, z.coords, source_size, self.size)) for z in cfg.zones]
        self.masks = [to_pixels(m.polygon, m.coords, source_size, self.size) for m in cfg.masks]
        self.lines = [(ln, *to_pixels((ln.a, ln.b), ln.coords, source_size, self.size)) for ln in cfg.lines]
        motion_masks = [to_pixels(m.polygon, m.coords, source_size, self.motion_size) for m in cfg.masks]
        self.watched = cv2.bitwise_not(polygon_mask(self.motion_size, motion_masks))
        self.motion_zones = [(z.name, polygon_mask(self.motion_size,
                                                   [to_pixels(z.polygon, z.coords, source_size, self.motion_size)]))
                             for z in cfg.zones if z.motion]


class CameraPipeline:
    """Motion, tamper, person detection on motion, tracking and zone/line/crowd events for one camera."""

    def __init__(self, cfg: CameraConfig, run_id: str | None = None) -> None:
        self.cfg = cfg
        self.run_id = run_id
        self._geo: _Geometry | None = None
        self._source_size: tuple[int, int] | None = None
        self._motion: MotionDetector | None = None
        self._tamper = TamperDetector(cfg.tamper, cfg.fps)
        self._detector = PersonDetector(cfg.detect)
        self._learned = LearnedDetector(cfg.detect.learned_min_score) if cfg.detect.learned else None
        if self._learned is not None:
            self._learned.check()  # a missing weights package is a configuration error, not a per-frame one
        self._tracker = Tracker(cfg.track)
        self._zones: ZoneAnalytics | None = None
        self._falling: FallingDetector | None = None
        self._frames = 0
        self._last_detect = float("-inf")
        self._runs = 0  # detector runs since the last full search
        self._starting = True  # no full search yet since the camera started
        self._motion_on = False
        self._motion_last = 0.0
        self._motion_zones: list[str] = []
        self._tag = hashlib.blake2s(cfg.id.encode(), digest_size=3).hexdigest()

    @property
    def tamper(self) -> TamperDetector:
        """The tamper detector (its metrics explain the tamper verdicts)."""
        return self._tamper

    def process(self, image: np.ndarray, ts: float, index: int | None = None) -> FrameResult:
        """Analyse one BGR (or grey) frame taken at `ts` seconds."""
        if image.ndim == 2:
            image = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
        self._setup(image, ts)
        geo, motion_det, zones = self._geo, self._motion, self._zones
        assert geo is not None and motion_det is not None and zones is not None
        frame_no = self._frames if index is None else index
        self._frames += 1
        frame = image if image.shape[1] == geo.size[0] else cv2.resize(image, geo.size, interpolation=cv2.INTER_AREA)
        medium = cv2.cvtColor(cv2.resize(frame, geo.medium_size, interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2GRAY)
        small = cv2.resize(medium, geo.motion_size, interpolation=cv2.INTER_AREA)

        pending: list[Pending | Output] = []
        if self.cfg.tamper.enabled:
            pending.extend(Output(t) for t in self._tamper.update(small, medium, ts))
        motion = motion_det.apply(small)
        pending.extend(Output(m) for m in self._motion_events(motion, ts))
        if self._falling is not None:
            pending.extend(Pending(f, snapshot=True) for f in self._falling.step(motion.blobs, ts))

        detections: list[Detection] = []
        ran = self._detect_due(motion, ts)
        if ran:
            grey = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
            full = self._full_due()
            if full:
                detections = self._full_search(frame, grey, motion, geo)
            else:
                detections = self._detector.refresh(grey, [t.box for t in self._tracker.tracks])
            if geo.masks:
                detections = [d for d in detections if not any(inside(m, foot(d.box)) for m in geo.masks)]
            update = self._tracker.update(detections, ts, births=full)
            confirmed, ended = update.confirmed, update.ended
        else:
            confirmed, ended = [], self._tracker.expire(ts)
        pending.extend(zones.step(self._tracker.live, confirmed, ended, ts, counted=self._tracker.counted))
        outputs = self._snapshots(pending, frame, frame_no)
        return FrameResult(frame_no, ts, motion.active, round(motion.area_pct, 3), motion.zones, ran,
                           len(detections), len(self._tracker.counted), outputs, tuple(d.box for d in detections))

    def missing(self, ts: float) -> list[Output]:
        """No frame could be read at `ts` (the source is down)."""
        if not self.cfg.tamper.enabled:
            return []
        return [Output(t) for t in self._tamper.missing(ts)]

    def finish(self, ts: float) -> list[Output]:
        """The source has stopped: end every tracked object and any motion."""
        out: list[Output] = []
        if self._zones is not None:
            out.extend(Output(p.body) for p in self._zones.step([], [], self._tracker.end_all(), ts))
        if self._motion_on:
            self._motion_on = False
            out.append(Output(CameraMotion(active=False, zones=tuple(self._motion_zones))))
        return out

    # ---- steps ------------------------------------------------------------------------------------

    def _setup(self, image: np.ndarray, ts: float) -> None:
        size = (image.shape[1], image.shape[0])
        if size == self._source_size:
            return
        if size[0] < 32 or size[1] < 24:
            raise ValueError(f"camera {self.cfg.id}: frame {size[0]}x{size[1]} is too small to analyse")
        if self._source_size is not None:
            log.warning("camera %s frame size changed from %s to %s; analysis restarts", self.cfg.id,
                        self._source_size, size)
        self._source_size = size
        self._geo = geo = _Geometry(self.cfg, size)
        self._motion = MotionDetector(self.cfg.motion, self.cfg.fps, geo.motion_zones, geo.watched)
        if self.run_id is None:
            self.run_id = format(max(0, int(ts * 1000)), "x")
        self._zones = ZoneAnalytics(self.cfg.id, self.cfg.track, geo.zones, geo.lines, geo.size, self.run_id)
        if self.cfg.falling.enabled:
            self._falling = FallingDetector(self.cfg.id, self.cfg.falling, geo.motion_size, self.cfg.fps, self.run_id)
        self._tracker = Tracker(self.cfg.track, geo.size)
        self._starting = True

    def _motion_events(self, m: MotionResult, ts: float) -> list[CameraMotion]:
        if m.active:
            self._motion_last = ts
            grown = [z for z in m.zones if z not in self._motion_zones]
            self._motion_zones.extend(grown)
            if not self._motion_on or grown:
                self._motion_on = True
                return [CameraMotion(active=True, zones=tuple(self._motion_zones), area_pct=round(m.area_pct, 2))]
        elif self._motion_on and ts - self._motion_last >= self.cfg.motion.hold_s:
            self._motion_on = False
            zones, self._motion_zones = tuple(self._motion_zones), []
            return [CameraMotion(active=False, zones=zones)]
        return []

    def _detect_due(self, m: MotionResult, ts: float) -> bool:
        d = self.cfg.detect
        if not d.enabled:
            return False
        # Half an analysis frame of slack, so max_fps = fps/2 really means every other frame.
        slack = 0.5 / self.cfg.fps
        since = ts - self._last_detect
        if since + slack < 1.0 / d.max_fps:
            return False
        wanted = (not d.on_motion_only or m.active or self._motion_frames() == 1
                  or (bool(self._tracker.tracks) and since + slack >= d.refresh_s))
        if wanted:
            self._last_detect = ts
        return wanted

    def _full_due(self) -> bool:
        """A full search (new people too) on every full_every-th detector run, and whenever nobody is tracked."""
        self._runs += 1
        if not self._tracker.tracks or self._runs >= self.cfg.detect.full_every:
            self._runs = 0
            return True
        return False

    def _full_search(self, frame: np.ndarray, grey: np.ndarray, motion: MotionResult,
                     geo: _Geometry) -> list[Detection]:
        """New people too: the learned detector on the whole frame, HOG on the regions where people are small."""
        if self._learned is None:
            return self._detector.detect(grey, self._regions(motion, geo), geo.person_px)
        d = self.cfg.detect
        # At start-up everyone is already in view, and each person missed now takes a second or more to be
        # found; a false one counts for count_hold_s at most. So the first search takes weaker detections.
        learned = self._learned.detect(frame, d.learned_start_score if self._starting else d.learned_min_score)
        self._starting = False
        if geo.person_px >= MIN_PERSON_FRAC * geo.size[1]:
            # Everyone expected is large enough for the learned detector, which finds far more of a group than
            # HOG (recall 0.71-0.75 against 0.46-0.49 per search on the TUD crowds) for less CPU than HOG's search.
            return learned
        return merge(learned, self._detector.detect(grey, self._regions(motion, geo), geo.person_px))

    def _motion_frames(self) -> int:
        return self._motion.frames if self._motion is not None else 0

    def _regions(self, m: MotionResult, geo: _Geometry) -> list[BoxT] | None:
        """Where to look: the moving blobs plus the tracked people (who may stand still), or everywhere."""
        if not self.cfg.detect.on_motion_only or m.box is None:
            # Also the first frame: with no background yet, motion cannot say where people are; look everywhere.
            return None
        k = geo.size[0] / geo.motion_size[0]
        boxes = [(int(x * k), int(y * k), int(w * k) + 1, int(h * k) + 1) for x, y, w, h in m.blobs]
        return boxes + [t.box for t in self._tracker.tracks]

    def _snapshots(self, pending: list[Pending | Output], frame: np.ndarray, frame_no: int) -> list[Output]:
        out: list[Output] = []
        snap_id: str | None = None
        for p in pending:
            if isinstance(p, Output):
                out.append(p)
                continue
            if not (p.snapshot and self.cfg.snapshot.enabled):
                out.append(Output(p.body))
                continue
            jpeg = None
            if snap_id is None:
                snap_id = f"{self._tag}-{self.run_id}-f{frame_no}"
                ok, buf = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, self.cfg.snapshot.quality])
                if not ok:
                    log.warning("camera %s: JPEG encoding failed; event sent without snapshot", self.cfg.id)
                    out.append(Output(p.body))
                    snap_id = None
                    continue
                jpeg = buf.tobytes()
            out.append(Output(p.body.model_copy(update={"snapshot": snap_id}), jpeg))
        return out
