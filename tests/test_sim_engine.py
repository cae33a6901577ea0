"""The simulation loop: ordering, determinism, injections, overrides, pacing, stop, and fleet selection."""

from __future__ import annotations

import threading
import time
from collections import Counter
from datetime import UTC, datetime

import pytest
from sim_helpers import MIDNIGHT, ListPublisher, community, context

from commhub.wire import DeviceKind, Duress, Heartbeat, HydrantPressure, _Body
from simulators.clock import SimClock
from simulators.engine import Injection, Override, Simulation
from simulators.fleet import FleetError, select


def _run(seconds: float, seed: int = 3, **kw: object) -> tuple[ListPublisher, Simulation]:
    pub = ListPublisher()
    sim = Simulation(community().devices, pub, SimClock(MIDNIGHT, 0), context(), seed,
                     end=MIDNIGHT + seconds, **kw)  # type: ignore[arg-type]
    sim.run()
    return pub, sim


def test_publishes_every_device_in_time_order_deterministically() -> None:
    pub, sim = _run(2 * 3600)
    times = [ts for _, _, ts in pub.sent]
    assert times == sorted(times)
    assert times[-1] < datetime.fromtimestamp(MIDNIGHT + 7200, UTC)
    assert sim.stats.published == len(pub.sent)
    assert {d for d, _, _ in pub.sent} == {d.id for d in sim.devices}
    assert sim.stats.devices == len(DeviceKind) - 1
    again, _ = _run(2 * 3600)
    assert again.sent == pub.sent
    other, _ = _run(2 * 3600, seed=4)
    assert other.sent != pub.sent


def test_injections_are_merged_at_their_time() -> None:
    at = MIDNIGHT + 1800.5
    pub, sim = _run(3600, injections=[Injection(at, "door-controller-1", Duress(door="main"))])
    hits = [(d, ts) for d, b, ts in pub.sent if b.type == "duress"]  # type: ignore[attr-defined]
    assert hits == [("door-controller-1", datetime.fromtimestamp(at, UTC))]
    assert sim.stats.injected == 1
    times = [ts for _, _, ts in pub.sent]
    assert times == sorted(times)


def test_overrides_drop_and_rewrite_within_their_window_only() -> None:
    def drop(_t: float, _b: _Body) -> _Body | None:
        return None

    def low(_t: float, b: _Body) -> _Body | None:
        return HydrantPressure(pressure_mpa=0.05) if isinstance(b, HydrantPressure) else b
    w0, w1 = MIDNIGHT + 600, MIDNIGHT + 1800
    pub, sim = _run(3600, overrides=[Override("camera-1", w0, w1, drop), Override("hydrant-1", w0, w1, low)])
    cam = [ts.timestamp() for d, _, ts in pub.sent if d == "camera-1"]
    assert cam and not any(w0 <= t < w1 for t in cam)
    assert any(t >= w1 for t in cam) and any(t < w0 for t in cam)
    hyd = [(ts.timestamp(), b.pressure_mpa) for d, b, ts in pub.sent if d == "hydrant-1"]  # type: ignore[attr-defined]
    assert all((p == 0.05) == (w0 <= t < w1) for t, p in hyd)
    # Exactly what camera-1 would have said in the window is gone; the rest of its life is unchanged.
    base, _ = _run(3600)
    base_cam = [ts.timestamp() for d, _, ts in base.sent if d == "camera-1"]
    assert sim.stats.dropped == sum(1 for t in base_cam if w0 <= t < w1) > 120
    assert cam == [t for t in base_cam if not w0 <= t < w1]


def test_paced_clock_never_publishes_ahead_of_simulated_time() -> None:
    speed = 3000.0
    clock = SimClock(MIDNIGHT, speed)
    seen: list[tuple[float, float]] = []

    class Probe(ListPublisher):
        def publish(self, device_id: str, body: _Body, *, ts: datetime | None = None) -> int:
            assert ts is not None
            seen.append((ts.timestamp(), clock.now()))
            return super().publish(device_id, body, ts=ts)
    t0 = time.monotonic()
    Simulation(community().devices, Probe(), clock, context(), 1, end=MIDNIGHT + 600).run()
    wall = time.monotonic() - t0
    assert 600 / speed * 0.9 <= wall < 5.0
    assert seen and all(sim_now >= ts for ts, sim_now in seen)


def test_stop_ends_an_endless_run_and_reports_progress() -> None:
    reports: list[int] = []
    sim = Simulation(community().devices, ListPublisher(), SimClock(MIDNIGHT, 1000.0), context(), 1,
                     progress=lambda s: reports.append(s.published), progress_every_s=0.05)
    th = threading.Thread(target=sim.run)
    th.start()
    time.sleep(0.4)
    sim.stop()
    th.join(5)
    assert not th.is_alive()
    assert len(reports) >= 3 and reports == sorted(reports) and reports[-1] > 0


def test_fleet_subset_keeps_every_kind_and_clones_are_unique() -> None:
    devices = community(extra=10).devices
    kinds = {d.kind for d in devices if d.kind is not DeviceKind.AGENT}
    few = select(devices, len(kinds))
    assert {d.kind for d in few} == kinds
    many = select(devices, 1000)
    assert len(many) == 1000 and len({d.id for d in many}) == 1000
    assert Counter(d.kind for d in many)[DeviceKind.DOOR_CONTROLLER] > 300
    with pytest.raises(FleetError):
        select(devices, 0)


def test_heartbeat_only_devices_still_publish_during_activity_windows() -> None:
    def activity_only(_t: float, b: _Body) -> _Body | None:
        return b if isinstance(b, Heartbeat) else None
    pub, _ = _run(3600, overrides=[Override("door-contact-1", MIDNIGHT, MIDNIGHT + 3600, activity_only)])
    types = {b.type for d, b, _ in pub.sent if d == "door-contact-1"}  # type: ignore[attr-defined]
    assert types == {"heartbeat"}
