"""Camera test helpers: MOT ground truth, the hand-checked empty frames of the indoor clip, clip runners, scoring."""

from __future__ import annotations

import collections
import http.server
import socketserver
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from commhub.wire import CameraLineCross, CameraObject
from edge_agents.camera.config import CameraConfig
from edge_agents.camera.geometry import BoxT, foot, inside, iou, side
from edge_agents.camera.pipeline import CameraPipeline, FrameResult, Output
from edge_agents.camera.source import VideoSource

# one-by-one-person-detection.mp4 (1,394 frames, 10 fps): frames with nobody in view. Found by differencing
# every frame against frame 0 (empty) and checked by eye on a contact sheet; people walk in and out one at a
# time, so the other frames hold exactly one person. Shadows of people just outside the view remain.
ONE_BY_ONE_EMPTY = ((0, 59), (203, 226), (452, 501), (701, 744), (874, 920), (1203, 1234), (1366, 1393))
EDGE = 5  # frames next to an entry or exit are ambiguous (a foot or a head at the border): left out


def one_by_one_empty(i: int) -> bool:
    """Clearly empty (nobody in view, away from an entry or exit)."""
    return any(a + EDGE <= i <= b - EDGE for a, b in ONE_BY_ONE_EMPTY)


def one_by_one_person(i: int) -> bool:
    """Clearly one person in view."""
    return not any(a - EDGE <= i <= b + EDGE for a, b in ONE_BY_ONE_EMPTY)


def read_frames(path: Path, step: int = 1, limit: int | None = None) -> list[np.ndarray]:
    """Decode every `step`-th frame of a clip."""
    cap = cv2.VideoCapture(str(path))
    assert cap.isOpened(), f"OpenCV cannot open {path}"
    frames: list[np.ndarray] = []
    i = 0
    try:
        while limit is None or len(frames) < limit:
            ok, frame = cap.read()
            if not ok:
                break
            if i % step == 0:
                frames.append(frame)
            i += 1
    finally:
        cap.release()
    return frames


class MjpegServer:
    """A real MJPEG-over-HTTP camera (as many IP cameras serve) on loopback; stop() cuts the stream."""

    def __init__(self, frames: Sequence[np.ndarray], fps: float = 25.0, port: int = 0) -> None:
        self.jpegs = [cv2.imencode(".jpg", f)[1].tobytes() for f in frames]
        self.fps = fps
        self.port = port
        self._server: http.server.HTTPServer | None = None
        self._stopping = threading.Event()

    @property
    def url(self) -> str:
        """The stream's URL."""
        return f"http://127.0.0.1:{self.port}/stream.mjpg"

    def start(self) -> None:
        """Serve (again) on the same port."""
        jpegs, period, stopping = self.jpegs, 1.0 / self.fps, self._stopping
        stopping.clear()

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
                self.end_headers()
                i = 0
                try:
                    while not stopping.is_set():
                        j = jpegs[i % len(jpegs)]
                        i += 1
                        self.wfile.write(b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: "
                                         + str(len(j)).encode() + b"\r\n\r\n" + j + b"\r\n")
                        time.sleep(period)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def log_message(self, *args: object) -> None:
                pass

        class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
            daemon_threads = True
            allow_reuse_address = True

        server = Server(("127.0.0.1", self.port), Handler)
        self.port = server.server_address[1]
        self._server = server
        threading.Thread(target=server.serve_forever, name="mjpeg", daemon=True).start()

    def stop(self) -> None:
        """Cut every stream and stop listening."""
        self._stopping.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


@dataclass(frozen=True)
class GtBox:
    """One ground-truth person box."""

    id: int
    box: BoxT


def load_gt(path: Path) -> dict[int, list[GtBox]]:
    """MOT ground truth `frame,id,x,y,w,h,...` by 0-based frame index."""
    out: dict[int, list[GtBox]] = collections.defaultdict(list)
    for line in path.read_text().splitlines():
        p = line.split(",")
        frame, pid = int(p[0]) - 1, int(p[1])
        x, y, w, h = (float(v) for v in p[2:6])
        out[frame].append(GtBox(pid, (round(x), round(y), round(w), round(h))))
    return out


@dataclass
class ClipRun:
    """The results of analysing a clip, with the time the analysis took (decoding excluded)."""

    results: list[FrameResult]
    seconds: float
    finish: list[Output] = field(default_factory=list)

    @property
    def outputs(self) -> list[tuple[FrameResult, Output]]:
        """Every output with the frame that produced it."""
        return [(r, o) for r in self.results for o in r.outputs]


