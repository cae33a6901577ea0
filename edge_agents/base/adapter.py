"""What a device adapter looks like to an agent: it is started with an emit function and stopped."""

from __future__ import annotations

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
