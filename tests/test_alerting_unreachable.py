"""The alerting sink holds a batch (raises to the worker) when the database cannot be reached, also half-way
through its one-event-at-a-time fallback; only an event's own fault costs that event alone."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from alerts_helpers import FakeClock, SinkDriver, accepted, env, make_config
from sqlalchemy.exc import InterfaceError


def _driver(tmp_path: Path) -> SinkDriver:
    return SinkDriver(make_config(tmp_path), FakeClock(time.time())).start()


def _batch(d: SinkDriver) -> list[Any]:
    now = d.clock()
    return [accepted(d.cfg, env("panic-b1", "panic_press", now + i, seq=i + 1)) for i in range(3)]


def _failing(errors: list[BaseException]) -> Any:
    def process(_events: Any, _careful: bool = False) -> None:
        raise errors.pop(0) if errors else ValueError("an event the rules cannot take")
    return process


def test_a_lost_connection_in_the_fallback_holds_the_batch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    d = _driver(tmp_path)
    try:
        # The batch fails for a reason of its own, then the database link breaks during the one-by-one replay.
        lost = InterfaceError("SELECT 1", {}, Exception("connection closed"))
        monkeypatch.setattr(d.sink, "_process", _failing([ValueError("bad event"), lost]))
        with pytest.raises(InterfaceError):
            d.sink.handle(_batch(d))
    finally:
        monkeypatch.undo()
        d.stop()


def test_an_unreachable_database_holds_the_batch_and_a_bad_event_costs_only_itself(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    d = _driver(tmp_path)
    try:
        lost = InterfaceError("SELECT 1", {}, Exception("connection closed"))
        monkeypatch.setattr(d.sink, "_process", _failing([lost]))
        with pytest.raises(InterfaceError):
            d.sink.handle(_batch(d))
        monkeypatch.setattr(d.sink, "_process", _failing([]))  # every event is bad on its own
        d.sink.handle(_batch(d))  # skipped one by one, logged, not raised: nothing to hold the batch for
    finally:
        monkeypatch.undo()
        d.stop()
    assert d.sink.store.alerts() == []
