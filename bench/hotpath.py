"""The hub's processing path in-process: validation, de-duplication, line protocol, spool and the rules.

`commhub bench ingest --in-process` feeds the realistic feed to Worker.process_batch in batches of 1,000 (`--batch`),
as the network loop hands a backlog over, without MQTT or InfluxDB (the spool is written and fsynced; nothing
drains it). The garbage collector is set up as `commhub hub` sets it up once started (hub.runtime.tune_gc), unless
gc_tuned is False.

One pass over 40,000 messages swung by 20-30 µs a message run to run, on the same code. Measured (round 4 of
docs/performance.md): process_time counted no other thread (the path runs on one), and neither the spool's
fsync (0.7-3 µs a message of system time, the same with fsync off) nor the collector (2.5-5 µs rules on, with
hub.runtime's tuning) moves much between passes. What does: the first pass in a process pays for lazily built
paths (12,000 page faults and 165 collections in the first rules-on pass, 10 and 24 after), and above all the
machine's load, which inflates CPU time itself (shared caches, preemptions) in bursts: the same pass took 62
and then 89 µs a message back to back, and one batch in ten costs 30-50 % more than the median batch. So a
measurement is several rounds over the same feed after a warm-up round, each round on a fresh worker and a
fresh rule-state store (the same work each time), the settings alternating inside each round so a change of
load hits all alike, timed by this thread's CPU clock per batch. The median round is the figure; the min and
the *floor* (for every batch the least CPU it took in any round, summed) show how much load inflated it.
"""

from __future__ import annotations

import cProfile
import gc
import io
import pstats
import shutil
import statistics
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from commhub.config import Config
from hub.runtime import tune_gc
from hub.worker import Worker

if TYPE_CHECKING:
    from hub.alerting import AlertingSink

BATCH = 1000


@dataclass
class Rounds:
    """Measured rounds of one setting: per round the CPU µs per message, and per batch its least CPU."""

    messages: int
    rounds: list[float] = field(default_factory=list)
    batch_min_s: list[float] = field(default_factory=list)
    # Per round, the alerting sink's own CPU µs per message (its batches and timer passes): the part the rules
    # cost, which the ingest path's swings (the spool's file system, mostly) do not blur.
    sink_rounds: list[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        """The median round."""
        return statistics.median(self.rounds)

    @property
    def least(self) -> float:
        """The cheapest round."""
        return min(self.rounds)

    @property
    def floor(self) -> float:
        """Each batch's least CPU over the rounds, summed, per message."""
        return sum(self.batch_min_s) / self.messages * 1e6

    def add(self, batch_s: list[float]) -> None:
        """Record one round's per-batch CPU seconds."""
        self.rounds.append(sum(batch_s) / self.messages * 1e6)
        self.batch_min_s = batch_s if not self.batch_min_s else [
            min(a, b) for a, b in zip(self.batch_min_s, batch_s, strict=True)]


@contextmanager
def _path(cfg: Config, rules: bool) -> Iterator[tuple[Worker, AlertingSink | None]]:
    """A fresh worker (and rule-state store when rules) in a temporary directory."""
    tmp = Path(tempfile.mkdtemp(prefix="bench-hotpath-"))
    sink: AlertingSink | None = None
    try:
        hub = cfg.hub.model_copy(update={"spool": cfg.hub.spool.model_copy(update={"dir": tmp / "spool"}),
                                         "metrics": cfg.hub.metrics.model_copy(update={"port": 0})})
        alerts = cfg.alerts.model_copy(update={"enabled": rules, "db_url": f"sqlite:///{tmp}/alerts.db"})
        cfg = cfg.model_copy(update={"hub": hub, "alerts": alerts})
        if rules:
            from hub.alerting import AlertingSink
            sink = AlertingSink(cfg, mqtt=False)
            # Migrate and seed now (open()), without start()'s timer thread (the bench ticks itself);
            # handle() would otherwise do it inside the first measured batch.
            sink.open()
        worker = Worker(cfg, [sink] if sink is not None else [])
        worker.spool.open()
        yield worker, sink
    finally:
        if sink is not None:
            sink.store.close()
            sink.db.dispose()
        shutil.rmtree(tmp, ignore_errors=True)


def _pass(cfg: Config, items: list[tuple[str, bytes]], rules: bool, gc_tuned: bool,
          prof: cProfile.Profile | None = None, batch: int = BATCH, sink_s: list[float] | None = None) -> list[float]:
    """One pass over the messages on a fresh path: this thread's CPU seconds per batch (and in sink_s, the
    alerting sink's CPU seconds in all)."""
    thresholds = gc.get_threshold()
    with _path(cfg, rules) as (worker, sink):
        now = time.time()
        if gc_tuned:
            tune_gc()
        else:
            gc.collect()  # the previous pass's garbage is not this one's cost
        clock = time.thread_time  # this thread only: the path is single-threaded, nothing else is counted
        out = []
        ticks_s = 0.0
        try:
            if prof is not None:
                prof.enable()
            for i in range(0, len(items), batch):
                c0 = clock()
                if not worker.process_batch(items[i:i + batch], now):
                    raise RuntimeError("a batch was held (spool or sink failing)")
                if sink is not None and sink.timers_due():
                    # The timer thread's work (absence write-back, escalation), when the hub's timer thread would
                    # go to the database: a timer or write-back is due, or RECHECK_S passed. Ticking after every
                    # batch cost 190 µs a message at batches of 40, three-fifths of the path.
                    t0 = clock()
                    sink.tick()
                    ticks_s += clock() - t0
                out.append(clock() - c0)
            if sink is not None and sink_s is not None:
                sink_s.append(sink.handle_cpu_s + ticks_s)
        finally:
            if prof is not None:
                prof.disable()
            gc.unfreeze()  # each pass starts from the interpreter's defaults
            gc.set_threshold(*thresholds)
    return out


def measure_rounds(cfg: Config, settings: Mapping[str, tuple[Sequence[tuple[str, bytes]], bool]], rounds: int = 5,
                   warmup: int = 1, gc_tuned: bool = True, batch: int = BATCH) -> dict[str, Rounds]:
    """Per setting name ((messages, rules)): `rounds` measured passes after `warmup` unmeasured ones."""
    items = {name: list(msgs) for name, (msgs, _) in settings.items()}
    out = {name: Rounds(len(items[name])) for name in settings}
    for r in range(warmup + rounds):
        for name, (_, rules) in settings.items():
            sink_s: list[float] = []
            batches = _pass(cfg, items[name], rules, gc_tuned, batch=batch, sink_s=sink_s)
            if r >= warmup:
                out[name].add(batches)
                out[name].sink_rounds.extend(x / len(items[name]) * 1e6 for x in sink_s)
    return out


def profile(cfg: Config, messages: Sequence[tuple[str, bytes]], rules: bool, top: int = 20,
            sort: str = "tottime", batch: int = BATCH) -> str:
    """cProfile's top entries for one pass after a warm-up pass."""
    items = list(messages)
    _pass(cfg, items, rules, True, batch=batch)
    prof = cProfile.Profile()
    _pass(cfg, items, rules, True, prof, batch=batch)
    text = io.StringIO()
    pstats.Stats(prof, stream=text).sort_stats(sort).print_stats(top)
    return text.getvalue()

