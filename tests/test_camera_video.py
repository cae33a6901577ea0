"""Camera analytics scored on real footage: motion recall, false motion, person count, intrusions, crossings.

Footage (../shared/data/video): TUD-Campus and TUD-Stadtmitte with MOT ground truth, and the indoor
one-by-one clip whose empty frames were checked by eye (camera_helpers.ONE_BY_ONE_EMPTY).
Run with `pytest -s` to see the report lines. Each clip is analysed once per module.

Settings: the indoor clip runs on the shipped defaults (5 fps, detection at most 2.5/s). The TUD clips
last 2.8 s and 7.2 s, too short for 5 fps to give many frames, so they run at 12.5 fps with detection at
most 6.25/s (the same one-in-two ratio), and the zone's intrusion dwell is 0.5 s instead of 5 s.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import cv2
import numpy as np
import pytest
from camera_helpers import (
    ClipRun,
    GtBox,
    gt_line_crossings,
    gt_zone_intruders,
    load_gt,
    one_by_one_empty,
    one_by_one_person,
    our_crossings,
    run_clip,
    score_intrusions,
)

from commhub.wire import CameraCrowd, CameraObject
from edge_agents.camera.config import CameraConfig
from edge_agents.camera.geometry import to_pixels

pytestmark = pytest.mark.video

GT_FPS = 25.0
DWELL_S = 0.5
# Zones and tripwires drawn on the walkways, where the ground truth shows people walking (feet positions).
SETUPS = {
    "TUD-Stadtmitte": (((0.5, 0.48), (1.0, 0.48), (1.0, 0.75), (0.5, 0.75)), ((0.5, 0.40), (0.5, 0.9))),
    "TUD-Campus": (((0.0, 0.68), (0.45, 0.68), (0.45, 1.0), (0.0, 1.0)), ((0.5, 0.6), (0.5, 1.0))),
}
FLOOR = ((0.0, 0.5), (1.0, 0.5), (1.0, 1.0), (0.0, 1.0))  # the indoor clip: the floor people stand on


@pytest.fixture(scope="module", autouse=True)
def _one_core() -> None:
    cv2.setNumThreads(1)


def _tud_config(name: str) -> CameraConfig:
    zone, line = SETUPS[name]
    return CameraConfig.model_validate({
        "id": "cam-eval", "source": name, "fps": 12.5, "detect": {"max_fps": 6.25},
        # motion: False: motion is judged on the whole frame, which is what recall is scored against.
        "zones": [{"name": "walk", "polygon": zone, "intrusion_s": DWELL_S, "crowd": True, "motion": False}],
        "lines": [{"name": "mid", "a": line[0], "b": line[1]}],  # in_side right: moving to x < 0.5 is "out"
    })


@pytest.fixture(scope="module")
def tud(shared_data: Path) -> dict[str, tuple[ClipRun, dict[int, list[GtBox]]]]:
    video = shared_data / "video"
    return {name: (run_clip(video / f"{name}.mp4", _tud_config(name)), load_gt(video / f"{name}.gt.txt"))
            for name in SETUPS}


@pytest.fixture(scope="module")
def indoor(shared_data: Path) -> ClipRun:
    cfg = CameraConfig.model_validate({"id": "cam-eval", "source": "indoor",
                                       "zones": [{"name": "floor", "polygon": FLOOR, "crowd": True,
                                                  "motion": False}]})
    return run_clip(shared_data / "video" / "one-by-one-person-detection.mp4", cfg)


def test_motion_recall_and_false_motion(tud: dict[str, tuple[ClipRun, dict[int, list[GtBox]]]],
                                        indoor: ClipRun) -> None:
    for name, (run, gt) in tud.items():
        # The first analysed frame has no background yet: it cannot show motion, so it is left out.
        frames = [r for r in run.results[1:] if gt.get(r.index)]
        recall = np.mean([r.motion for r in frames])
        print(f"\n{name}: motion recall {recall:.3f} over {len(frames)} frames with people")
        # Measured 1.000 on both: people walk through the whole clip. 0.95 leaves room for noise.
        assert recall >= 0.95
    people = [r for r in indoor.results if one_by_one_person(r.index)]
    empty = [r for r in indoor.results[1:] if one_by_one_empty(r.index)]
    recall = np.mean([r.motion for r in people])
    false_rate = np.mean([r.motion for r in empty])
    print(f"one-by-one: motion recall {recall:.3f} over {len(people)} frames with a person, "
          f"false motion {false_rate:.3f} over {len(empty)} empty frames")
    # Measured 0.72: people stand still at the table for up to 25 s, and a still person fades into the
    # background after ~10 % of history_s (120 s). That is what "motion" means; the tracker keeps them.
    assert recall >= 0.6
    # Measured 0.000 (shadows of people just outside the view included). One frame in 20 would be a fault.
    assert false_rate <= 0.05


def test_person_count_error(tud: dict[str, tuple[ClipRun, dict[int, list[GtBox]]]], indoor: ClipRun) -> None:
    for name, (run, gt) in tud.items():
        tracked = np.mean([abs(r.persons - len(gt.get(r.index, []))) for r in run.results])
        raw = np.mean([abs(r.detections - len(gt.get(r.index, []))) for r in run.results if r.detected])
        mean_gt = np.mean([len(gt.get(r.index, [])) for r in run.results])
        print(f"\n{name}: person count MAE {tracked:.2f} tracked, {raw:.2f} raw, {mean_gt:.1f} people per frame")
        # One detector run finds part of a crowd (raw MAE measured 2.0-2.7: half the runs are HOG refresh runs
        # that only re-find tracked people, and the learned detector's full searches find about 70 % of the
        # people); the tracker carries people over missed runs and people hidden behind others (the occluded
        # state): measured 0.71 Stadtmitte, 0.28 Campus (0.76 and 0.56 before the occluded state, 0.84 and 1.50
        # with HOG's full searches). The bound is the target, 1.0; tracking must help. The full
        # evaluation, at three scales and beside the baseline, is in test_camera_evaluate.py.
        assert tracked <= 1.0
        assert tracked < raw
    truth = {r.index: 1 for r in indoor.results if one_by_one_person(r.index)}
    truth |= {r.index: 0 for r in indoor.results if one_by_one_empty(r.index)}
    scored = [r for r in indoor.results if r.index in truth]
    mae = np.mean([abs(r.persons - truth[r.index]) for r in scored])
    on_empty = np.mean([r.persons for r in scored if truth[r.index] == 0])
    print(f"one-by-one: person count MAE {mae:.2f} over {len(scored)} frames, {on_empty:.2f} people on empty frames")
    # Measured 0.40 with the learned detector's full searches (0.59 with HOG's, which rarely found two of the
    # six people: seen from behind, standing). The bound is the target for this clip, 0.50. On empty
    # frames the count was 0.27 (0.19 with HOG's): a track counts for count_hold_s (3 s) after its last
    # detection, also after the exit, and the learned detector finds people up to the door. The bound is that
    # measurement plus noise.
    assert mae <= 0.5
    assert on_empty <= 0.3


def test_zone_intrusions_against_ground_truth(tud: dict[str, tuple[ClipRun, dict[int, list[GtBox]]]]) -> None:
    for name, (run, gt) in tud.items():
        polygon = to_pixels(SETUPS[name][0], "normalised", (640, 480), (640, 480))
        truth = gt_zone_intruders(gt, polygon, GT_FPS, DWELL_S)
        m = score_intrusions(run, gt, "walk", DWELL_S, truth)
        print(f"\n{name}: intrusions (feet >= {DWELL_S} s in 'walk'): ground truth {len(truth)}, "
              f"found {m.true_pos}, false {m.false_pos}, missed {m.false_neg}  [{m.detail}]")
        # Measured: Stadtmitte 6 of 7 found, 1 false; Campus 3 of 4, none false (with HOG's full searches 4 of
        # 7 with 1 false, and 3 of 4 with 1 false; earlier 1 of 4 with 2-3 false on Campus: a dense group
        # walking together, where a box over two merged people matches no ground-truth box).
        if name == "TUD-Stadtmitte":
            assert m.true_pos >= 3 and m.false_pos <= 2
        else:
            assert m.true_pos >= 1 and m.false_pos <= 4


def test_line_crossings_against_ground_truth(tud: dict[str, tuple[ClipRun, dict[int, list[GtBox]]]]) -> None:
    for name, (run, gt) in tud.items():
        a, b = to_pixels(SETUPS[name][1], "normalised", (640, 480), (640, 480))
        truth = gt_line_crossings(gt, a, b, margin=0.02 * 800)
        ours = our_crossings(run, "mid")
        print(f"\n{name}: crossings ground truth {[(f, d) for f, _, d in truth]}, ours {ours}")
        # The line runs top to bottom, so its right-hand side (in) is x < 0.5: ground truth "right" = "in".
        expect = {"right": "in", "left": "out"}
        unmatched = list(truth)
        for frame, direction in ours:
            hit = next((t for t in unmatched if abs(t[0] - frame) <= 12 and expect[t[2]] == direction), None)
            assert hit is not None, f"crossing at frame {frame} ({direction}) has no ground-truth crossing"
            unmatched.remove(hit)
        # Measured: Stadtmitte both crossings found with their direction; Campus 3 of 4 (2 of 4 before a new
        # object took the side its track was first seen on: a track in the group was confirmed on the line,
        # after its person had crossed). The one missed (frame 21) is a person at the back of the group whose
        # track took the box of the person in front for a while. No crossing may be invented or have the wrong
        # direction. Campus must keep its 3 of 4: the occluded state moves hidden people's boxes on, and a box
        # moved across the line must not lose or invent a crossing there (still 3 of 4 with it).
        if name == "TUD-Stadtmitte":
            assert not unmatched
        else:
            assert len(truth) - len(unmatched) >= 3


def test_indoor_intrusions_one_per_person(indoor: ClipRun) -> None:
    # Six people come in one at a time and stay 13-28 s: each should raise one intrusion of the floor
    # (dwell >= 5 s, the default), and none may come from an empty room.
    runs = []
    start = None
    for r in indoor.results:
        if one_by_one_person(r.index) and start is None:
            start = r.index
        if not one_by_one_person(r.index) and start is not None:
            runs.append((start, r.index))
            start = None
    assert len(runs) == 6
    found: dict[int, list[str]] = defaultdict(list)
    false = []
    for r, o in indoor.outputs:
        body = o.body
        if isinstance(body, CameraObject) and "floor" in body.zones and body.dwell_s >= 5.0:
            if body.event_id in {e for ids in found.values() for e in ids} or body.event_id in false:
                continue
            person = next((i for i, (a, b) in enumerate(runs) if a <= r.index <= b), None)
            if person is None:
                false.append(body.event_id)
            else:
                found[person].append(body.event_id)
    print(f"\none-by-one: intrusions for {len(found)} of {len(runs)} people, "
          f"{sum(len(v) - 1 for v in found.values())} duplicates, {len(false)} in an empty room")
    # Measured 4 of 6, no duplicate and none in an empty room (3 of 6 with 2 duplicates with HOG's full
    # searches, which miss two or three people, seen from behind and standing, almost entirely). At least
    # 3, and at most one false intrusion (an earlier measurement).
    assert len(found) >= 3
    assert len(false) <= 1


def test_event_feed_is_consistent(tud: dict[str, tuple[ClipRun, dict[int, list[GtBox]]]], indoor: ClipRun) -> None:
    runs = [run for run, _ in tud.values()] + [indoor]
    for run in runs:
        phases: dict[str, list[str]] = defaultdict(list)
        size = None
        for o in [o for _, o in run.outputs] + run.finish:
            body = o.body
            if isinstance(body, CameraObject):
                phases[body.event_id].append(body.phase)
                if body.phase == "new":
                    assert body.snapshot is not None
            if o.jpeg is not None:
                image = cv2.imdecode(np.frombuffer(o.jpeg, np.uint8), cv2.IMREAD_COLOR)
                assert image is not None
                size = image.shape[1]
            if isinstance(body, CameraCrowd):
                assert body.zone in ("walk", "floor")
        assert phases, "no objects at all"
        for event_id, seq in phases.items():
            # Frigate-like: exactly one new first, one end last (the end of the clip closes the rest).
            assert seq[0] == "new" and seq[-1] == "end" and seq.count("new") == 1 and seq.count("end") == 1, (
                event_id, seq)
        assert size == 640  # snapshots are analysis frames
        fps = len(run.results) / run.seconds
        print(f"\n{len(run.results)} frames analysed at {fps:.0f} frames/s (one core, decoding excluded)")
