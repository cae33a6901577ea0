"""The camera evaluation: scoring against MOT ground truth, and a short real clip scored next to the baseline.

The full evaluation (both TUD clips at full, 1/2 and 1/3 scale) is `commhub agent camera --evaluate
../shared/data/video`; its figures are in edge_agents/camera/README.md. Here TUD-Campus (71 frames, the
harder of the two: a dense group walking together) runs at half scale, where its people are 64-144 px tall
(median 92): below the 104 px a person fills in OpenCV's HOG window, so the plain baseline misses most.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from commhub.cli import main
from edge_agents.camera.config import CameraConfig
from edge_agents.camera.evaluate import evaluate_clip, load_mot, match, read_clip, sample, scale_gt


def test_matching_is_one_to_one_at_iou_half() -> None:
    truth = [(0, 0, 10, 20), (100, 0, 10, 20)]
    # Two boxes on the first person count once; a box half off the second (IoU 1/3) does not count.
    assert match([(0, 0, 10, 20), (1, 0, 10, 20), (105, 0, 10, 20)], truth) == 1
    assert match([], truth) == 0 and match([(0, 0, 10, 20)], []) == 0
    assert match([(0, 0, 10, 20), (100, 0, 10, 20)], truth) == 2


def test_ground_truth_loading_scaling_and_sampling(tmp_path: Path) -> None:
    gt = tmp_path / "x.gt.txt"
    gt.write_text("1,1,10,20,30,60,1,-1,-1,-1\n1,2,50,20,30,60,1,-1,-1,-1\n3,1,12,20,30,60,1,-1,-1,-1\n")
    boxes = load_mot(gt)
    assert boxes == {0: [(10, 20, 30, 60), (50, 20, 30, 60)], 2: [(12, 20, 30, 60)]}
    assert scale_gt(boxes, 0.5)[0] == [(5, 10, 15, 30), (25, 10, 15, 30)]
    gt.write_text("1,1,10,20,30,60\nnot,a,mot,line\n")
    with pytest.raises(ValueError, match=r"x\.gt\.txt:2: not a MOT line"):
        load_mot(gt)
    gt.write_text("0,1,10,20,30,60\n")
    with pytest.raises(ValueError, match=r":1: frame must be >= 1"):
        load_mot(gt)
    # 12.5 of 25 fps takes every other frame; 5 of 25 every fifth.
    assert sample(10, 25.0, 12.5) == [0, 2, 4, 6, 8]
    assert sample(11, 25.0, 5.0) == [0, 5, 10]


@pytest.mark.video
def test_short_clip_at_half_scale_beats_the_baseline(shared_data: Path) -> None:
    cv2.setNumThreads(1)
    video = shared_data / "video"
    # The TUD clips last 2.8 s and 7.2 s: 12.5 fps with detection at most 6.25/s (the shipped one-in-two
    # ratio of 5 fps and 2.5/s) gives enough frames to score. Everything else is the shipped default.
    cam = CameraConfig.model_validate({"id": "cam-eval", "source": "eval", "fps": 12.5,
                                       "detect": {"max_fps": 6.25}})
    (score,) = evaluate_clip(video / "TUD-Campus.mp4", video / "TUD-Campus.gt.txt", cam, scales=(0.5,))
    ours, base = score.ours, score.baseline
    print(f"\nTUD-Campus 1/2: ours MAE {ours.mae:.2f} bias {ours.bias:+.2f} P {ours.precision:.2f} "
          f"R {ours.recall:.2f} motion {ours.motion_recall:.2f} bias by third {ours.bias_first:+.2f} / "
          f"{ours.bias_last:+.2f}; baseline MAE {base.mae:.2f} bias {base.bias:+.2f} "
          f"P {base.precision:.2f} R {base.recall:.2f}")
    assert score.size == (320, 240) and ours.frames == base.frames == 36
    # Motion: people walk through every frame; the first frame has no background yet (1 of 36 missed).
    assert ours.motion_recall >= 0.9
    # The baseline's HOG cannot see people under its 128 px window: measured MAE 3.47, bias -3.47 (5.1
    # present per frame). Ours runs the learned detector (SSDLite) on its full searches, which sees people
    # partly hidden in this dense group, and counts tracks, with the occluded state for people hidden behind
    # others: measured MAE 0.28, bias -0.28 with the shipped defaults (0.56 / -0.56 before the occluded state,
    # 1.56 / -1.33 with HOG's full searches). The bounds are the targets, MAE 1.0 and bias within
    # +-0.5: the run is deterministic (one OpenCV thread, the same frames), so they do not depend on the
    # machine's speed. A return of the hidden people's error (-0.56) fails the bias bound.
    assert ours.mae < base.mae - 1.0
    assert ours.mae <= 1.0
    assert -0.5 <= ours.bias <= 0.5
    # The start: with HOG the count built up over the first second or two (bias -3.08 over the first third
    # of the frames: HOG found 1 of the 6 people on the first frame). The learned detector finds 5 of 6 on
    # the first frame, and the occluded state keeps two people hidden behind the nearest one: measured -0.42
    # over the first third (-1.08 before the occluded state). -1.0 is the measurement plus about half a person.
    assert ours.bias_first >= -1.0
    # Detection at IoU 0.5 over the runs the detector made; half of ours are refresh runs that only re-find
    # tracked people, which lowers recall per run and raises precision: measured ours P 0.98 R 0.45 (P 1.00,
    # R 0.44 with HOG's full searches), the baseline P 0.91 R 0.29.
    assert ours.precision >= 0.7
    assert ours.recall >= 0.35 and ours.recall > base.recall + 0.1


@pytest.mark.video
def test_evaluate_command_line(shared_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # In process (commhub.cli.main), as `commhub agent camera --evaluate ...` runs it: no interpreter start-up.
    rc = main(["--log-level", "WARNING", "agent", "camera", "--evaluate", str(shared_data / "video" / "TUD-Campus.mp4"),
               "--scales", "1/3", "--max-frames", "20", "--json"])
    out = capsys.readouterr().out
    assert rc == 0
    (line,) = [json.loads(x) for x in out.splitlines() if x.strip()]
    assert line["clip"] == "TUD-Campus" and line["size"] == [213, 160] and line["ours"]["frames"] == 4
    assert set(line["ours"]) == set(line["baseline"]) >= {"mae", "bias", "precision", "recall", "motion_recall"}
    assert main(["agent", "camera", "--evaluate", str(tmp_path)]) == 2
    assert "no video with NAME.gt.txt" in capsys.readouterr().err
    assert main(["agent", "camera", "--evaluate", str(shared_data / "video"), "--scales", "2"]) != 0
    assert "between 0.05 and 1" in capsys.readouterr().err


@pytest.mark.video
def test_calibrate_measures_the_people_in_a_frame(shared_data: Path, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    # One frame of TUD-Campus at half size: its six ground-truth people are 64-144 px tall (median 92).
    (frame,) = read_clip(shared_data / "video" / "TUD-Campus.mp4", 0.5)[:1]
    image = tmp_path / "calibration.png"
    cv2.imwrite(str(image), frame)
    assert main(["--log-level", "WARNING", "agent", "camera", "--calibrate", str(image)]) == 0
    found = json.loads(capsys.readouterr().out)
    # The shipped default measures with the learned detector and HOG, as the camera searches. Measured: 5 of
    # the 6 people (HOG alone: 3), smallest 74 px, median 99.
    assert found["size"] == [320, 240] and found["detectors"] == ["learned", "hog"]
    assert found["people"] >= 4
    # 90 % of the smallest measured people: between the window's floor at 3x upscale (35 px) and the median.
    assert 35 <= found["detect"]["min_person_px"] <= 92
    assert 64 <= found["median_px"] <= 144
    hog_only = tmp_path / "hog.yaml"
    hog_only.write_text("id: cam-cal\nsource: calibration\ndetect: {learned: false}\n", encoding="utf-8")
    assert main(["--log-level", "WARNING", "agent", "camera", "--calibrate", str(image),
                 "--camera-config", str(hog_only)]) == 0
    found_hog = json.loads(capsys.readouterr().out)
    assert found_hog["detectors"] == ["hog"] and found_hog["people"] < found["people"]
    # A frame with nobody in it suggests nothing rather than a size taken from noise.
    blank = tmp_path / "blank.png"
    cv2.imwrite(str(blank), np.full_like(frame, 128))
    assert main(["--log-level", "WARNING", "agent", "camera", "--calibrate", str(blank)]) == 1
    assert "no person found" in capsys.readouterr().err
    assert main(["agent", "camera", "--calibrate", str(tmp_path / "missing.png")]) == 2
    assert "no such file" in capsys.readouterr().err
