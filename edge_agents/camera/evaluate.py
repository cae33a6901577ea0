"""Score the camera analytics against MOT-format ground truth, next to plain MOG2 + default HOG in the same run.

Each clip is scored at full size and downscaled (1/2, 1/3: people 40-90 px tall, as on a plaza camera).
Figures per clip and scale: motion recall, person-count MAE and mean bias (reported minus present), and
detection precision/recall at IoU 0.5. The baseline runs MOG2 with OpenCV's defaults on every frame and the
default HOG people detector (default parameters, full resolution of the footage) on every frame with motion.
Both are scored on the same frames: those a camera analysing at the configured fps would take.
"""

from __future__ import annotations

import collections
import logging
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from edge_agents.camera.config import CameraConfig
from edge_agents.camera.detect import body_box
from edge_agents.camera.geometry import BoxT, iou

log = logging.getLogger(__name__)

SCALES = (1.0, 0.5, 1.0 / 3.0)
IOU_MATCH = 0.5
# Moving pixels (% of the frame) that make a baseline frame "motion"; the same default as our min_area_pct.
_BASELINE_MOTION_PCT = 0.2

GroundTruth = dict[int, list[BoxT]]


@dataclass(frozen=True, slots=True)
class Score:
    """The figures of one method on one clip at one scale."""

    frames: int
    motion_recall: float
    mae: float
    bias: float
    precision: float
    recall: float
    mean_present: float
    fps: float  # analysed frames per second of this thread's CPU time
    bias_first: float = 0.0  # mean bias over the first third of the frames (people already there at the start)
    bias_last: float = 0.0  # ... and over the last third (people leaving; stale tracks)


@dataclass(frozen=True, slots=True)
class ClipScore:
    """Ours and the baseline on one clip at one scale."""

    clip: str
    scale: float
    size: tuple[int, int]
    person_px: tuple[float, float]  # smallest and median ground-truth person height at this scale
    ours: Score
    baseline: Score


def load_mot(path: Path) -> GroundTruth:
    """MOT ground truth (`frame,id,x,y,w,h,...`, 1-based frames) as boxes by 0-based frame index."""
    out: GroundTruth = collections.defaultdict(list)
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        p = line.split(",")
        try:
            frame = int(p[0]) - 1
            x, y, w, h = (float(v) for v in p[2:6])
        except (ValueError, IndexError):
            raise ValueError(f"{path}:{n}: not a MOT line (frame,id,x,y,w,h,...)") from None
        if frame < 0 or w <= 0 or h <= 0:
            raise ValueError(f"{path}:{n}: frame must be >= 1 and the box non-empty")
        out[frame].append((round(x), round(y), round(w), round(h)))
    return dict(out)


def read_clip(path: Path, scale: float = 1.0) -> list[np.ndarray]:
    """Every frame of a clip, scaled by `scale` (INTER_AREA, as a lower-resolution camera would see it)."""
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise ValueError(f"{path}: not a video OpenCV can read")
    frames: list[np.ndarray] = []
    try:
        while True:
            ok, frame = cap.read()
            if not ok:
                break
            if scale != 1.0:
                h, w = frame.shape[:2]
                frame = cv2.resize(frame, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA)
            frames.append(frame)
    finally:
        cap.release()
    return frames


def scale_gt(gt: GroundTruth, scale: float) -> GroundTruth:
    """Ground truth for the footage scaled by `scale`."""
    return {f: [(round(x * scale), round(y * scale), max(1, round(w * scale)), max(1, round(h * scale)))
                for x, y, w, h in boxes] for f, boxes in gt.items()}


def match(found: Sequence[BoxT], truth: Sequence[BoxT], min_iou: float = IOU_MATCH) -> int:
    """True positives: greedy one-to-one matching by IoU (best pairs first)."""
    pairs = sorted(((iou(f, t), i, j) for i, f in enumerate(found) for j, t in enumerate(truth)), reverse=True)
    used_f: set[int] = set()
    used_t: set[int] = set()
    for overlap, i, j in pairs:
        if overlap < min_iou:
            break
        if i not in used_f and j not in used_t:
            used_f.add(i)
            used_t.add(j)
    return len(used_f)


