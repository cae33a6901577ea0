"""A `commhub hub` child process for benchmarks and tests: start, wait for /metrics, read CPU and RSS, stop."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import yaml

from commhub.ports import free_port

log = logging.getLogger(__name__)

CHECKOUT = Path(__file__).resolve().parents[1]
# A hub start on a loaded machine (imports, migrations, absence seeds) can take a minute; only a failing start
# waits this long.
START_TIMEOUT_S = 180.0
_TICK = os.sysconf("SC_CLK_TCK")


def _cpu(stat: str) -> float:
    """User + system CPU seconds from a /proc stat file (a process's or one thread's)."""
    with open(stat) as f:
        # The command name may hold spaces and parentheses: count fields after its closing parenthesis.
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICK


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (from /proc/<pid>/stat)."""
    return _cpu(f"/proc/{pid}/stat")


def thread_cpu_seconds(pid: int) -> dict[str, float]:
    """User + system CPU time so far of each live thread of a process, by thread id (/proc/<pid>/task)."""
    out = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            out[tid] = _cpu(f"/proc/{pid}/task/{tid}/stat")
        except OSError:
            continue  # the thread ended
    return out


def peak_rss_mb(pid: int) -> float:
    """Peak resident set size of a process (VmHWM), in MB."""
    return _status_mb(pid, "VmHWM:")


def rss_mb(pid: int) -> float:
    """Current resident set size of a process (VmRSS), in MB."""
    return _status_mb(pid, "VmRSS:")


def _status_mb(pid: int, field: str) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field):
                return int(line.split()[1]) / 1024
    return 0.0


def metrics_text(port: int, timeout: float = 10.0) -> str | None:
    """The Prometheus page a hub serves on this loopback port, or None while it is not up."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=timeout) as r:
            return str(r.read().decode())
    except OSError:
        return None


def sample_sum(text: str, name: str, **labels: str) -> float | None:
    """The sum of one metric's samples whose labels include these, or None when it has none."""
    total, found = 0.0, False
    for line in text.splitlines():
        if line.startswith("#") or not line.startswith(name):
            continue
        head, _, value = line.rpartition(" ")
        metric, _, rest = head.partition("{")
        if metric != name or any(f'{k}="{v}"' not in rest for k, v in labels.items()):
            continue
        total += float(value)
        found = True
    return total if found else None


class HubProcess:
    """`commhub hub --config FILE` as a child process, with its metrics port and log file."""

    def __init__(self, config: Path, log: Path, worker_id: str | None = None, metrics_port: int | None = None,
                 log_level: str | None = None, cwd: Path = CHECKOUT) -> None:
        self.config = config
        self.log = log
        self.worker_id = worker_id
        self.metrics_port = metrics_port or _configured_port(config) or free_port()
        self.log_level = log_level
        self.cwd = cwd
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        """The process id (once started)."""
        if self.proc is None:
            raise RuntimeError("the hub has not been started")
        return self.proc.pid

    @property
    def alive(self) -> bool:
        """Whether the process runs."""
        return self.proc is not None and self.proc.poll() is None

    def start(self, wait: bool = True, timeout: float = START_TIMEOUT_S) -> None:
        """Start the process and, with wait, return once /metrics reports the MQTT connection up."""
        cmd = [sys.executable, "-m", "commhub.cli"]
        if self.log_level:
            cmd += ["--log-level", self.log_level]
        cmd += ["hub", "--config", str(self.config), "--metrics-port", str(self.metrics_port)]
        if self.worker_id:
            cmd += ["--worker-id", self.worker_id]
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=self.cwd)
        if wait:
            self.wait_connected(timeout)

    def wait_connected(self, timeout: float = START_TIMEOUT_S) -> None:
        """Wait until /metrics says the MQTT connection is up; RuntimeError with the log's tail if it exits or not."""
        deadline = time.monotonic() + timeout
        while True:
            if self.proc is None or self.proc.poll() is not None:
                code = None if self.proc is None else self.proc.returncode
                raise RuntimeError(f"hub {self.worker_id or ''} exited with {code}: {self._tail()}")
            if self.metric("commhub_mqtt_connected") == 1.0:
                return
            if time.monotonic() > deadline:
                # Not left running: a caller that gives up on a start has no handle to stop it by.
                self.proc.kill()
                self.proc.wait(60)
                raise RuntimeError(f"hub {self.worker_id or ''} did not connect in {timeout:.0f} s: {self._tail()}")
            time.sleep(0.05)

    def metrics_text(self) -> str:
        """The /metrics page, or '' while it is not up."""
        return metrics_text(self.metrics_port) or ""

    def metric(self, name: str, **labels: str) -> float | None:
        """The value of one metric (summed over the label sets that include the given labels), None if absent."""
        return sample_sum(self.metrics_text(), name, **labels)

    def cpu_seconds(self) -> float:
        """CPU time the process has used so far."""
        return cpu_seconds(self.pid)

    def peak_rss_mb(self) -> float:
        """The process's peak resident set size, in MB."""
        return peak_rss_mb(self.pid)

    def kill(self) -> None:
        """SIGKILL, as a power cut or OOM kill would."""
        if self.proc is None:
            raise RuntimeError("the hub has not been started")
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(60)

    def stop(self, timeout: float = 120.0) -> int:
        """SIGTERM and wait (SIGKILL after timeout seconds); returns the exit code."""
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                log.warning("hub %s ignored SIGTERM for %.0f s: killing it", self.worker_id or self.pid, timeout)
                self.proc.kill()
                self.proc.wait()
        return int(self.proc.returncode)

    def _tail(self) -> str:
        try:
            return self.log.read_text(errors="replace")[-2000:]
        except OSError:
            return f"(no log at {self.log})"


def _configured_port(config: Path) -> int | None:
    """hub.metrics.port of a config file, if it names one."""
    try:
        data = yaml.safe_load(config.read_text())
        return int(data["hub"]["metrics"]["port"])
    except (OSError, yaml.YAMLError, KeyError, TypeError, ValueError):
        return None
