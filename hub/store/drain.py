"""Drain the spool into InfluxDB with retry and backoff; the only thread that talks to InfluxDB."""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Callable

import httpx

from commhub.config import SpoolConfig
from hub.metrics import HubMetrics
from hub.store.influx import Transport, WriteError
from hub.store.spool import Segment, Spool

log = logging.getLogger(__name__)


class Drainer:
    """Moves spooled batches into InfluxDB; connects lazily so the hub starts while InfluxDB is down."""

    def __init__(self, spool: Spool, connect: Callable[[], Transport], cfg: SpoolConfig,
                 metrics: HubMetrics) -> None:
        self.spool = spool
        self.connect = connect
        self.cfg = cfg
        self.metrics = metrics
        self._transport: Transport | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._delay = cfg.retry_initial_s

    def start(self) -> None:
        """Start the drain thread."""
        self._thread = threading.Thread(target=self._run, name="spool-drainer", daemon=True)
        self._thread.start()

    def stop(self, flush_timeout: float = 10.0) -> None:
        """Try to write what is spooled for up to flush_timeout, then stop; the rest stays on disk."""
        self.spool.wait_empty(flush_timeout)
        self._stop.set()
        self.spool.wake()
        if self._thread is not None:
            self._thread.join(timeout=30)
        if self._transport is not None:
            self._transport.close()

    def _run(self) -> None:
        while not self._stop.is_set():
            segments = self.spool.take(self.cfg.max_points_per_write, timeout=0.5,
                                       linger=self.cfg.write_linger_ms / 1000)
            if not segments:
                continue
            try:
                self._write(segments)
            except WriteError as e:
                self._write_failed(segments, e)
            except Exception as e:  # never let the drain thread die
                self._failed(f"unexpected {type(e).__name__}: {e}")

    def _write_failed(self, segments: list[Segment], e: WriteError) -> None:
        if e.auth:
            self.metrics.write_auth_errors.inc()
        if e.retryable:
            self._failed(f"write failed, will retry: {e}")
            return
        if len(segments) > 1:
            # One bad file must not send the good files merged with it to rejected/: try them one by one
            # (InfluxDB 1.x stores the good points of a partial write, so writing them again is harmless).
            for seg in segments:
                try:
                    self._write([seg])
                except WriteError as one:
                    self._write_failed([seg], one)
                    if one.retryable:
                        return
            return
        # InfluxDB refused the data itself; retrying cannot help. Keep it on disk for an operator.
        log.error("InfluxDB refused %d points, set aside in %s/rejected: %s",
                  sum(s.points for s in segments), self.spool.directory, e)
        self.metrics.points_rejected.inc(sum(s.points for s in segments))
        self.spool.reject(segments)

    def _write(self, segments: list[Segment]) -> None:
        if self._transport is None:
            try:
                self._transport = self.connect()
            except (httpx.HTTPError, OSError) as e:
                raise WriteError(f"cannot reach InfluxDB: {e}", retryable=True) from None
        body = b"".join(seg.path.read_bytes() for seg in segments)
        self._transport.write(body)
        self.spool.done(segments)
        self.metrics.points_written.inc(sum(s.points for s in segments))
        self._delay = self.cfg.retry_initial_s

    def _failed(self, why: str) -> None:
        self.metrics.write_errors.inc()
        log.warning("%s (next try in %.1fs)", why, self._delay)
        # Full jitter keeps several workers from hammering a recovering InfluxDB in step.
        self._stop.wait(self._delay * (0.5 + random.random() / 2))
        self._delay = min(self._delay * 2, self.cfg.retry_max_s)
