"""What ingest hands downstream: one accepted message, and the interface of a downstream consumer."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from commhub.community import Device
from commhub.topics import TopicParts
from commhub.wire import Envelope


# Not frozen: a frozen dataclass takes several times as long to build, and one is built per message; nothing
# changes an Accepted once the validator made it.
@dataclass(slots=True)
class Accepted:
    """A valid, de-duplicated message with its parsed topic and its registry entry (None if unregistered)."""

    topic: TopicParts
    envelope: Envelope
    device: Device | None
    received_at: float  # hub wall clock, seconds since the epoch


class Sink(Protocol):
    """A consumer of accepted messages (the rule engine is one); called after the batch is durably spooled."""

    def start(self) -> None:
        """Open resources and start timers."""

    def handle(self, batch: Sequence[Accepted]) -> None:
        """Process one batch, in arrival order. Must not raise for one bad message."""

    def stop(self) -> None:
        """Flush and release resources."""
