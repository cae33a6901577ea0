"""Camera analytics logic on synthetic input: config checks, geometry, tracker, zones, lines, crowd, motion masks."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

from commhub.config import Config
from commhub.wire import CameraCrowd, CameraLineCross, CameraMotion, CameraObject
from edge_agents.camera.config import CameraConfig, CamerasConfig, Line, TrackSettings, Zone
from edge_agents.camera.detect import Detection
from edge_agents.camera.geometry import BoxT, segments_cross, side, to_pixels
from edge_agents.camera.pipeline import CameraPipeline
from edge_agents.camera.tracker import Tracker
from edge_agents.camera.zones import Pending, ZoneAnalytics

# ---- config ---------------------------------------------------------------------------------------


def test_config_refuses_bad_geometry_and_names() -> None:
    with pytest.raises(ValidationError, match=r"outside 0\.\.1"):
        Zone(name="z", polygon=((0, 0), (1.5, 0), (1, 1)))
    with pytest.raises(ValidationError, match="at least 3"):
        Zone(name="z", polygon=((0, 0), (1, 0)))
    with pytest.raises(ValidationError, match="negative"):
        Zone(name="z", polygon=((0, 0), (-5, 0), (10, 10)), coords="pixel")
    with pytest.raises(ValidationError, match="same point"):
        Line(name="l", a=(0.5, 0.5), b=(0.5, 0.5))
    with pytest.raises(ValidationError, match="pattern"):
        Zone(name="Front Door", polygon=((0, 0), (1, 0), (1, 1)))  # labels are lower_snake (InfluxDB-safe)
    z = {"name": "z", "polygon": [[0, 0], [1, 0], [1, 1]]}
    with pytest.raises(ValidationError, match="zone names must be unique"):
        CameraConfig.model_validate({"id": "c", "source": "0", "zones": [z, z]})
    with pytest.raises(ValidationError, match="multiple of 4"):
        CameraConfig.model_validate({"id": "c", "source": "0", "detect": {"win_stride": 6}})
    with pytest.raises(ValidationError, match="Extra inputs"):
        CameraConfig.model_validate({"id": "c", "source": "0", "fsp": 5})
    with pytest.raises(ValidationError, match="camera ids must be unique"):
        CamerasConfig.model_validate({"devices": [{"id": "c", "source": "0"}, {"id": "c", "source": "1"}]})


def test_cameras_section_is_optional_in_the_main_config() -> None:
    community = {"site": {"id": "s1"}, "grids": [{"id": "g1"}]}
    assert Config.model_validate({"community": community}).cameras.devices == ()
    cfg = Config.model_validate({"community": community, "cameras": {"devices": [
        {"id": "cam1", "source": "rtsp://10.0.0.5/stream1", "fps": 4, "zones": [
            {"name": "gate", "polygon": [[0, 0.5], [1, 0.5], [1, 1]]}]}]}})
    assert cfg.cameras.devices[0].zones[0].intrusion_s == 5.0


# ---- geometry -------------------------------------------------------------------------------------


def test_pixel_coords_scale_from_the_camera_frame_to_the_analysis_frame() -> None:
    pts = to_pixels(((1280, 720), (640, 360)), "pixel", (1920, 1080), (640, 360))
    assert pts.ravel().tolist() == pytest.approx([426.67, 240.0, 213.33, 120.0], abs=0.01)
    assert to_pixels(((0.5, 0.25),), "normalised", (1920, 1080), (640, 360)).tolist() == [[320.0, 90.0]]


def test_side_and_crossing() -> None:
    a, b = np.array([100.0, 0.0]), np.array([100.0, 200.0])  # downwards: right-hand side is x < 100
    assert side(a, b, (50, 100)) > 0 and side(a, b, (150, 100)) < 0
    assert segments_cross((50, 100), (150, 100), a, b)
    assert not segments_cross((50, 300), (150, 300), a, b)  # passes below the end of the line


# ---- tracker --------------------------------------------------------------------------------------


def _det(x: int, y: int = 100, w: int = 40, h: int = 100) -> Detection:
    return Detection((x, y, w, h), 1.0)


def test_tracker_keeps_ids_confirms_and_ends() -> None:
    tr = Tracker(TrackSettings(min_hits=2, max_gap_s=1.0))
    u = tr.update([_det(0), _det(300)], 0.0)
    assert u.confirmed == [] and len(tr.tracks) == 2
    u = tr.update([_det(310), _det(8)], 0.2)  # order swapped, both moved a little
    assert sorted(t.id for t in u.confirmed) == [1, 2]
    by_id = {t.id: t.box[0] for t in tr.live}
    assert by_id == {1: 8, 2: 310}
    # A walker without overlap between two detections (fast, or detections far apart) keeps the id.
    tr.update([_det(40), _det(310)], 0.4)
    assert {t.id: t.box[0] for t in tr.live} == {1: 40, 2: 310}
    # Person 2 is not seen again: ended after max_gap_s, person 1 lives on.
    tr.update([_det(45)], 0.8)
    u = tr.update([_det(50)], 1.5)
    assert [t.id for t in u.ended] == [2] and [t.id for t in tr.live] == [1]
    # A one-off false detection never becomes an object.
    tr.update([_det(50), _det(500, h=60)], 1.6)
    u = tr.update([_det(50)], 3.0)
    assert u.ended == [] and [t.id for t in tr.live] == [1]


def test_tracker_does_not_swap_far_apart_or_different_size_people() -> None:
    tr = Tracker(TrackSettings(min_hits=1))
    tr.update([_det(0)], 0.0)
    tr.update([_det(400)], 0.2)  # too far to be the same person: a new one
    assert sorted(t.id for t in tr.tracks) == [1, 2]
    tr2 = Tracker(TrackSettings(min_hits=1))
    tr2.update([_det(0, h=100)], 0.0)
    tr2.update([_det(60, h=260, w=100)], 0.2)  # no overlap and a very different size
    assert sorted(t.id for t in tr2.tracks) == [1, 2]


def test_refresh_runs_continue_tracks_but_start_none() -> None:
    tr = Tracker(TrackSettings(min_hits=2))
    tr.update([_det(0)], 0.0)
    # A refresh run (births=False) only re-finds people already tracked: the new box at x=300 is dropped.
    u = tr.update([_det(6), _det(300)], 0.4, births=False)
    assert [t.id for t in u.confirmed] == [1] and [t.id for t in tr.tracks] == [1]
    # An empty refresh run changes nothing but the clock.
    assert tr.update([], 0.8, births=False).confirmed == [] and len(tr.tracks) == 1


def test_count_holds_seconds_not_detector_runs() -> None:
    # One person seen once, then missed: counted from the first detection (count_hits 1) and for count_hold_s
    # afterwards, whether the detector runs 2.5 or 10 times a second (in runs, the hold changed with the rate).
    for rate in (2.5, 10.0):
        tr = Tracker(TrackSettings(min_hits=2, count_hits=1, count_hold_s=3.0, max_gap_s=5.0))
        tr.update([_det(0)], 0.0)
        assert len(tr.counted) == 1 and tr.live == []  # counted, but no event (`new`) before min_hits
        n = 1
        while True:
            tr.update([], n / rate)
            if n / rate > 3.0:
                break
            assert len(tr.counted) == 1, (rate, n)  # missed, still counted within the hold (3.0 s exactly too)
            n += 1
        assert len(tr.counted) == 0, rate  # the first run after the hold: no longer counted
        assert len(tr.tracks) == 1  # the track itself lives on to max_gap_s (dwell times bridge gaps)
    # Between detector runs the hold runs on frame time too (expire() is called on every frame).
    tr = Tracker(TrackSettings(count_hits=1, count_hold_s=1.0, max_gap_s=5.0))
    tr.update([_det(0)], 0.0)
    tr.expire(0.9)
    assert len(tr.counted) == 1
    tr.expire(1.1)
    assert tr.counted == []
    # count_hits 2: a single detection (a false one, say) is not counted.
    tr = Tracker(TrackSettings(count_hits=2))
    tr.update([_det(0)], 0.0)
    assert tr.counted == []
    tr.update([_det(4)], 0.4)
    assert len(tr.counted) == 1


def test_a_part_of_a_person_is_not_counted_as_another() -> None:
    tr = Tracker(TrackSettings(count_hits=1))
    # A person 300 px tall, an "arm" 110 px tall inside their box, a far person 120 px tall who overlaps
    # the near one by a third of their box, and a second person of the same size beside the first.
    tr.update([_det(100, y=50, w=120, h=300), _det(150, y=80, w=40, h=110), _det(200, y=60, w=50, h=120),
               _det(300, y=50, w=120, h=300)], 0.0)
    assert sorted(t.box[0] for t in tr.counted) == [100, 200, 300]
    # Found together again: still not counted twice.
    tr.update([_det(100, y=50, w=120, h=300), _det(150, y=80, w=40, h=110)], 0.4)
    assert len(tr.counted) == 3
    # Seen more recently than the tall track around it, the small one counts: the tall box is stale (its
    # person may have walked on) and lies over someone smaller, who may be all the detector sees now.
    tr.update([_det(150, y=80, w=40, h=110)], 0.8)
    assert sorted(t.box[0] for t in tr.counted) == [100, 150, 200, 300]


def test_count_hold_must_outlast_the_refresh() -> None:
    # A person standing still is looked for only every refresh_s; a shorter hold would drop them in between.
    with pytest.raises(ValidationError, match="count_hold_s"):
        CameraConfig.model_validate({"id": "cam1", "source": "x", "track": {"count_hold_s": 1.0},
                                     "detect": {"refresh_s": 2.0}})


# ---- zones, lines, crowd --------------------------------------------------------------------------


def _analytics(**track: float) -> tuple[Tracker, ZoneAnalytics]:
    zones = [(Zone(name="yard", polygon=((0.5, 0), (1, 0), (1, 1), (0.5, 1)), intrusion_s=5.0, loiter_s=20.0,
                   crowd=True), to_pixels(((0.5, 0), (1, 0), (1, 1), (0.5, 1)), "normalised", (1, 1), (640, 480)))]
    ln = Line(name="gate", a=(0.25, 0), b=(0.25, 1))  # x = 160, downwards: right-hand side (in) is x < 160
    a, b = to_pixels((ln.a, ln.b), "normalised", (1, 1), (640, 480))
    settings = TrackSettings(**({"min_hits": 1, "max_gap_s": 1.0, "update_s": 100.0, "crowd_hold_s": 2.0} | track))
    return Tracker(settings), ZoneAnalytics("cam1", settings, zones, [(ln, a, b)], (640, 480), "r1")


def _walk(tr: Tracker, za: ZoneAnalytics, path: list[tuple[float, list[BoxT]]]) -> list[tuple[float, Pending]]:
    out = []
    for ts, boxes in path:
        u = tr.update([Detection(b, 1.0) for b in boxes], ts)
        out += [(ts, p) for p in za.step(tr.live, u.confirmed, u.ended, ts)]
    return out


def test_intrusion_dwell_loitering_and_end() -> None:
    tr, za = _analytics()
    box_out, box_in = (280, 200, 60, 100), (320, 200, 60, 100)  # feet at x=310 and x=350; the zone is x >= 320
    path = [(0.0, [box_out]), (1.0, [box_in])] + [(1.0 + 0.5 * i, [box_in]) for i in range(1, 45)]
    path += [(30.0, [])]  # gone: ended after max_gap_s
    out = _walk(tr, za, path)
    objs = [(ts, p.body) for ts, p in out if isinstance(p.body, CameraObject)]
    phases = [(ts, b.phase, b.zones, b.dwell_s) for ts, b in objs]
    assert phases[0] == (0.0, "new", (), 0.0)
    assert phases[1] == (1.0, "update", ("yard",), 0.0)  # entered the zone
    assert phases[2] == (6.0, "update", ("yard",), 5.0)  # intrusion dwell reached (5 s)
    assert phases[3] == (21.0, "update", ("yard",), 20.0)  # loitering time reached
    assert phases[4][1] == "end" and phases[4][2] == ()
    assert len({b.event_id for _, b in objs}) == 1
    assert objs[-1][1].entered_zones == ("yard",)
    # new and the first intrusion carry a snapshot request; the loitering update does not.
    assert [p.snapshot for _, p in out if isinstance(p.body, CameraObject)] == [True, False, True, False, False]


def test_zone_exit_needs_time_outside() -> None:
    tr, za = _analytics(zone_exit_s=1.0)
    box_in, box_out = (330, 200, 60, 100), (270, 200, 60, 100)  # feet at x=360 (in) and x=300 (out)
    # Inside, one frame "outside" (a flickering box), inside again: one stay, the dwell keeps counting.
    path = [(0.0, [box_in]), (0.2, [box_in]), (0.4, [box_out]), (0.6, [box_in])]
    path += [(0.2 * i, [box_in]) for i in range(4, 31)]
    # Then really out: the zone is left once the feet have been outside for zone_exit_s.
    path += [(6.0 + 0.2 * i, [box_out]) for i in range(1, 8)]
    out = _walk(tr, za, path)
    updates = [(ts, p.body) for ts, p in out if isinstance(p.body, CameraObject) and p.body.phase == "update"]
    assert [(ts, u.zones, u.dwell_s) for ts, u in updates] == [(5.0, ("yard",), 5.0), (pytest.approx(7.2), (), 0.0)]


def test_line_crossing_directions_without_jitter_counts() -> None:
    tr, za = _analytics()
    xs = [300, 250, 200, 170, 150, 165, 150, 155, 120, 80, 60, 100, 140, 180, 220, 260]  # feet x (box x + 20)
    out = _walk(tr, za, [(0.2 * i, [(x - 20, 200, 40, 100)]) for i, x in enumerate(xs)])
    crossings = [(ts, p.body.direction) for ts, p in out if isinstance(p.body, CameraLineCross)]
    # Right to left across x=160 once (jitter within the 16 px margin ignored), then back once.
    assert [d for _, d in crossings] == ["in", "out"]
    assert all(p.snapshot for _, p in out if isinstance(p.body, CameraLineCross))


def test_a_crossing_made_before_the_track_was_confirmed_counts() -> None:
    # Confirmed on the second detection: first seen left of x=160 (feet x 100), then on the line (within its
    # margin), then right of it. The crossing happened while the track was not yet an object; it counts once.
    tr, za = _analytics(min_hits=2)
    xs = [100, 150, 200, 240]
    out = _walk(tr, za, [(0.2 * i, [(x - 20, 200, 40, 100)]) for i, x in enumerate(xs)])
    assert [p.body.direction for _, p in out if isinstance(p.body, CameraLineCross)] == ["out"]
    # One that was first seen on the right and stays there crosses nothing.
    tr, za = _analytics(min_hits=2)
    out = _walk(tr, za, [(0.2 * i, [(x - 20, 200, 40, 100)]) for i, x in enumerate([200, 180, 210, 240])])
    assert not [p for _, p in out if isinstance(p.body, CameraLineCross)]


def test_crowd_count_is_reported_when_it_holds() -> None:
    tr, za = _analytics()
    people = [(400 + 60 * i, 200, 40, 100) for i in range(3)]
    path = [(0.5 * i, people) for i in range(8)]  # 3 people
    path += [(4.0, people[:1]), (4.5, people)]  # two missed for a frame: their tracks bridge it
    path += [(5.0 + 0.5 * i, people[:2]) for i in range(8)]  # one leaves at 5.0 s
    out = _walk(tr, za, path)
    crowd = [(ts, p.body.count) for ts, p in out if isinstance(p.body, CameraCrowd)]
    # 3 held for crowd_hold_s (2 s) from the start; the leaver's track ends at 6.0 s (max_gap_s after 4.5 s
    # plus a frame), and 2 is reported once that has held for 2 s.
    assert crowd == [(2.0, 3), (8.0, 2)]


# ---- motion in zones, masks (through the pipeline) ---------------------------------------------------


def _frames_with_block(xs: list[int], size: tuple[int, int] = (640, 480)) -> list[np.ndarray]:
    rng = np.random.default_rng(1)
    background = rng.integers(60, 200, (size[1] // 16, size[0] // 16, 3), dtype=np.uint8)
    base = np.kron(background, np.ones((16, 16, 1), np.uint8))  # a textured, still scene
    frames = []
    for x in xs:
        f = base.copy()
        if x >= 0:
            f[200:320, x:x + 60] = (20, 20, 240)
        frames.append(f)
    return frames


def _motion_run(cfg: CameraConfig, xs: list[int]) -> list[tuple[bool, tuple[str, ...]]]:
    pipe = CameraPipeline(cfg)
    out = []
    for i, f in enumerate(_frames_with_block(xs)):
        r = pipe.process(f, 0.2 * i)
        out.append((r.motion, r.motion_zones))
    return out


def test_motion_in_zones_and_masks() -> None:
    still = [-1] * 10
    cfg = CameraConfig.model_validate({
        "id": "c", "source": "x", "detect": {"enabled": False}, "tamper": {"enabled": False},
        "zones": [{"name": "left", "polygon": [[0, 0], [0.5, 0], [0.5, 1], [0, 1]]},
                  {"name": "right", "polygon": [[0.5, 0], [1, 0], [1, 1], [0.5, 1]]}],
        "masks": [{"polygon": [[400, 0], [640, 0], [640, 480], [400, 480]], "coords": "pixel"}]})
    # A block moving on the left half: motion in "left" only.
    left = _motion_run(cfg, [*still, 40, 80, 120, 160, 200])
    assert not any(m for m, _ in left[:10]) and all(m and z == ("left",) for m, z in left[10:])
    # Moving inside the masked area (x >= 400): no motion at all.
    masked = _motion_run(cfg, [*still, 420, 460, 500, 540, 560])
    assert not any(m for m, _ in masked)
    # Without the mask the same movement is motion in "right".
    unmasked = _motion_run(cfg.model_copy(update={"masks": ()}), [*still, 420, 460, 500, 540, 560])
    assert all(m and z == ("right",) for m, z in unmasked[10:])


def test_motion_events_start_grow_and_end_after_hold() -> None:
    cfg = CameraConfig.model_validate({
        "id": "c", "source": "x", "detect": {"enabled": False}, "tamper": {"enabled": False},
        "motion": {"hold_s": 1.0},
        "zones": [{"name": "left", "polygon": [[0, 0], [0.5, 0], [0.5, 1], [0, 1]]},
                  {"name": "right", "polygon": [[0.5, 0], [1, 0], [1, 1], [0.5, 1]]}]})
    pipe = CameraPipeline(cfg)
    xs = [-1] * 5 + [100, 160, 220, 280, 340, 400, 460] + [460] * 2 + [-1] * 10
    events = []
    for i, f in enumerate(_frames_with_block(xs)):
        events += [(round(0.2 * i, 1), o.body) for o in pipe.process(f, 0.2 * i).outputs
                   if isinstance(o.body, CameraMotion)]
    summary = [(ts, m.active, m.zones) for ts, m in events]
    assert summary[0] == (1.0, True, ("left",))
    assert summary[1][1:] == (True, ("left", "right"))  # the motion spread to another zone
    assert summary[-1][1:] == (False, ("left", "right"))
    assert len(summary) == 3


def test_pixel_zones_follow_the_camera_resolution_and_a_size_change_restarts_analysis() -> None:
    cfg = CameraConfig.model_validate({
        "id": "c", "source": "x", "detect": {"enabled": False}, "tamper": {"enabled": False},
        # The right half of a 1280x720 camera picture, in the camera's pixels.
        "zones": [{"name": "right", "polygon": [[640, 0], [1280, 0], [1280, 720], [640, 720]], "coords": "pixel"}]})
    pipe = CameraPipeline(cfg)
    big = [np.kron(f, np.ones((2, 2, 1), np.uint8))[:720] for f in _frames_with_block([-1] * 8 + [400, 440, 480])]
    results = [pipe.process(f, 0.2 * i) for i, f in enumerate(big)]
    assert all(r.motion and r.motion_zones == ("right",) for r in results[8:])  # block at x=800..1080 of 1280
    # The stream comes back at another resolution: everything is set up again for it, nothing crashes.
    small = _frames_with_block([-1] * 8 + [40, 80, 120])
    results = [pipe.process(f, 10 + 0.2 * i) for i, f in enumerate(small)]
    assert not any(r.motion for r in results[:8]) and not any(r.motion_zones for r in results[8:])


def test_tiny_and_grey_frames_are_handled() -> None:
    pipe = CameraPipeline(CameraConfig(id="c", source="x"))
    rng = np.random.default_rng(2)
    for i in range(40):
        grey = rng.integers(0, 255, (48, 64), dtype=np.uint8)  # an odd tiny grey stream
        r = pipe.process(grey, 0.2 * i)
        assert r.persons == 0
    with pytest.raises(ValueError, match="too small"):
        CameraPipeline(CameraConfig(id="c", source="x")).process(np.zeros((10, 12, 3), np.uint8), 0.0)
