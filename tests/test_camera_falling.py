"""High-altitude throw detection: a falling object drawn into real footage of a facade, and what must not fire."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from camera_helpers import read_frames, run_clip

from commhub.wire import FallingObject
from edge_agents.camera.config import CameraConfig
from edge_agents.camera.pipeline import CameraPipeline

pytestmark = pytest.mark.video

FPS = 10.0
SETTINGS = {"id": "cam-up", "source": "x", "fps": FPS, "motion": {"width": 320},
            "detect": {"enabled": False}, "tamper": {"enabled": False},
            "falling": {"enabled": True, "floors": 6, "ground_y": 0.9, "roof_y": 0.1}}


@pytest.fixture(scope="module")
def campus(shared_data: Path) -> list[np.ndarray]:
    """TUD-Campus: a building front over a walkway with people (who must not count as throws)."""
    return read_frames(shared_data / "video" / "TUD-Campus.mp4")


@pytest.fixture(scope="module")
def facade(campus: list[np.ndarray]) -> list[np.ndarray]:
    """The building front alone (TUD-Campus's top 140 rows, scaled up), as a camera looking up would see it."""
    return [cv2.resize(f[:140], (640, 480)) for f in campus]


def _run(frames: list[np.ndarray], path: list[tuple[float, float] | None]) -> list[tuple[float, FallingObject]]:
    """Play the frames at FPS with a 14 px dark object drawn at path[i] (None: not in view)."""
    pipe = CameraPipeline(CameraConfig.model_validate(SETTINGS))
    found = []
    for i, pos in enumerate(path):
        f = frames[i % len(frames)].copy()
        if pos is not None:
            cv2.circle(f, (round(pos[0]), round(pos[1])), 7, (30, 30, 30), -1)
        ts = i / FPS
        found += [(ts, o.body) for o in pipe.process(f, ts).outputs if isinstance(o.body, FallingObject)]
    return found


def _fall(x0: float, y0: float, accel: float, drift: float = 0.0) -> list[tuple[float, float] | None]:
    pts: list[tuple[float, float] | None] = []
    t = 0.0
    while True:
        y = y0 + 0.5 * accel * t * t
        if y > 470:
            return pts
        pts.append((x0 + drift * t, y))
        t += 1.0 / FPS


def test_a_falling_object_is_reported_with_its_floor(facade: list[np.ndarray]) -> None:
    # From the top floor: ~1.2 s across the frame (an upward camera sees a 6-storey fall foreshortened).
    path = [None] * 20 + _fall(300, 60, 600.0, drift=15.0) + [None] * 10
    found = _run(facade, path)
    assert len(found) == 1
    ts, body = found[0]
    assert 2.0 <= ts <= 3.2  # while it falls, not after
    assert body.est_floor == 6
    assert body.event_id.endswith("-fall1")
    # From the second floor: 6 floors between y=0.9 and y=0.1 make each 0.133 high; y=340/480 is floor 2.
    low = _run(facade, [None] * 20 + _fall(300, 340, 600.0) + [None] * 10)
    assert [b.est_floor for _, b in low] == [2]


def test_people_birds_and_constant_speed_things_are_not_throws(campus: list[np.ndarray],
                                                              facade: list[np.ndarray]) -> None:
    # The walkers of TUD-Campus: they fall apart into small blobs, but none is alone and falling.
    assert _run(campus, [None] * 70) == []
    # A bird gliding across.
    assert _run(facade, [None] * 20 + [(40 + 40 * i, 150 + 3 * i) for i in range(14)]) == []
    # Something sliding down at constant speed (a window cleaner's bucket on a rope): no acceleration.
    assert _run(facade, [None] * 20 + [(300, 60 + 35 * i) for i in range(12)]) == []


def test_falling_detection_is_off_by_default_and_quiet_on_the_other_clips(shared_data: Path) -> None:
    cfg = CameraConfig.model_validate({**SETTINGS, "fps": 12.5})
    for clip, frames in (("TUD-Stadtmitte.mp4", None), ("one-by-one-person-detection.mp4", 500)):
        run = run_clip(shared_data / "video" / clip, cfg, max_frames=frames)
        assert [o.body for _, o in run.outputs if isinstance(o.body, FallingObject)] == []
    assert not CameraConfig(id="c", source="x").falling.enabled
