"""Run an agent in the foreground: start it, wait for SIGINT/SIGTERM (or a duration), stop it."""

from __future__ import annotations

import logging
import signal
import sys
import threading
from typing import Any, Protocol

from edge_agents.base.statedir import StateDirError

log = logging.getLogger(__name__)


class Startable(Protocol):
    """Anything with start() and stop()."""

    def start(self) -> None: ...

    def stop(self) -> None: ...


def serve(agent: Startable, what: str, duration: float | None = None) -> int:
    """0 after a clean run; 2 when the agent cannot start (the reason goes to stderr)."""
    done = threading.Event()

    def on_signal(signum: int, _frame: Any) -> None:
        log.info("signal %d: stopping", signum)
        done.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, on_signal)
    try:
        agent.start()
    except (ValueError, OSError, StateDirError) as e:
        print(f"cannot start the {what}: {e}", file=sys.stderr)
        return 2
    try:
        done.wait(duration)
    finally:
        agent.stop()
    return 0
