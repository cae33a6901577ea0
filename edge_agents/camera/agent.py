"""The live camera agent: one thread per camera (source -> pipeline), publishing through one BaseAgent."""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path

import cv2

from commhub.config import Config, ConfigError
from commhub.wire import DeviceKind, Tamper
from edge_agents.base import BaseAgent
from edge_agents.base.backoff import Backoff
from edge_agents.base.devices import agent_state_dir, select_devices
from edge_agents.camera.config import CameraConfig, source_kind
from edge_agents.camera.pipeline import CameraPipeline, Output
from edge_agents.camera.source import VideoSource

log = logging.getLogger(__name__)

_RESTART_INITIAL_S = 1.0  # first pause before a failed camera loop is restarted
_RESTART_MAX_S = 60.0


def resolve_source(cam: CameraConfig, base_dir: Path) -> CameraConfig:
    """A relative file source is relative to the config file."""
    if source_kind(cam.source) != "file" or Path(cam.source).is_absolute():
        return cam
    return cam.model_copy(update={"source": str(base_dir / cam.source)})


class _Worker:
    """Reads one camera, analyses each frame and publishes what the pipeline raises."""

    def __init__(self, cam: CameraConfig, base: BaseAgent, stopping: threading.Event, *,
                 clock: Callable[[], float] = time.time, monotonic: Callable[[], float] = time.monotonic) -> None:
        self.cam = cam
        self.base = base
        self.stopping = stopping
        self.clock = clock  # wall clock: event times
        self.monotonic = monotonic  # pacing, dwell, holds: never steps back
        self.live = True  # whether heartbeats vouch for this camera
        self.counts: Counter[str] = Counter()
        self.thread: threading.Thread | None = None

    def start(self) -> None:
        self.thread = threading.Thread(target=self._main, name=f"camera-{self.cam.id}", daemon=True)
        self.thread.start()

    def join(self, timeout: float) -> None:
        if self.thread is not None:
            self.thread.join(timeout)
            if self.thread.is_alive():
                log.warning("camera %s did not stop within %.1f s", self.cam.id, timeout)

    def _main(self) -> None:
        # Supervisor: whatever stops the camera loop other than stop() or the end of a file takes the camera's
        # liveness (no heartbeats vouch for a camera nobody watches) and restarts it with backoff.
        backoff = Backoff(_RESTART_INITIAL_S, _RESTART_MAX_S, jitter=0.2)
        finished = False
        try:
            while not self.stopping.is_set():
                try:
                    self._run(backoff)
                    finished = True
                    return
                except Exception as e:
                    self._set_live(False)
                    self.counts["restarts"] += 1
                    delay = backoff.next()
                    # The first failure with its traceback, then one line each: a persistent fault must not
                    # flood the log.
                    log.error("camera %s: analysis loop failed (%s; %d so far); restarting in %.1f s", self.cam.id,
                              e.__class__.__name__, self.counts["restarts"], delay,
                              exc_info=self.counts["restarts"] == 1)
                    self.stopping.wait(delay)
        finally:
            if not finished and not self.stopping.is_set():
                log.error("camera %s: worker thread ended unexpectedly; the camera is marked unreachable",
                          self.cam.id)
                self._set_live(False)

    def _set_live(self, live: bool) -> None:
        if live != self.live:
            self.live = live
            self.base.set_reachable(self.cam.id, live)

    def _run(self, backoff: Backoff) -> None:
        """Read, analyse and publish until stop() or the end of a file; raises when the camera is broken."""
        cam = self.cam
        src = VideoSource(cam.source, cam.fps, realtime=cam.realtime, loop=cam.loop,
                          reconnect_initial_s=cam.reconnect_initial_s, reconnect_max_s=cam.reconnect_max_s,
                          open_timeout_s=cam.open_timeout_s, read_timeout_s=cam.read_timeout_s,
                          clock=self.clock, monotonic=self.monotonic)
        # A run id from the start time keeps event and snapshot ids unique across agent restarts.
        pipe = CameraPipeline(cam, run_id=format(time.time_ns() // 1_000_000, "x"))
        # Frames in a row that fail analysis before the camera counts as broken: signal_lost_s worth of them.
        max_errors = max(3, round(cam.fps * cam.tamper.signal_lost_s))
        errors = 0
        try:
            while not self.stopping.is_set():
                frame = src.read()
                if frame is None:
                    if src.ended:
                        log.info("camera %s: file source ended", cam.id)
                        self._set_live(False)
                        return
                    self.counts["missing"] += 1
                    self._emit(pipe.missing(self.monotonic()), None)
                    continue
                self.counts["frames"] += 1
                try:
                    result = pipe.process(frame.image, frame.mono, frame.index)
                except Exception:
                    # One bad frame (a decoder glitch, an odd size) must not stop the camera; many in a row do.
                    self.counts["errors"] += 1
                    errors += 1
                    if errors >= max_errors:
                        raise
                    log.exception("camera %s: frame %d could not be analysed", cam.id, frame.index)
                    continue
                errors = 0
                backoff.reset()
                if not self.live and "signal_lost" not in pipe.tamper.active():
                    self._set_live(True)
                self.counts["motion"] += result.motion
                self.counts["detections"] += result.detected
                self._emit(result.outputs, frame.ts if src.realtime else None)
        finally:
            try:
                self._emit(pipe.finish(self.monotonic()), None)
            finally:
                src.close()

    def _emit(self, outputs: list[Output], ts: float | None) -> None:
        when = datetime.fromtimestamp(ts, UTC) if ts is not None else None
        for out in outputs:
            body = out.body
            try:
                snapshot = getattr(body, "snapshot", None)
                if out.jpeg is not None and snapshot:
                    self.base.publish_snapshot(self.cam.id, snapshot, out.jpeg)
                    self.counts["snapshots"] += 1
                self.base.publish(self.cam.id, body, ts=when)
            except RuntimeError:
                log.warning("camera %s: agent stopped, %s not published", self.cam.id, body.type)
                return
            self.counts[body.type] += 1
            if isinstance(body, Tamper) and body.kind == "signal_lost":
                # No heartbeats while the picture is gone, so the hub's liveness timer fires as well.
                self._set_live(not body.active)


class CameraAgent:
    """Watch the cameras of the `cameras:` section; events go out through one BaseAgent."""

    def __init__(self, config: Config, name: str | None = None, *, cameras: Sequence[str] = (),
                 state_dir: Path | None = None, clock: Callable[[], float] = time.time) -> None:
        self.config = config
        self.clock = clock  # the wall clock that stamps events (tests inject one that steps)
        self.name = name or config.cameras.agent_name
        self.cameras = tuple(cameras)
        self.state_dir = state_dir
        self.base: BaseAgent | None = None
        self._workers: list[_Worker] = []
        self._stopping = threading.Event()

    def selected(self) -> list[CameraConfig]:
        """The cameras this agent watches, with file sources resolved; ConfigError if one is unknown."""
        section = self.config.cameras
        known = {c.id: c for c in section.devices}
        for cid in self.cameras:
            if cid not in known:
                raise ConfigError(f"cameras.devices: no camera {cid!r} (known: {sorted(known)})")
        chosen = [known[c] for c in self.cameras] if self.cameras else list(section.devices)
        select_devices(self.config.community, (DeviceKind.CAMERA,), [c.id for c in chosen], "cameras")
        return [resolve_source(c, self.config.base_dir) for c in chosen]

    def start(self) -> None:
        """Check the cameras against the community, start the base agent, then one thread per camera."""
        cams = self.selected()
        if not cams:
            raise ValueError("no cameras configured: add them under cameras.devices")
        cv2.setNumThreads(self.config.cameras.opencv_threads)
        devices = self.config.community.device_index()
        base = BaseAgent(self.config.mqtt, self.config.community.site.id, self.name,
                         agent_state_dir(self.config, self.name, self.state_dir), self.config.agent)
        for cam in cams:
            base.add_device(cam.id, DeviceKind.CAMERA, devices[cam.id].interval_s)
        base.start()
        self.base = base
        self._stopping.clear()
        self._workers = [_Worker(cam, base, self._stopping, clock=self.clock) for cam in cams]
        for w in self._workers:
            w.start()
        log.info("camera agent %r watches %d cameras", self.name, len(cams))

    def stats(self) -> dict[str, dict[str, int]]:
        """Counters per camera: frames, motion frames, detector runs, events by type."""
        return {w.cam.id: dict(w.counts) for w in self._workers}

    def stop(self) -> None:
        """Stop the cameras (their open objects end), then flush and stop the base agent."""
        self._stopping.set()
        for w in self._workers:
            w.join(w.cam.read_timeout_s + 5.0)
        if self.base is not None:
            self.base.stop()
