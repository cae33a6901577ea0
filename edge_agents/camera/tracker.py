"""A small IoU/centroid tracker that gives detected people stable ids."""

from __future__ import annotations

from dataclasses import dataclass, field

from edge_agents.camera.config import TrackSettings
from edge_agents.camera.detect import Detection
from edge_agents.camera.geometry import BoxT, iou


@dataclass(slots=True)
class Track:
    """One tracked person."""

    id: int
    box: BoxT
    score: float
    first_ts: float
    last_ts: float
    hits: int = 1
    confirmed: bool = False
    last_run: int = 0  # the detector run that last saw it
    prev_box: BoxT | None = None  # the box before the last detection (which way the person moves)
    born_box: BoxT | None = None  # the first detection's box (where the person was before being confirmed)
    seen_box: BoxT | None = None  # the box of the last detection (box moves on from it while occluded)
    vel: tuple[float, float] | None = None  # the box's speed in px/s, from its detections
    apart: bool = False  # seen at least once as a whole person, not inside a much taller person tracked then
    occluder: int | None = None  # the id of the person track hiding it now: the occluded state
    extra: dict[str, object] = field(default_factory=dict)  # per-track state owned by the zone logic


@dataclass(frozen=True, slots=True)
class TrackUpdate:
    """What one tracker step changed."""

    confirmed: list[Track]  # became confirmed now (report `new`)
    ended: list[Track]  # confirmed tracks that ended now (report `end`)


