"""`commhub agent camera --analyse FILE --json` through the real command line, on a short real clip."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from commhub.wire import BODY_TYPES

pytestmark = pytest.mark.video

ROOT = Path(__file__).resolve().parents[1]


def _camera(*args: str | Path, timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "commhub.cli", "--log-level", "WARNING", "agent", "camera",
                           *map(str, args)], cwd=ROOT, capture_output=True, text=True, timeout=timeout)


def _lines(out: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def test_analyse_json_prints_one_line_per_analysed_frame(shared_data: Path, tmp_path: Path) -> None:
    clip = shared_data / "video" / "TUD-Campus.mp4"  # 71 frames at 25 fps
    settings = tmp_path / "cam.yaml"
    settings.write_text(
        "fps: 12.5\n"
        "zones:\n"
        "  - {name: walk, polygon: [[0, 0.68], [0.45, 0.68], [0.45, 1.0], [0, 1.0]], intrusion_s: 0.5}\n"
        "lines:\n"
        "  - {name: mid, a: [320, 288], b: [320, 480], coords: pixel}\n")
    snaps = tmp_path / "snaps"
    done = _camera("--analyse", clip, "--json", "--camera-config", settings, "--snapshots", snaps)
    assert done.returncode == 0, done.stderr
    lines = _lines(done.stdout)
    frames, summary = lines[:-1], lines[-1]
    # 12.5 of 25 fps: every other frame, numbered as in the file so a user can seek to it.
    assert [f["frame"] for f in frames] == list(range(0, 71, 2))
    for f in frames:
        assert isinstance(f["motion"], bool) and isinstance(f["persons"], int) and isinstance(f["events"], list)
        for e in f["events"]:
            BODY_TYPES[e["type"]].model_validate_json(json.dumps(e))  # every event is a valid wire body
    assert sum(f["motion"] for f in frames) >= 30  # people walk through all of it
    assert max(f["persons"] for f in frames) >= 3  # 4-6 people in view
    events = [e for f in frames for e in f["events"]]
    new = [e for e in events if e["type"] == "camera_object" and e["phase"] == "new"]
    assert new and all(e["snapshot"] for e in new)
    # The JPEG of each referenced snapshot was written, and is the 640x480 analysis frame.
    for e in new:
        image = cv2.imdecode(np.fromfile(snaps / f"{e['snapshot']}.jpg", np.uint8), cv2.IMREAD_COLOR)
        assert image is not None and image.shape == (480, 640, 3)
    assert summary["summary"] is True and summary["frames"] == len(frames)
    assert summary["events"]["camera_object"] >= len(new)
    # Objects still tracked when the clip ends are closed in the summary.
    ends = [e for e in summary["final_events"] if e["type"] == "camera_object"]
    assert {e["phase"] for e in ends} == {"end"}
    ended = {e["event_id"] for e in events if e.get("phase") == "end"} | {e["event_id"] for e in ends}
    assert {e["event_id"] for e in new} == ended


def test_analyse_with_defaults_and_max_frames(shared_data: Path) -> None:
    done = _camera("--analyse", shared_data / "video" / "one-by-one-person-detection.mp4", "--json",
                   "--max-frames", "40")
    assert done.returncode == 0, done.stderr
    lines = _lines(done.stdout)
    assert len(lines) == 41
    # Default 5 fps from a 10 fps file: every other frame. The first 60 frames show an empty room.
    assert [f["frame"] for f in lines[:-1]] == list(range(0, 80, 2))
    assert not any(f["motion"] for f in lines[:30])
    assert all(f["persons"] == 0 for f in lines[:30])


def test_analyse_human_output(shared_data: Path) -> None:
    done = _camera("--analyse", shared_data / "video" / "TUD-Stadtmitte.mp4", "--fps", "12.5")
    assert done.returncode == 0, done.stderr
    assert "camera_object" in done.stdout and "phase=new" in done.stdout
    assert done.stdout.strip().splitlines()[-1].startswith("90 frames analysed at 12.5 fps")


def test_analyse_refuses_bad_input_clearly(tmp_path: Path) -> None:
    missing = _camera("--analyse", tmp_path / "nope.mp4", "--json")
    assert missing.returncode == 2 and "no such file" in missing.stderr
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"this is not a video" * 100)
    bad = _camera("--analyse", junk, "--json")
    assert bad.returncode == 2 and "not a video" in bad.stderr
    assert bad.stdout == ""
    settings = tmp_path / "cam.yaml"
    settings.write_text("fps: 5\nzones:\n  - {name: walk, polygon: [[0, 0], [2, 0], [1, 1]]}\nfsp: 3\n")
    wrong = _camera("--analyse", junk, "--camera-config", settings)
    assert wrong.returncode == 2
    assert f"{settings}: fsp: Extra inputs are not permitted" in wrong.stderr
    assert "outside 0..1" in wrong.stderr


def test_live_mode_needs_a_config() -> None:
    done = _camera()
    assert done.returncode == 2 and "--config" in done.stderr
