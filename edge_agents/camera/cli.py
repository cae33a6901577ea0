"""`commhub agent camera`: watch the configured cameras live, or analyse a recording offline (--analyse)."""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from commhub.config import ConfigError, load
from edge_agents.camera.config import CameraConfig

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `commhub agent camera`."""
    parser.add_argument("--config", type=Path, help="the commhub YAML config (cameras: and community:)")
    parser.add_argument("--camera", action="append", default=[], metavar="ID",
                        help="live: watch only this camera (repeatable); --analyse: use this camera's settings")
    parser.add_argument("--name", help="agent name: MQTT client id and state dir (default cameras.agent_name)")
    parser.add_argument("--state-dir", type=Path, help="override <agent.state_dir>/<name>")
    parser.add_argument("--duration", type=float, help="stop after this many seconds (default: until SIGINT/SIGTERM)")
    parser.add_argument("--analyse", "--analyze", type=Path, metavar="FILE",
                        help="analyse a recording offline and print what the camera would raise")
    parser.add_argument("--camera-config", type=Path, metavar="YAML",
                        help="--analyse: one camera's settings (the keys of a cameras.devices entry)")
    parser.add_argument("--json", action="store_true", help="--analyse: one JSON line per analysed frame")
    parser.add_argument("--fps", type=float, help="--analyse: frames analysed per second (overrides the settings)")
    parser.add_argument("--width", type=int, help="--analyse: analysis width (overrides the settings)")
    parser.add_argument("--max-frames", type=int, help="--analyse: stop after this many analysed frames")
    parser.add_argument("--snapshots", type=Path, metavar="DIR", help="--analyse: write the event snapshots here")
    parser.add_argument("--evaluate", type=Path, metavar="PATH",
                        help="score against MOT ground truth: a video with NAME.gt.txt beside it, or a folder of "
                             "them; ours next to plain MOG2 + default HOG, at each --scales")
    parser.add_argument("--scales", default="1,1/2,1/3",
                        help="--evaluate: footage scales, comma-separated (default 1,1/2,1/3)")
    parser.add_argument("--calibrate", type=Path, metavar="FILE",
                        help="measure the smallest person in a calibration image or clip; prints detect.min_person_px")


def run(args: argparse.Namespace) -> int:
    """Live mode or offline analysis."""
    if args.evaluate is not None:
        return _evaluate(args)
    if args.calibrate is not None:
        return _calibrate(args)
    if args.analyse is not None:
        return _analyse(args)
    if args.config is None:
        print("commhub agent camera: give --config FILE (live) or --analyse FILE (offline)", file=sys.stderr)
        return 2
    return _live(args)


# ---- live -----------------------------------------------------------------------------------------

def _live(args: argparse.Namespace) -> int:
    from edge_agents.base.serve import serve
    from edge_agents.camera.agent import CameraAgent

    agent = CameraAgent(load(args.config), args.name, cameras=args.camera, state_dir=args.state_dir)
    rc = serve(agent, "camera agent", args.duration)
    if rc:
        return rc
    print(json.dumps({"agent": agent.name, "cameras": agent.stats()}))
    return 0


# ---- offline analysis ------------------------------------------------------------------------------

def _camera_for_analysis(args: argparse.Namespace) -> CameraConfig:
    source = str(args.analyse or args.evaluate or args.calibrate)
    if args.camera_config is not None:
        path = args.camera_config
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError) as e:
            raise ConfigError(f"{path}: cannot read camera settings: {e}") from None
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: <root>: expected a mapping of camera settings")
        data = {"id": "analyse", **data, "source": source}
        try:
            cam = CameraConfig.model_validate(data)
        except ValidationError as e:
            raise ConfigError("\n".join(f"{path}: {'.'.join(str(p) for p in err['loc']) or '<root>'}: {err['msg']}"
                                        for err in e.errors())) from None
    elif args.config is not None:
        cams = load(args.config).cameras.devices
        wanted = args.camera[0] if args.camera else None
        if wanted is None and len(cams) != 1:
            raise ConfigError(f"{args.config}: cameras.devices: {len(cams)} cameras; choose one with --camera ID")
        found = [c for c in cams if wanted is None or c.id == wanted]
        if not found:
            raise ConfigError(f"{args.config}: cameras.devices: no camera {wanted!r}")
        cam = found[0].model_copy(update={"source": source})
    else:
        cam = CameraConfig(id="analyse", source=source)
    update: dict[str, Any] = {"realtime": False, "loop": False}
    if args.fps is not None:
        update["fps"] = args.fps
    if args.width is not None:
        update["width"] = args.width
    try:
        return CameraConfig.model_validate({**cam.model_dump(), **update})
    except ValidationError as e:
        raise ConfigError(f"command line: {e.errors()[0]['loc']}: {e.errors()[0]['msg']}") from None


def _analyse(args: argparse.Namespace) -> int:
    import cv2

    from edge_agents.camera.pipeline import CameraPipeline, FrameResult
    from edge_agents.camera.source import VideoSource

    path: Path = args.analyse
    if not path.is_file():
        print(f"commhub agent camera: --analyse {path}: no such file", file=sys.stderr)
        return 2
    cam = _camera_for_analysis(args)
    cv2.setNumThreads(1)
    src = VideoSource(str(path), cam.fps, realtime=False, loop=False)
    pipe = CameraPipeline(cam)
    if args.snapshots is not None:
        args.snapshots.mkdir(parents=True, exist_ok=True)
    counts: Counter[str] = Counter()
    frames = motion = 0
    max_persons = 0
    started = time.perf_counter()
    last_ts = 0.0
    try:
        while args.max_frames is None or frames < args.max_frames:
            frame = src.read()
            if frame is None:
                if src.opens == 0:
                    print(f"commhub agent camera: --analyse {path}: not a video OpenCV can read", file=sys.stderr)
                    return 2
                break
            result = pipe.process(frame.image, frame.ts, frame.index)
            frames += 1
            motion += result.motion
            max_persons = max(max_persons, result.persons)
            last_ts = result.ts
            _write_snapshots(args.snapshots, result.outputs)
            counts.update(o.body.type for o in result.outputs)
            _print_frame(args.json, result, pipe.tamper.active())
        final = pipe.finish(last_ts)
        counts.update(o.body.type for o in final)
        if final and not args.json:
            _print_frame(False, FrameResult(-1, last_ts, False, 0.0, (), False, 0, 0, final), [])
    finally:
        src.close()
    spent = time.perf_counter() - started
    summary = {"summary": True, "file": str(path), "frames": frames, "motion_frames": motion,
               "max_persons": max_persons, "events": dict(sorted(counts.items())),
               "fps": round(frames / spent, 1) if spent > 0 else None,
               # What the end of the recording closes (objects still tracked, motion still on).
               "final_events": [o.body.model_dump(mode="json") for o in final]}
    if args.json:
        print(json.dumps(summary), flush=True)
    else:
        print(f"{frames} frames analysed at {cam.fps:g} fps ({summary['fps']} frames/s), motion in {motion}, "
              f"at most {max_persons} people; events: {summary['events'] or 'none'}")
    return 0


def _write_snapshots(folder: Path | None, outputs: list[Any]) -> None:
    if folder is None:
        return
    for out in outputs:
        if out.jpeg is not None:
            (folder / f"{out.body.snapshot}.jpg").write_bytes(out.jpeg)


def _print_frame(as_json: bool, result: Any, tamper: Sequence[str]) -> None:
    events = [o.body.model_dump(mode="json") for o in result.outputs]
    if as_json:
        line = {"frame": result.index, "ts": round(result.ts, 3), "motion": result.motion,
                "motion_pct": result.motion_pct, "motion_zones": list(result.motion_zones),
                "detected": result.detected, "detections": result.detections, "persons": result.persons,
                "tamper": tamper, "events": events}
        print(json.dumps(line), flush=True)
        return
    for e in events:
        detail = " ".join(f"{k}={v}" for k, v in e.items() if k != "type" and v not in (None, (), []))
        where = "end of file" if result.index < 0 else f"frame {result.index} ({result.ts:.2f} s)"
        print(f"{where}: {e['type']} {detail}", flush=True)


# ---- evaluation and calibration ----------------------------------------------------------------------

def _scales(text: str) -> list[float]:
    out = []
    for part in text.split(","):
        num, _, den = part.strip().partition("/")
        try:
            value = float(num) / float(den) if den else float(num)
        except (ValueError, ZeroDivisionError):
            raise ConfigError(f"--scales: {part.strip()!r} is not a number or a fraction such as 1/2") from None
        if not 0.05 <= value <= 1.0:
            raise ConfigError(f"--scales: {part.strip()!r} must be between 0.05 and 1")
        out.append(value)
    return out


def _evaluate(args: argparse.Namespace) -> int:
    import cv2

    from edge_agents.camera.evaluate import clips_in, evaluate_clip, table

    path: Path = args.evaluate
    if path.is_dir():
        clips = clips_in(path)
    elif path.is_file():
        gt = path.with_name(path.stem + ".gt.txt")
        clips = [(path, gt)] if gt.is_file() else []
    else:
        clips = []
    if not clips:
        print(f"commhub agent camera: --evaluate {path}: no video with NAME.gt.txt (MOT ground truth) beside it",
              file=sys.stderr)
        return 2
    cam = _camera_for_analysis(args)
    scales = _scales(args.scales)
    cv2.setNumThreads(1)
    scores = []
    for video, gt in clips:
        try:
            scores.extend(evaluate_clip(video, gt, cam, scales, max_frames=args.max_frames))
        except ValueError as e:
            print(f"commhub agent camera: --evaluate: {e}", file=sys.stderr)
            return 2
    if args.json:
        for sc in scores:
            print(json.dumps({"clip": sc.clip, "scale": round(sc.scale, 4), "size": list(sc.size),
                              "person_px": list(sc.person_px), "ours": _score_dict(sc.ours),
                              "baseline": _score_dict(sc.baseline)}), flush=True)
    else:
        print(f"fps {cam.fps:g}, detection at most {cam.detect.max_fps:g}/s; each cell: ours / plain MOG2 + HOG")
        print("\n".join(table(scores)))
    return 0


def _score_dict(score: Any) -> dict[str, float]:
    return {k: round(float(getattr(score, k)), 4) for k in score.__slots__}


def _calibrate(args: argparse.Namespace) -> int:
    import cv2

    from edge_agents.camera.calibrate import measure_person_px
    from edge_agents.camera.evaluate import read_clip
    from edge_agents.camera.learned import LearnedDetector

    path: Path = args.calibrate
    if not path.is_file():
        print(f"commhub agent camera: --calibrate {path}: no such file", file=sys.stderr)
        return 2
    cam = _camera_for_analysis(args)
    cv2.setNumThreads(1)
    image = cv2.imread(str(path))
    try:
        frames = [image] if image is not None else read_clip(path)[:: max(1, round(cam.fps))][:20]
    except ValueError as e:
        print(f"commhub agent camera: --calibrate: {e}", file=sys.stderr)
        return 2
    if not frames:
        print(f"commhub agent camera: --calibrate {path}: no frames", file=sys.stderr)
        return 2
    learned = LearnedDetector(cam.detect.learned_min_score) if cam.detect.learned else None
    try:
        if learned is not None:
            learned.check()
    except ValueError as e:
        print(f"commhub agent camera: --calibrate: {e}", file=sys.stderr)
        return 2
    found = measure_person_px(frames, cam.detect, learned)
    if found is None:
        print("no person found in the calibration frames: pick a frame with people at the farthest place you "
              "want counted, or set detect.min_person_px by hand", file=sys.stderr)
        return 1
    h, w = frames[0].shape[:2]
    print(json.dumps({"frames": len(frames), "size": [w, h], "people": found.people,
                      "smallest_px": found.smallest, "median_px": found.median, "detectors": list(found.detectors),
                      "detect": {"min_person_px": found.suggested}}))
    return 0