@dataclass(slots=True)
class _Tally:
    frames: int = 0
    moving_with_people: int = 0
    with_people: int = 0
    abs_err: float = 0.0
    err: float = 0.0
    present: int = 0
    tp: int = 0
    found: int = 0
    truth: int = 0
    cpu: float = 0.0
    errors: list[int] = field(default_factory=list)

    def add(self, motion: bool, count: int, present: Sequence[BoxT], boxes: Sequence[BoxT] | None) -> None:
        self.frames += 1
        if present:
            self.with_people += 1
            self.moving_with_people += motion
        self.abs_err += abs(count - len(present))
        self.err += count - len(present)
        self.errors.append(count - len(present))
        self.present += len(present)
        if boxes is not None:  # the detector ran on this frame: score its boxes
            self.tp += match(boxes, present)
            self.found += len(boxes)
            self.truth += len(present)

    def score(self) -> Score:
        n = max(1, self.frames)
        third = max(1, len(self.errors) // 3)
        first, last = self.errors[:third], self.errors[-third:]
        return Score(self.frames, self.moving_with_people / max(1, self.with_people), self.abs_err / n,
                     self.err / n, self.tp / max(1, self.found), self.tp / max(1, self.truth), self.present / n,
                     self.frames / self.cpu if self.cpu > 0 else float("nan"),
                     sum(first) / max(1, len(first)), sum(last) / max(1, len(last)))


def sample(n_frames: int, source_fps: float, fps: float) -> list[int]:
    """Indices of the frames a camera analysing at `fps` takes from a `source_fps` stream."""
    step = source_fps / fps
    out: list[int] = []
    t = 0.0
    while round(t) < n_frames:
        out.append(round(t))
        t += step
    return out


def score_ours(frames: Sequence[np.ndarray], gt: GroundTruth, cam: CameraConfig, source_fps: float) -> Score:
    """Run the camera pipeline on the frames it would sample; score it (count = tracked persons)."""
    from edge_agents.camera.pipeline import CameraPipeline

    pipe = CameraPipeline(cam)
    tally = _Tally()
    for i in sample(len(frames), source_fps, cam.fps):
        t0 = time.thread_time()
        r = pipe.process(frames[i], i / source_fps, i)
        tally.cpu += time.thread_time() - t0
        tally.add(r.motion, r.persons, gt.get(i, []), r.found if r.detected else None)
    return tally.score()


def score_baseline(frames: Sequence[np.ndarray], gt: GroundTruth, indices: Iterable[int]) -> Score:
    """Plain MOG2 (defaults) on every frame and the default HOG people detector on frames with motion."""
    mog = cv2.createBackgroundSubtractorMOG2()
    hog = cv2.HOGDescriptor()
    hog.setSVMDetector(cv2.HOGDescriptor_getDefaultPeopleDetector())  # type: ignore[attr-defined]
    tally = _Tally()
    for n, i in enumerate(indices):
        t0 = time.thread_time()
        fg = mog.apply(frames[i])
        # MOG2 calls the whole first frame foreground: no background yet, so no motion (as in ours).
        motion = n > 0 and cv2.countNonZero(fg) * 100.0 / fg.size >= _BASELINE_MOTION_PCT
        boxes: list[BoxT] = []
        if motion:
            rects, _ = hog.detectMultiScale(frames[i])
            # HOG's boxes are its windows, with margins around the person; scored as such, almost none would
            # reach IoU 0.5 with a ground-truth box. The same window-to-body conversion as ours keeps the
            # comparison about finding people, not about box conventions.
            boxes = [body_box((int(x), int(y), int(w), int(h))) for x, y, w, h in rects]
        tally.cpu += time.thread_time() - t0
        tally.add(motion, len(boxes), gt.get(i, []), boxes)
    return tally.score()


def evaluate_clip(video: Path, gt_path: Path, cam: CameraConfig, scales: Sequence[float] = SCALES,
                  max_frames: int | None = None) -> list[ClipScore]:
    """Ours and the baseline on one clip at each scale (the same sampled frames for both)."""
    cap = cv2.VideoCapture(str(video))
    fps = cap.get(cv2.CAP_PROP_FPS) if cap.isOpened() else 0.0
    cap.release()
    source_fps = fps if 1.0 <= fps <= 240.0 else 25.0
    gt_full = load_mot(gt_path)
    out = []
    for scale in scales:
        frames = read_clip(video, scale)
        if not frames:
            raise ValueError(f"{video}: no frames")
        if max_frames is not None:
            frames = frames[:max_frames]
        gt = scale_gt(gt_full, scale)
        heights = [b[3] for i in range(len(frames)) for b in gt.get(i, [])]
        ours = score_ours(frames, gt, cam, source_fps)
        base = score_baseline(frames, gt, sample(len(frames), source_fps, cam.fps))
        h, w = frames[0].shape[:2]
        px = (float(min(heights)), float(np.median(heights))) if heights else (0.0, 0.0)
        out.append(ClipScore(video.stem, scale, (w, h), px, ours, base))
        log.info("evaluated %s at scale %.2f", video.stem, scale)
    return out


def clips_in(folder: Path) -> list[tuple[Path, Path]]:
    """(video, ground truth) pairs: every NAME.mp4 with a NAME.gt.txt beside it."""
    return [(v, v.with_name(v.stem + ".gt.txt")) for v in sorted(folder.glob("*.mp4"))
            if v.with_name(v.stem + ".gt.txt").is_file()]


def table(scores: Sequence[ClipScore]) -> list[str]:
    """A Markdown table of the figures (ours / baseline side by side)."""
    rows = ["| clip | scale | size | person px (min / median) | motion recall | count MAE | mean bias "
            "| bias first / last third (ours) | detection P / R @0.5 | frames/s per core |",
            "|---|---|---|---|---|---|---|---|---|---|"]
    for s in scores:
        o, b = s.ours, s.baseline
        rows.append(
            f"| {s.clip} | {_frac(s.scale)} | {s.size[0]}x{s.size[1]} | {s.person_px[0]:.0f} / {s.person_px[1]:.0f} "
            f"| {o.motion_recall:.2f} / {b.motion_recall:.2f} | **{o.mae:.2f}** / {b.mae:.2f} "
            f"| {o.bias:+.2f} / {b.bias:+.2f} | {o.bias_first:+.2f} / {o.bias_last:+.2f} "
            f"| {o.precision:.2f}, {o.recall:.2f} / {b.precision:.2f}, "
            f"{b.recall:.2f} | {o.fps:.0f} / {b.fps:.0f} |")
    return rows


def _frac(scale: float) -> str:
    if scale == 1.0:
        return "1"
    inv = 1.0 / scale
    return f"1/{inv:.0f}" if abs(inv - round(inv)) < 1e-6 else f"{scale:g}"