def run_clip(path: Path, cfg: CameraConfig, max_frames: int | None = None) -> ClipRun:
    """Decode a clip at cfg.fps (unpaced) and feed it through a fresh pipeline."""
    src = VideoSource(str(path), cfg.fps, realtime=False)
    pipe = CameraPipeline(cfg)
    results: list[FrameResult] = []
    spent = 0.0
    try:
        while max_frames is None or len(results) < max_frames:
            frame = src.read()
            if frame is None:
                break
            t0 = time.perf_counter()
            results.append(pipe.process(frame.image, frame.ts, frame.index))
            spent += time.perf_counter() - t0
    finally:
        src.close()
    assert src.ended or max_frames is not None, "the clip did not play to its end"
    ts = results[-1].ts if results else 0.0
    return ClipRun(results, spent, pipe.finish(ts))


# ---- scoring against ground truth ----------------------------------------------------------------

@dataclass(frozen=True)
class Matched:
    """Our events matched to ground-truth people."""

    true_pos: int
    false_pos: int
    false_neg: int
    detail: str


def gt_zone_intruders(gt: dict[int, list[GtBox]], polygon: np.ndarray, fps: float, dwell_s: float) -> set[int]:
    """Ground-truth ids whose feet stay in the polygon for at least dwell_s without a break."""
    runs: dict[int, int] = collections.defaultdict(int)
    best: dict[int, int] = collections.defaultdict(int)
    for frame in sorted(gt):
        present = {g.id for g in gt[frame] if inside(polygon, foot(g.box))}
        for pid in list(runs):
            if pid not in present:
                runs[pid] = 0
        for pid in present:
            runs[pid] += 1
            best[pid] = max(best[pid], runs[pid])
    # n frames in a row span (n - 1) frame intervals of time.
    return {pid for pid, n in best.items() if (n - 1) / fps >= dwell_s}


def gt_line_crossings(gt: dict[int, list[GtBox]], a: np.ndarray, b: np.ndarray, margin: float
                      ) -> list[tuple[int, int, str]]:
    """(frame, id, 'right'|'left') for every ground-truth crossing, with the same side margin as the tracker."""
    sides: dict[int, float] = {}
    out = []
    for frame in sorted(gt):
        for g in gt[frame]:
            d = side(a, b, foot(g.box))
            if abs(d) < margin:
                continue
            s = 1.0 if d > 0 else -1.0
            prev = sides.get(g.id)
            sides[g.id] = s
            if prev is not None and prev != s:
                out.append((frame, g.id, "right" if s > 0 else "left"))
    return out


def best_gt_id(gt_frame: list[GtBox], box: BoxT, min_iou: float = 0.3) -> int | None:
    """The ground-truth person a box covers best, if any covers it well enough."""
    scored = [(iou(box, g.box), g.id) for g in gt_frame]
    if not scored:
        return None
    best_iou, pid = max(scored)
    return pid if best_iou >= min_iou else None


def score_intrusions(run: ClipRun, gt: dict[int, list[GtBox]], zone: str, dwell_s: float,
                     truth: set[int]) -> Matched:
    """Our intrusions (objects in `zone` with dwell >= dwell_s) against the ground-truth intruders."""
    first: dict[str, tuple[FrameResult, CameraObject]] = {}
    for r, o in run.outputs:
        body = o.body
        if isinstance(body, CameraObject) and zone in body.zones and body.dwell_s >= dwell_s:
            first.setdefault(body.event_id, (r, body))
    matched: set[int] = set()
    fp = 0
    notes = []
    for event_id, (r, body) in first.items():
        assert body.box is not None
        pid = best_gt_id(gt.get(r.index, []), (body.box.x, body.box.y, body.box.w, body.box.h))
        ok = pid is not None and pid in truth and pid not in matched
        notes.append(f"{event_id}@{r.index}->gt{pid}{'' if ok else '(FP)'}")
        if ok and pid is not None:
            matched.add(pid)
        else:
            fp += 1
    return Matched(len(matched), fp, len(truth - matched), " ".join(notes))


def our_crossings(run: ClipRun, line: str) -> list[tuple[int, str]]:
    """(frame, direction) of our crossings of a line."""
    return [(r.index, o.body.direction) for r, o in run.outputs
            if isinstance(o.body, CameraLineCross) and o.body.line == line]
