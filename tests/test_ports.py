"""Ports for the services we start: outside the kernel's ephemeral range and never handed to two processes.

A broker a test stops and starts again on the same port failed in CI with "exited with 1": while it was down,
the port (from `bind(0)`, so in the ephemeral range) could be taken by any connection's source port or by
another test process's `bind(0)`.
"""

from __future__ import annotations

import random
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from hub_helpers import REPO

from commhub import ports
from commhub.ports import LOW, bindable, ephemeral_low, free_port


def test_ports_lie_below_the_ephemeral_range_and_are_not_given_twice() -> None:
    ports = [free_port() for _ in range(50)]
    assert all(LOW <= p < ephemeral_low() for p in ports)
    assert len(set(ports)) == 50


def test_a_port_reserved_by_another_process_is_not_given_while_it_lives() -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", "import sys; from commhub.ports import free_port\n"
         "print(free_port(), flush=True); sys.stdin.readline()"],
        cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None
        theirs = int(child.stdout.readline())
        # Nothing listens on it (the child only reserved it), yet the search starting there passes it by.
        assert free_port(start=theirs) != theirs
    finally:
        assert child.stdin is not None
        child.stdin.close()
        child.wait(30)
    # Once that process has gone, its reservation goes with it.
    assert free_port(start=theirs) == theirs or not bindable("127.0.0.1", theirs)


def test_a_port_something_listens_on_is_passed_by() -> None:
    with socket.socket() as s:
        for _ in range(1_000):
            port = random.randrange(LOW, ephemeral_low())
            try:
                s.bind(("127.0.0.1", port))
                break
            except OSError:
                continue
        s.listen(1)
        assert free_port(start=port) != port


def test_without_the_kernels_range_or_room_below_it_ports_still_come(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    kernels = ephemeral_low()
    monkeypatch.setattr(ports, "_RANGE_FILE", tmp_path / "missing")
    assert ports.ephemeral_low() == 32_768  # unreadable: Linux's default
    odd = tmp_path / "range"
    odd.write_text("garbage\n")
    monkeypatch.setattr(ports, "_RANGE_FILE", odd)
    assert ports.ephemeral_low() == 32_768
    odd.write_text(f"{ports.LOW + 10}\t60999\n")  # almost no room below the range: the kernel picks, as bind(0)
    port = free_port()
    assert port >= kernels and bindable("127.0.0.1", port)  # from the kernel's own range


def test_a_lock_directory_that_cannot_be_made_leaves_the_choice_to_the_kernel(tmp_path: Path,
                                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setattr(ports, "_LOCK_DIR", blocker / "commhub-ports")  # under a file: mkdir fails, even as root
    port = free_port()
    assert port >= ephemeral_low() and bindable("127.0.0.1", port)
