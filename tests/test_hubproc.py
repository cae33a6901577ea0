"""commhub.hubproc, the hub runner of the tests and benchmarks: metrics parsing, /proc readings, a failed start."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from commhub.hubproc import HubProcess, cpu_seconds, peak_rss_mb, sample_sum

PAGE = """# HELP commhub_messages_in_total Messages received.
# TYPE commhub_messages_in_total counter
commhub_messages_in_total{worker="a"} 3.0
commhub_messages_in_total{worker="b"} 4.0
commhub_messages_in_created{worker="a"} 1.7e9
commhub_messages_invalid_total{reason="site_mismatch",worker="a"} 2.0
commhub_messages_invalid_total{reason="unknown_device",worker="a"} 5.0
commhub_mqtt_connected 1.0
"""


def test_sample_sum_matches_the_exact_name_and_the_given_labels() -> None:
    assert sample_sum(PAGE, "commhub_messages_in_total") == 7.0
    assert sample_sum(PAGE, "commhub_messages_in_total", worker="b") == 4.0
    assert sample_sum(PAGE, "commhub_messages_invalid_total", reason="unknown_device") == 5.0
    assert sample_sum(PAGE, "commhub_mqtt_connected") == 1.0  # a sample without labels
    assert sample_sum(PAGE, "commhub_messages_in") is None  # a prefix of other names is not a metric
    assert sample_sum(PAGE, "commhub_messages_in_total", worker="c") is None


def test_cpu_and_peak_rss_of_a_process_from_proc() -> None:
    before = cpu_seconds(os.getpid())
    start = time.process_time()
    while time.process_time() - start < 0.2:  # burn CPU time, whatever the wall time it takes
        sum(range(1000))
    # /proc counts in clock ticks (10 ms): allow two ticks of rounding on each reading
    assert cpu_seconds(os.getpid()) - before >= 0.2 - 0.02
    assert peak_rss_mb(os.getpid()) > 10  # a Python interpreter with pytest loaded


def test_a_hub_that_exits_at_start_is_reported_with_its_log(tmp_path: Path) -> None:
    cfg = tmp_path / "commhub.yaml"
    cfg.write_text(yaml.safe_dump({"community": "c.yaml", "hub": {"metrics": {"port": 1}}}))
    hub = HubProcess(cfg, tmp_path / "hub.log", worker_id="w-exits")
    assert hub.metrics_port == 1  # the port the config names
    # A process that fails as a hub with a bad config does (a real hub start costs seconds of imports; the
    # tests that run hubs start real ones through this same class).
    with open(hub.log, "ab") as out:
        hub.proc = subprocess.Popen([sys.executable, "-c", "import sys; print('c.yaml: cannot read'); sys.exit(2)"],
                                    stdout=out, stderr=subprocess.STDOUT)
    with pytest.raises(RuntimeError, match=r"hub w-exits exited with 2") as e:
        hub.wait_connected(timeout=120)
    assert "c.yaml: cannot read" in str(e.value)  # the log's tail says why
    assert not hub.alive and hub.stop() == 2


def test_a_hub_that_never_connects_is_not_left_running(tmp_path: Path) -> None:
    cfg = tmp_path / "commhub.yaml"
    cfg.write_text(yaml.safe_dump({"community": "c.yaml", "hub": {"metrics": {"port": 1}}}))
    hub = HubProcess(cfg, tmp_path / "hub.log", worker_id="w-never")
    # A process that stays up and never serves /metrics, as a hub that cannot reach its broker does.
    hub.proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    with pytest.raises(RuntimeError, match=r"hub w-never did not connect"):
        hub.wait_connected(timeout=0.5)
    # The caller that gave up has nothing to stop: the runner killed it (six such hubs once ran for 40 min).
    assert hub.proc.poll() is not None and not hub.alive
