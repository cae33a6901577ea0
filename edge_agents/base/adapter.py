"""What a device adapter looks like to an agent: it is started with an emit function and stopped."""

from __future__ import annotations

import threading
from datetime import datetime
from typing import Any, Protocol


class Emit(Protocol):
    """Hand one wire body for a device to the agent; returns its seq (BaseAgent.publish)."""

    def __call__(self, device_id: str, body: Any, *, ts: datetime | None = None) -> int: ...


class Adapter(Protocol):
    """A source of device events: a simulator, an HTTP endpoint, a Modbus poller."""

    def start(self, emit: Emit) -> None:
        """Begin producing; emit() may be called from any thread."""

    def stop(self) -> None:
        """Stop producing; after return emit() is no longer called."""


class ThreadedAdapter:
    """An adapter whose events come from one background thread running `_run(emit)` until `_stop` is set."""

    thread_name = "adapter"

    def __init__(self) -> None:
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.emitted = 0

    def start(self, emit: Emit) -> None:
        """Start the event thread."""
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, args=(emit,), name=self.thread_name, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the event thread."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None

    def _run(self, emit: Emit) -> None:
        raise NotImplementedError
