"""The hub's processing path in-process: validation, de-duplication, line protocol, spool and the rules.

`commhub bench ingest --in-process` feeds the realistic feed to Worker.process_batch in batches of 1,000, as the
network loop hands them over, without MQTT or InfluxDB (the spool is written and fsynced; nothing drains
it). CPU time is this process's, so a loaded machine changes it far less than the end-to-end rates; with
--profile it prints cProfile's top entries, which is how docs/performance.md was made. The garbage collector
is set up as `commhub hub` sets it up once started (hub.runtime.tune_gc), unless gc_tuned is False.
"""

from __future__ import annotations

import cProfile
import gc
import io
import pstats
import shutil
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from commhub.config import Config
from hub.runtime import tune_gc
from hub.worker import Worker


def measure(cfg: Config, messages: Sequence[tuple[str, bytes]], rules: bool, profile: bool = False,
            batch: int = 1000, gc_tuned: bool = True) -> tuple[float, str]:
    """(CPU µs per message, profile text or '') for one pass over the messages."""
    tmp = Path(tempfile.mkdtemp(prefix="bench-hotpath-"))
    thresholds = gc.get_threshold()
    try:
        hub = cfg.hub.model_copy(update={"spool": cfg.hub.spool.model_copy(update={"dir": tmp / "spool"}),
                                         "metrics": cfg.hub.metrics.model_copy(update={"port": 0})})
        alerts = cfg.alerts.model_copy(update={"enabled": rules, "db_url": f"sqlite:///{tmp}/alerts.db"})
        cfg = cfg.model_copy(update={"hub": hub, "alerts": alerts})
        sinks = []
        if rules:
            from hub.alerting import AlertingSink
            sink = AlertingSink(cfg, mqtt=False)
            # Migrate and seed now (open()), without start()'s timer thread (the bench ticks itself);
            # handle() would otherwise do it inside the first measured batch.
            sink.open()
            sinks.append(sink)
        worker = Worker(cfg, sinks)
        worker.spool.open()
        now = time.time()
        items = list(messages)
        if gc_tuned:
            tune_gc()
        prof = cProfile.Profile() if profile else None
        c0 = time.process_time()
        if prof is not None:
            prof.enable()
        for i in range(0, len(items), batch):
            if not worker.process_batch(items[i:i + batch], now):
                raise RuntimeError("a batch was held (spool or sink failing)")
            if rules:
                sinks[0].tick()  # the timer thread's work, once a batch (absence write-back, escalation)
        if prof is not None:
            prof.disable()
        cpu = time.process_time() - c0
        text = ""
        if prof is not None:
            out = io.StringIO()
            pstats.Stats(prof, stream=out).sort_stats("tottime").print_stats(15)
            text = out.getvalue()
        for s in sinks:
            s.db.dispose()
        return cpu / len(items) * 1e6, text
    finally:
        gc.unfreeze()  # each measurement starts from the interpreter's defaults
        gc.set_threshold(*thresholds)
        shutil.rmtree(tmp, ignore_errors=True)
