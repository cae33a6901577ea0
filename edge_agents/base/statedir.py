"""An agent's state directory: an exclusive lock and the persisted session counter."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from typing import IO


class StateDirError(RuntimeError):
    """The state directory is unusable, e.g. another agent process holds it."""


class StateDir:
    """Owns `state_dir` for one agent process; two processes sharing it would reuse seqs."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._lock: IO[bytes] | None = None

    def acquire(self) -> None:
        """Create the directory and take its lock, or raise StateDirError."""
        self.path.mkdir(parents=True, exist_ok=True)
        f = open(self.path / "agent.lock", "ab")  # noqa: SIM115 - held open for the process lifetime
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            f.close()
            raise StateDirError(f"{self.path} is in use by another agent process (agent.lock is held)") from None
        self._lock = f

    def release(self) -> None:
        """Drop the lock."""
        if self._lock is not None:
            fcntl.flock(self._lock.fileno(), fcntl.LOCK_UN)
            self._lock.close()
            self._lock = None

    @property
    def spool_path(self) -> Path:
        """The SQLite spool file."""
        return self.path / "spool.sqlite3"

    def next_session(self) -> int:
        """Increment and durably store the session counter (Sparkplug's bdSeq); returns the new value."""
        file = self.path / "session"
        try:
            current = int(file.read_text().strip() or "0")
        except FileNotFoundError:
            current = 0
        except ValueError:
            raise StateDirError(f"{file} does not hold an integer") from None
        value = current + 1
        tmp = file.with_suffix(".tmp")
        with open(tmp, "w") as f:
            f.write(f"{value}\n")
            f.flush()
            os.fsync(f.fileno())
        # rename is atomic: a crash leaves the old or the new counter, never a torn file.
        os.replace(tmp, file)
        return value