class Tracker:
    """Greedy matching by IoU, then by centre distance; confirm after `min_hits`, end after `max_gap_s`."""

    def __init__(self, settings: TrackSettings, frame: tuple[int, int] | None = None) -> None:
        self.settings = settings
        self.frame = frame  # (w, h) of the frames the boxes are in; None: no frame-edge rule
        self.tracks: list[Track] = []
        self._next_id = 1
        self.runs = 0  # detector runs so far (update() calls)
        self.now = 0.0  # the latest frame's time

    @property
    def live(self) -> list[Track]:
        """Confirmed tracks that have not ended."""
        return [t for t in self.tracks if t.confirmed]

    @property
    def counted(self) -> list[Track]:
        """The people to count now: tracks with `count_hits` detections, seen within the last `count_hold_s`.

        A person the detector misses now and then is still counted; a track kept alive only for its events
        (up to max_gap_s, which must bridge long gaps for dwell times) may stop counting sooner. The hold is in
        seconds, not detector runs: in runs, the same setting held a person 3.2 s in the evaluation (6.25
        runs/s) and 8 s on a shipped camera (2.5 runs/s), so stale tracks of people who had left piled up in
        the field's counts. It must exceed refresh_s, so a person standing still is not dropped between runs.
        A track mostly inside a much taller one is a part of that person found as a small person (searching
        people down to a quarter of the frame height finds an arm, or head and shoulders): not counted, unless
        it was seen more recently than the taller track, which is then a stale box (its person may have walked
        on) over someone smaller (on TUD-Campus, a person 70 px tall where one of 150 px had left), or it was
        once seen as a whole person (`apart`): a far person walking behind a near one is smaller, and their box
        lies inside the near one's (on TUD-Campus the near person is twice as tall; the rule took the far one for
        an arm and stopped counting them within their hold). Nor is a track of a person who walked out of view.
        An occluded track (see _occlusions) is held occlusion_hold_s instead of count_hold_s.
        """
        out = [t for t in self.tracks
               if t.hits >= self.settings.count_hits and self._held(t) and not self._left_view(t)]
        return [t for t in out if t.apart or not any(_part_of(t.box, o.box) and o.last_ts >= t.last_ts
                                                     for o in out if o is not t)]

    def _held(self, t: Track) -> bool:
        """Within the hold since its last detection: count_hold_s, or occlusion_hold_s while occluded."""
        s = self.settings
        return self.now - t.last_ts <= (s.occlusion_hold_s if _occluded(t) else s.count_hold_s)

    def _left_view(self, t: Track) -> bool:
        """The last two detector runs missed a track last seen cut by the left or right edge, walking out.

        Held for count_hold_s, people who walked out of view were counted for seconds (0.3 per frame on
        TUD-Stadtmitte once the learned detector found people cut by the frame edge, which HOG does not). Cut
        means narrower than a quarter of its height (a person in full view is about 0.4 as wide as tall), so
        most of them is out already; walking out means the box's inner side moved towards the edge between its
        last two detections. A person at the edge who stands or comes in is held as anyone else.
        """
        if self.frame is None or t.prev_box is None or self.runs - t.last_run < 2:
            return False
        w = self.frame[0]
        (x, _, bw, bh), (px, _, pw, _) = t.box, t.prev_box
        if bw >= 0.25 * bh:
            return False
        margin = 0.01 * w
        return (x <= margin and x + bw < px + pw) or (x + bw >= w - margin and x > px)

    def update(self, detections: list[Detection], ts: float, births: bool = True) -> TrackUpdate:
        """Match one frame's detections to tracks; `births`: unmatched ones start tracks."""
        s = self.settings
        self.runs += 1
        self.now = ts
        pairs = []
        for ti, t in enumerate(self.tracks):
            # A track seen in one of the last two runs picks first: a stale box left where its person was can
            # overlap a neighbour's detection better than the neighbour's own track does (in a group walking
            # together), take it, and push the neighbour's track onto someone else.
            fresh = self.runs - t.last_run <= 2
            for di, d in enumerate(detections):
                overlap = iou(t.box, d.box)
                if overlap >= s.iou_min:
                    pairs.append((True, fresh, overlap, ti, di))  # any overlap beats any distance match
                    continue
                dist = _centre_distance(t.box, d.box) / max(t.box[3], d.box[3], 1)
                if dist <= s.max_jump and _similar_size(t.box, d.box):
                    pairs.append((False, fresh, 1.0 - dist / (s.max_jump + 1e-9), ti, di))
        pairs.sort(reverse=True)
        used_t: set[int] = set()
        used_d: set[int] = set()
        confirmed: list[Track] = []
        for _, _, _, ti, di in pairs:
            if ti in used_t or di in used_d:
                continue
            used_t.add(ti)
            used_d.add(di)
            t, d = self.tracks[ti], detections[di]
            t.vel = _velocity(t, d.box, ts, s.max_speed)
            t.prev_box = t.box if t.seen_box is None else t.seen_box
            t.box, t.seen_box, t.score, t.last_ts, t.last_run = d.box, d.box, d.score, ts, self.runs
            t.hits += 1
            t.occluder = None
            if not t.confirmed and t.hits >= s.min_hits:
                t.confirmed = True
                confirmed.append(t)
        for di, d in enumerate(detections):
            if births and di not in used_d:
                t = Track(self._next_id, d.box, d.score, ts, ts, last_run=self.runs, born_box=d.box, seen_box=d.box)
                self._next_id += 1
                if s.min_hits <= 1:
                    t.confirmed = True
                    confirmed.append(t)
                self.tracks.append(t)
        self._occlusions(ts)
        return TrackUpdate(confirmed, self.expire(ts))

    def _occlusions(self, ts: float) -> None:
        """Put tracks this run missed behind a person tracked now into the occluded state; the others leave it."""
        # A real tracker (SORT, ByteTrack) keeps a lost track for a while and predicts where it goes. An occluded
        # track moves on at its own speed, which keeps it where its person is (the refresh runs search around
        # track boxes, and the same track takes the person when they reappear: no new track, no double count),
        # and is counted for occlusion_hold_s after its last detection instead of count_hold_s. The occluder must
        # be a person track (confirmed, a whole person, seen in one of the last two runs) in front (feet no
        # higher), covering at least occlusion_cover of the predicted box: a region that is no person track (a
        # doorway, a pillar, a one-off false box) hides nobody here, and a person gone behind it keeps the
        # ordinary hold. A box at the left or right frame edge is not held: its person may have walked out.
        s = self.settings
        # Seen in one of the last two runs, as in matching: a run that misses the person in front does not make
        # everyone behind them lost in the open, nor an arm found while its body was missed a whole person.
        fresh = [o for o in self.tracks if self.runs - o.last_run <= 2]
        for t in fresh:
            if t.last_run == self.runs and not t.apart:
                # An arm or head and shoulders inside a body tracked now is never apart; a person seen alone is.
                t.apart = not any(_part_of(t.box, o.box) for o in fresh if o is not t)
        seen = [o for o in fresh if o.confirmed and o.apart]
        for t in self.tracks:
            if t.last_run == self.runs:
                continue
            # Coming out from behind, a person is found again only once most of them is in view: until then
            # (less than half of occlusion_cover covered) they stay occluded.
            need = s.occlusion_cover / 2 if t.occluder is not None else s.occlusion_cover
            t.occluder = None
            if not t.apart or t.hits < s.count_hits or ts - t.last_ts > s.occlusion_hold_s or not seen:
                continue
            box = _predict(t, ts, self.frame)
            if self._at_edge(box):
                continue
            best = max((o for o in seen if o is not t), key=lambda o: _covered(box, o.box), default=None)
            if best is None:
                continue
            if _covered(box, best.box) >= need and _bottom(best.box) >= _bottom(box) - 0.1 * box[3]:
                t.box, t.occluder = box, best.id

    def _at_edge(self, box: BoxT) -> bool:
        if self.frame is None:
            return False
        margin = 0.01 * self.frame[0]
        return box[0] <= margin or box[0] + box[2] >= self.frame[0] - margin

    def expire(self, ts: float) -> list[Track]:
        """End tracks unseen for max_gap_s; returns the confirmed ones that ended."""
        self.now = ts
        s = self.settings
        gone = [t for t in self.tracks if ts - t.last_ts > (max(s.max_gap_s, s.occlusion_hold_s) if _occluded(t)
                                                             else s.max_gap_s)]
        if gone:
            self.tracks = [t for t in self.tracks if not any(t is g for g in gone)]
        return [t for t in gone if t.confirmed]

    def end_all(self) -> list[Track]:
        """End every track (the source stopped); returns the confirmed ones."""
        gone, self.tracks = self.tracks, []
        return [t for t in gone if t.confirmed]


