"""bench.machine: a process tree's CPU counts its live children and the ones that exited, once."""

from __future__ import annotations

import os
import subprocess
import sys
import time

from bench import machine

# Burns this much CPU time (not wall time), so the figure does not depend on the machine's speed or load.
_BURN = "import time\nwhile time.process_time() < 0.3:\n    pass\n"
_SEEN = 0.25  # /proc counts in clock ticks: 0.3 s of process_time can read as 0.29


def test_a_tree_counts_a_child_while_it_runs_and_after_it_exited() -> None:
    me = os.getpid()
    before = machine.Snapshot.take({"me": me})
    child = subprocess.Popen([sys.executable, "-c", _BURN + "import sys\nsys.stdin.read()\n"],
                             stdin=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while (machine._stat(child.pid) or (0, 0.0, 0.0))[1] < _SEEN:  # burning, then waiting on stdin
            assert time.monotonic() < deadline, "the child did not burn its CPU"
            time.sleep(0.01)
        running = machine.Snapshot.take({"me": me})
    finally:
        assert child.stdin is not None
        child.stdin.close()
        child.wait(60)
    after = machine.Snapshot.take({"me": me})  # reaped: now in our children's time
    while_running = machine.account(before, running)["cpu_s_me"]
    in_all = machine.account(before, after)["cpu_s_me"]
    assert while_running >= _SEEN
    # Counted once: after the exit the child's time moved into ours (reaped), it did not vanish nor double.
    assert while_running <= in_all < while_running + 0.3


def test_a_tree_that_is_gone_counts_nothing_more_and_the_machine_adds_up() -> None:
    child = subprocess.Popen([sys.executable, "-c", _BURN])
    before = machine.Snapshot.take({"child": child.pid})
    child.wait(60)
    after = machine.Snapshot.take({"child": child.pid})  # no such process any more
    out = machine.account(before, after)
    assert out["cpu_s_child"] == 0.0
    assert out["wall_s"] > 0 and out["busy_cores"] >= 0 and out["idle_cores"] >= 0
    assert out["cpu_s_ours"] == out["cpu_s_child"] + out["cpu_s_bench"]
