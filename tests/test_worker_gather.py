"""When the network loop ends a batch: at once after a quiet spell, after batch_gather_ms in a steady stream."""

from __future__ import annotations

from pathlib import Path

import pytest
from alerts_helpers import make_config

from hub.worker import Worker

MS = 1e-3


@pytest.fixture
def worker(tmp_path: Path) -> Worker:
    cfg = make_config(tmp_path)
    hub = cfg.hub.model_copy(update={"batch_wait_ms": 20.0, "batch_gather_ms": 10.0, "batch_max": 5})
    return Worker(cfg.model_copy(update={"hub": hub}))  # not started: the decision is pure logic


def _arrive(w: Worker, n: int = 1) -> None:
    for i in range(n):
        w._on_publish("t", b"{}", i + 1, 1)


def test_a_message_after_a_quiet_spell_ends_its_batch_as_soon_as_the_socket_is_drained(worker: Worker) -> None:
    w = worker
    assert not w._ready(True, 0.0)  # nothing pending
    _arrive(w)  # the first message ever, or the first after a quiet spell: a lone alarm
    assert not w._streaming
    assert w._ready(True, w._pending_since)
    assert not w._ready(False, w._pending_since + 19 * MS)  # more is arriving: it may wait for company
    assert w._ready(False, w._pending_since + 20 * MS + 1e-6)  # but not past batch_wait_ms


def test_in_a_steady_stream_a_batch_gathers_for_batch_gather_ms(worker: Worker) -> None:
    w = worker
    _arrive(w)
    w._pending.clear()
    w._flushed_at = w._pending_since  # the previous batch was just done
    _arrive(w)  # the stream goes on
    assert w._streaming
    t = w._pending_since
    assert not w._ready(True, t) and not w._ready(True, t + 9 * MS)
    assert w._ready(True, t + 10 * MS + 1e-6)
    assert w._limit() == pytest.approx(10 * MS)
    _arrive(w, 4)
    assert w._ready(False, t)  # batch_max reached: no gathering past a full batch


def test_a_message_after_a_gap_longer_than_the_gather_is_not_a_stream(worker: Worker) -> None:
    w = worker
    w._flushed_at = -1.0  # the last batch was done long before (monotonic seconds)
    _arrive(w)
    assert not w._streaming and w._ready(True, w._pending_since)
    off = worker.cfg.hub.model_copy(update={"batch_gather_ms": 0.0})
    w2 = Worker(worker.cfg.model_copy(update={"hub": off}))
    _arrive(w2)
    w2._pending.clear()
    w2._flushed_at = w2._pending_since
    _arrive(w2)  # batch_gather_ms 0: every drained socket ends a batch, as before
    assert w2._ready(True, w2._pending_since)