def _occluded(t: Track) -> bool:
    return t.occluder is not None


def _velocity(t: Track, box: BoxT, ts: float, max_speed: float) -> tuple[float, float] | None:
    """The box centre's speed after a detection at `ts` (smoothed over detections), capped at max_speed heights/s."""
    if t.seen_box is None or ts <= t.last_ts:
        return t.vel
    dt = ts - t.last_ts
    (ax, ay), (bx, by) = _centre(t.seen_box), _centre(box)
    vx, vy = (bx - ax) / dt, (by - ay) / dt
    if t.vel is not None:  # detections jitter by a few pixels: average with the earlier estimate
        vx, vy = (vx + t.vel[0]) / 2, (vy + t.vel[1]) / 2
    cap = max_speed * box[3]
    norm = (vx * vx + vy * vy) ** 0.5
    if norm > cap:
        vx, vy = vx * cap / norm, vy * cap / norm
    return vx, vy


def _predict(t: Track, ts: float, frame: tuple[int, int] | None) -> BoxT:
    """Where a track's box is at `ts`, moving on from its last detection at its own speed, kept in the frame."""
    base = t.seen_box if t.seen_box is not None else t.box
    if t.vel is None:
        return base
    dt = max(0.0, ts - t.last_ts)  # a clock stepped back does not move anyone backwards
    x, y, w, h = round(base[0] + t.vel[0] * dt), round(base[1] + t.vel[1] * dt), base[2], base[3]
    # Boxes go out on the wire (camera_object's box is in the frame); one at the frame edge is not held anyway.
    if frame is not None:
        x, y = min(x, frame[0] - w), min(y, frame[1] - h)
    return (max(0, x), max(0, y), w, h)


def _covered(a: BoxT, b: BoxT) -> float:
    """The part of box a that box b covers."""
    ix = max(0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    return ix * iy / max(1, a[2] * a[3])


def _bottom(b: BoxT) -> int:
    return b[1] + b[3]


def _centre(b: BoxT) -> tuple[float, float]:
    return b[0] + b[2] / 2, b[1] + b[3] / 2


def _part_of(a: BoxT, b: BoxT) -> bool:
    """Box a lies mostly inside a much taller box b: a part of that person (an arm, head and shoulders)."""
    ix = max(0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    return b[3] >= 1.5 * a[3] and ix * iy >= 0.6 * a[2] * a[3]


def _centre_distance(a: BoxT, b: BoxT) -> float:
    ax, ay = a[0] + a[2] / 2, a[1] + a[3] / 2
    bx, by = b[0] + b[2] / 2, b[1] + b[3] / 2
    return float(((ax - bx) ** 2 + (ay - by) ** 2) ** 0.5)


def _similar_size(a: BoxT, b: BoxT) -> bool:
    ratio = a[3] / b[3] if b[3] else 0.0
    return 0.5 <= ratio <= 2.0
