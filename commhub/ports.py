"""Loopback ports for the services we start, kept apart from the kernel's ephemeral ports and from each other.

A port from `bind(0)` lies in the kernel's ephemeral range, so while a test has stopped a broker to restart it on
the same port, any outgoing connection on the machine may be given that port as its source, and so may another
process's `bind(0)`: the restart then fails with "address in use". Ports from here lie below that range, where
the kernel never hands out a source port, and each is reserved for this process's life by an exclusive lock on a
file, so no other process using this module takes it either. Locks go when the process ends, however it ends.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import random
import socket
import tempfile
from pathlib import Path

log = logging.getLogger(__name__)

LOW = 10_000  # below this, ports are more likely to belong to well-known services
_LOCK_DIR = Path(tempfile.gettempdir()) / "commhub-ports"
_RANGE_FILE = Path("/proc/sys/net/ipv4/ip_local_port_range")
_held: dict[int, int] = {}  # port -> descriptor of its lock file, open for this process's life


def ephemeral_low() -> int:
    """The first port of the kernel's ephemeral range (32768 if it cannot be read)."""
    try:
        return int(_RANGE_FILE.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32_768


def bindable(host: str, port: int) -> bool:
    """Whether a TCP socket can bind this port now (nothing listens there, no connection holds it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def _lock(port: int) -> bool:
    """Reserve a port for this process; False when another process holds it (OSError: no lock file at all)."""
    fd = os.open(_LOCK_DIR / str(port), os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return False
    _held[port] = fd
    return True


def _unlock(port: int) -> None:
    fd = _held.pop(port)
    with contextlib.suppress(OSError):
        fcntl.flock(fd, fcntl.LOCK_UN)
    os.close(fd)


def _kernel_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def free_port(host: str = "127.0.0.1", start: int | None = None) -> int:
    """A TCP port nobody listens on, outside the ephemeral range, reserved for this process.

    `start` is where the search begins (a random port of the range if None). If the ephemeral range leaves fewer
    than 1,000 ports above LOW, or the lock directory cannot be written, the kernel picks one as `bind(0)` does,
    without the guarantees above.
    """
    high = ephemeral_low()
    if high - LOW < 1_000:
        return _kernel_port(host)
    span = high - LOW
    first = random.randrange(LOW, high) if start is None else start
    try:
        _LOCK_DIR.mkdir(mode=0o777, parents=True, exist_ok=True)
        for i in range(span):
            port = LOW + (first - LOW + i) % span
            if port in _held or not _lock(port):
                continue
            if bindable(host, port):
                return port
            _unlock(port)
    except OSError as e:
        log.warning("no port reservations (%s: %s); the kernel picks the port", _LOCK_DIR, e)
        return _kernel_port(host)
    raise OSError(f"no free port in {LOW}..{high - 1}")
