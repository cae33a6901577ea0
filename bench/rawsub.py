"""The raw paho QoS 1 baseline in its own process, so its CPU per message is read from /proc like the hub's.

`python -m bench.rawsub HOST PORT FILTER COUNT` speaks a line protocol on stdin/stdout with the benchmark:
it creates the persistent session (`ready`), waits for `go` while the benchmark queues the backlog, drains
COUNT messages from the resumed session (`done`), then waits for `exit`, so the benchmark can read the
process's CPU time from /proc before it ends. The paho code is hubrun's raw subscriber, unchanged.
"""

from __future__ import annotations

import queue
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from bench.hubrun import DRAIN_TIMEOUT_S, START_TIMEOUT_S, cpu_seconds, create_session, drain_session, forget_session
from commhub.services import Mosquitto

REPO = Path(__file__).resolve().parents[1]
CLIENT_ID = "raw-sub"


@dataclass(frozen=True)
class RawResult:
    """The raw subscriber's drain: its rate and its own CPU per message."""

    msgs_per_s: float
    cpu_us_per_msg: float


def measure(broker: Mosquitto, topic_filter: str, queue_backlog: Callable[[], int]) -> RawResult:
    """Raw paho QoS 1 drain of the backlog queue_backlog() publishes (it returns the count), in a child process."""
    proc = subprocess.Popen([sys.executable, "-m", "bench.rawsub", broker.host, str(broker.port), topic_filter],
                            cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1)
    lines: queue.Queue[str] = queue.Queue()

    def read() -> None:
        for ln in proc.stdout or ():
            lines.put(ln.strip())
    threading.Thread(target=read, name="rawsub-stdout", daemon=True).start()

    def expect(word: str, timeout: float) -> None:
        try:
            got = lines.get(timeout=timeout)
        except queue.Empty:
            raise RuntimeError(f"raw subscriber: no {word!r} within {timeout:.0f} s") from None
        if got != word:
            raise RuntimeError(f"raw subscriber said {got!r}, expected {word!r}")

    def say(line: str) -> None:
        assert proc.stdin is not None
        proc.stdin.write(line + "\n")
        proc.stdin.flush()

    try:
        expect("ready", START_TIMEOUT_S)
        n = queue_backlog()
        cpu0 = cpu_seconds(proc.pid)
        t0 = time.perf_counter()
        say(f"go {n}")
        expect("done", DRAIN_TIMEOUT_S)
        elapsed = time.perf_counter() - t0
        cpu = cpu_seconds(proc.pid) - cpu0
        say("exit")
        proc.wait(START_TIMEOUT_S)
        if proc.returncode != 0:
            raise RuntimeError(f"raw subscriber exited with {proc.returncode}")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
            forget_session(broker, CLIENT_ID)  # else mosquitto keeps queueing for the session it left behind
    return RawResult(n / elapsed, cpu / n * 1e6)


def _child(host: str, port: int, topic_filter: str) -> int:
    broker = Mosquitto(REPO / ".rawsub-unused", host, port)  # a handle on the running broker: never started
    create_session(broker, CLIENT_ID, topic_filter)
    print("ready", flush=True)
    word, n = sys.stdin.readline().split()
    if word != "go":
        return 2
    drain_session(broker, CLIENT_ID, topic_filter, int(n))
    print("done", flush=True)
    forget_session(broker, CLIENT_ID)
    sys.stdin.readline()  # "exit": the benchmark has read our CPU time
    return 0


if __name__ == "__main__":
    raise SystemExit(_child(sys.argv[1], int(sys.argv[2]), sys.argv[3]))
