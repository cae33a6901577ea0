"""Frames from cv2.VideoCapture (RTSP/HTTP URL, file or device) at the analysis rate, reopened when lost."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from edge_agents.base.backoff import Backoff
from edge_agents.camera.config import source_kind

log = logging.getLogger(__name__)

_POLL_S = 0.5  # read() returns None at least this often while a source is down, so signal loss is noticed


@dataclass(frozen=True, slots=True)
class Frame:
    """One frame to analyse: the image, its wall-clock time, its frame number and its monotonic time.

    `ts` stamps the events (it follows the wall clock, steps included); `mono` never steps back and is what
    pacing, dwell times and holds are measured on. For an unpaced file both are the position in the file.
    """

    image: np.ndarray
    ts: float
    index: int
    mono: float = 0.0


class VideoSource:
    """Sample a capture at `fps`; on a lost signal release it and reopen with bounded exponential backoff.

    Timestamps are wall-clock seconds (time.time()) for streams, devices and paced files, and the position
    in the file for an unpaced file (offline analysis), so time-based rules behave the same in both. Sampling
    and pacing run on the monotonic clock: a wall clock stepped back (NTP) must not make frames "early".
    """

    def __init__(self, source: str, fps: float, *, realtime: bool = True, loop: bool = False,
                 reconnect_initial_s: float = 1.0, reconnect_max_s: float = 30.0,
                 open_timeout_s: float = 10.0, read_timeout_s: float = 5.0,
                 clock: Callable[[], float] = time.time, sleep: Callable[[float], None] = time.sleep,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.source = source
        self.fps = fps
        self.kind = source_kind(source)
        self.realtime = realtime or self.kind != "file"
        self.loop = loop
        self.open_timeout_s = open_timeout_s
        self.read_timeout_s = read_timeout_s
        self._clock = clock
        self._mono = monotonic
        self._sleep = sleep
        self._backoff = Backoff(reconnect_initial_s, reconnect_max_s, jitter=0.2)
        self._cap: cv2.VideoCapture | None = None
        self._retry_at = 0.0
        self._ended = False
        self._index = -1
        self._file_fps = 0.0
        self._pos_offset = 0.0  # file position added per loop, so unpaced timestamps keep increasing
        self._pace_base: tuple[float, float] | None = None  # (monotonic clock, file position) of the first frame
        self._next_due = float("-inf")
        self._frames_since_open = 0
        self.attempts = 0  # open attempts
        self.opens = 0  # successful opens
        self.losses = 0  # times an open source stopped giving frames

    @property
    def ended(self) -> bool:
        """A file without loop has been read to its end."""
        return self._ended

    @property
    def connected(self) -> bool:
        """Whether the capture is open now."""
        return self._cap is not None

    def read(self) -> Frame | None:
        """The next frame due for analysis, or None while the source is down (or ended)."""
        if self._ended:
            return None
        if self._cap is None and not self._try_open():
            return None
        cap = self._cap
        assert cap is not None
        while True:
            if not cap.grab():
                self._lost("no frame")
                return None
            self._index += 1
            self._frames_since_open += 1
            ts = self._timestamp()
            if not self._due(ts):
                continue
            ok, image = cap.retrieve()
            if not ok or image is None or image.size == 0:
                self._lost("frame could not be decoded")
                return None
            self._backoff.reset()
            if self.kind == "file" and not self.realtime:
                return Frame(image, ts, self._index, ts)
            mono = self._pace() if self.kind == "file" else ts
            return Frame(image, self._clock(), self._index, mono)

    def close(self) -> None:
        """Release the capture."""
        if self._cap is not None:
            self._cap.release()
            self._cap = None

    # ---- internals --------------------------------------------------------------------------------

    def _try_open(self) -> bool:
        now = self._mono()
        if now < self._retry_at:
            self._sleep(min(self._retry_at - now, _POLL_S))
            if self._mono() < self._retry_at:
                return False
        self.attempts += 1
        cap = self._open()
        if cap is None:
            delay = self._backoff.next()
            self._retry_at = self._mono() + delay
            log.warning("camera source %s cannot be opened; retrying in %.1f s", self._redacted(), delay)
            return False
        self._cap = cap
        self.opens += 1
        self._frames_since_open = 0
        if self.kind == "file":
            fps = cap.get(cv2.CAP_PROP_FPS)
            self._file_fps = fps if 1.0 <= fps <= 240.0 else 25.0
            self._index = -1
            self._pace_base = None
        log.info("camera source %s opened", self._redacted())
        return True

    def _open(self) -> cv2.VideoCapture | None:
        if self.kind == "device":
            cap = cv2.VideoCapture(int(self.source))
        elif self.kind == "stream":
            params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, int(self.open_timeout_s * 1000),
                      cv2.CAP_PROP_READ_TIMEOUT_MSEC, int(self.read_timeout_s * 1000)]
            cap = cv2.VideoCapture(self.source, cv2.CAP_FFMPEG, params)
        else:
            if not Path(self.source).is_file():
                return None
            cap = cv2.VideoCapture(self.source)
        if not cap.isOpened():
            cap.release()
            return None
        return cap

    def _lost(self, why: str) -> None:
        self.close()
        if self.kind == "file":
            empty = self._frames_since_open == 0
            if self.loop and not empty:
                self._pos_offset += (self._index + 1) / self._file_fps
                self._retry_at = 0.0  # reopen at once: the end of a looped file is not a fault
                return
            if not self.loop:
                self._ended = True
                return
        self.losses += 1
        delay = self._backoff.next()
        self._retry_at = self._mono() + delay
        log.warning("camera source %s lost (%s); reopening in %.1f s", self._redacted(), why, delay)

    def _timestamp(self) -> float:
        if self.kind == "file":
            return self._pos_offset + self._index / self._file_fps
        return self._mono()

    def _due(self, ts: float) -> bool:
        period = 1.0 / self.fps
        # Half a source frame of tolerance, so 25 fps sampled at 5 fps takes exactly every 5th frame.
        slack = 0.5 / self._file_fps if self.kind == "file" else 1e-3
        if ts + slack < self._next_due:
            return False
        nxt = self._next_due + period
        self._next_due = nxt if nxt > ts else ts + period
        return True

    def _pace(self) -> float:
        """Sleep so a file plays at its own speed; returns the monotonic time of the frame."""
        pos = self._index / self._file_fps
        now = self._mono()
        if self._pace_base is None:
            self._pace_base = (now, pos)
            return now
        target = self._pace_base[0] + (pos - self._pace_base[1])
        if target > now:
            self._sleep(target - now)
            return target
        return now

    def _redacted(self) -> str:
        # RTSP URLs often carry user:password@; keep credentials out of the logs.
        if self.kind == "stream" and "@" in self.source:
            scheme, rest = self.source.split("://", 1)
            return f"{scheme}://***@{rest.split('@', 1)[1]}"
        return self.source
