"""The live camera agent when its world misbehaves: the wall clock steps back, the analysis keeps failing.

Real parts: an MJPEG camera stream on loopback, the CameraAgent and its BaseAgent, a real mosquitto. The
wall clock the agent stamps events with is injected so that it can step back 300 s, as an NTP correction does.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from agent_helpers import Collector, Received, fast_settings
from camera_helpers import MjpegServer, read_frames

from commhub.community import Community, Device, Grid, Site
from commhub.config import Config, MqttConfig
from commhub.services import Mosquitto
from commhub.topics import parse
from commhub.wire import CameraMotion, DeviceKind, Envelope
from edge_agents.camera.agent import CameraAgent
from edge_agents.camera.config import CameraConfig, CamerasConfig
from edge_agents.camera.pipeline import CameraPipeline

pytestmark = [pytest.mark.broker, pytest.mark.video]

WAIT_S = 60.0  # generous: the machine is shared and loaded; the verdicts do not depend on its speed
STEP_S = 300.0


class SteppingClock:
    """The wall clock, until step() moves it back."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() - self.offset

    def step_back(self, seconds: float) -> None:
        self.offset += seconds


def _envs(msgs: list[Received], channel: str = "evt") -> list[Envelope]:
    return [m.envelope for m in msgs if m.channel == channel and parse(m.topic).device_id == "cam1"]


def _wait(cond: Any, what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while not cond():
        assert time.monotonic() < deadline, what
        time.sleep(0.1)


def test_clock_step_back_and_a_failing_analysis_loop(mosquitto: Mosquitto, unique_site: str, shared_data: Path,
                                                     tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    street = read_frames(shared_data / "video" / "TUD-Stadtmitte.mp4", limit=50)
    # 2 s of a busy street, then 1.6 s of a still picture, looped: motion starts and stops every 3.6 s.
    server = MjpegServer(street + [street[-1]] * 40)
    server.start()
    cam = CameraConfig.model_validate({
        "id": "cam1", "source": server.url, "fps": 5.0, "reconnect_initial_s": 0.1, "reconnect_max_s": 0.5,
        "open_timeout_s": 5.0, "read_timeout_s": 2.0, "tamper": {"signal_lost_s": 1.0},
        "motion": {"hold_s": 0.5},
        # Motion and tamper only: person detection costs most of a frame's time on a loaded machine, and the
        # faults under test are in the loop around the analysis, not in it.
        "detect": {"enabled": False},
        "zones": [{"name": "street", "polygon": [[0, 0.3], [1, 0.3], [1, 1], [0, 1]], "intrusion_s": 1.0}]})
    # Heartbeats due after 1 s without a message, so a camera whose analysis fails would still look alive.
    community = Community(site=Site(id=unique_site), grids=(Grid(id="g1"),),
                          devices=(Device(id="cam1", kind=DeviceKind.CAMERA, grid="g1", interval_s=1),))
    config = Config(mqtt=MqttConfig(port=mosquitto.port), community=community,
                    agent=fast_settings(state_dir=tmp_path / "state", heartbeats=True),
                    cameras=CamerasConfig(devices=(cam,)))
    broken = threading.Event()
    process = CameraPipeline.process

    def failing(self: CameraPipeline, image: np.ndarray, ts: float, index: int | None = None) -> Any:
        if broken.is_set():
            raise ZeroDivisionError("injected: an analysis fault nobody planned for")
        return process(self, image, ts, index)

    monkeypatch.setattr(CameraPipeline, "process", failing)
    clock = SteppingClock()
    collector = Collector(mosquitto.port, f"commhub/v1/{unique_site}/#").start()
    agent = CameraAgent(config, clock=clock)
    agent.start()
    try:
        _wait(lambda: any(isinstance(e.body, CameraMotion) for e in _envs(collector.snapshot())), "no motion")
        # 1. The wall clock steps back 300 s: frames keep coming (pacing is monotonic; the old wall-clock
        # pacing discarded every frame for 300 s), and events carry the stepped wall-clock time.
        frames = agent.stats()["cam1"]["frames"]
        clock.step_back(STEP_S)
        stepped_at = time.time()
        _wait(lambda: agent.stats()["cam1"]["frames"] >= frames + 15, "the camera went blind after the clock step")
        _wait(lambda: any(e.ts.timestamp() < stepped_at - STEP_S + WAIT_S for e in _envs(collector.snapshot())),
              "no event stamped with the stepped clock")
        # 2. The analysis fails on every frame: the worker restarts (counted) and heartbeats stop.
        broken.set()
        _wait(lambda: agent.stats()["cam1"].get("restarts", 0) >= 1, "the failing loop was not restarted")
        time.sleep(1.0)  # a heartbeat already on its way may still arrive
        beats = len(_envs(collector.snapshot(), "tele"))
        time.sleep(3.0)  # three heartbeat intervals
        assert len(_envs(collector.snapshot(), "tele")) == beats, "heartbeats went on for a camera that is down"
        worker_thread = agent._workers[0].thread
        assert worker_thread is not None and worker_thread.is_alive()
        # 3. The fault goes away: the camera recovers by itself and is vouched for again.
        broken.clear()
        done = agent.stats()["cam1"]["frames"]
        _wait(lambda: agent.stats()["cam1"]["frames"] >= done + 3 and agent._workers[0].live,
              "the camera did not recover")
    finally:
        agent.stop()
        server.stop()
        collector.stop()
    assert agent.stats()["cam1"]["errors"] >= 5
