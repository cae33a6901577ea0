"""`commhub hub --config FILE`: run one hub worker until SIGTERM or Ctrl-C."""

from __future__ import annotations

import argparse
import importlib
import logging
import signal
import threading
from types import FrameType

from commhub.config import Config, load
from hub.ingest.message import Sink
from hub.runtime import tune_gc
from hub.store.retention import RetentionKeeper
from hub.worker import Worker

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `commhub hub`."""
    parser.add_argument("--config", default="configs/commhub.yaml", help="configuration file")
    parser.add_argument("--worker-id", help="override hub.worker_id (each worker needs its own)")
    parser.add_argument("--metrics-port", type=int, help="override hub.metrics.port (0 = off)")
    parser.add_argument("--retire", action="store_true",
                        help="leave the worker group for good: drain this worker's queued share, end its session")


def build_sinks(cfg: Config) -> list[Sink]:
    """The downstream sinks the configuration asks for (the alerting chain, when enabled)."""
    if not cfg.alerts.enabled:
        return []
    alerting = importlib.import_module("hub.alerting")
    return [alerting.build_sink(cfg)]


def run(args: argparse.Namespace) -> int:
    """Run until signalled."""
    cfg = load(args.config)
    hub = cfg.hub
    if args.worker_id:
        hub = hub.model_copy(update={"worker_id": args.worker_id})
    if args.metrics_port is not None:
        hub = hub.model_copy(update={"metrics": hub.metrics.model_copy(update={"port": args.metrics_port})})
    cfg = cfg.model_copy(update={"hub": hub})
    worker = Worker(cfg, build_sinks(cfg))
    done = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        log.info("signal %d: stopping", signum)
        done.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    keeper = None
    if hub.retention.enabled and not args.retire:
        alerts_db = importlib.import_module("hub.alerting").db_url(cfg) if cfg.alerts.enabled else None
        keeper = RetentionKeeper(cfg.influx, hub.retention, hub.snapshots_dir, alerts_db)
        keeper.start()
    worker.start()
    tune_gc()  # after start-up built everything it keeps (hub.runtime says why)
    if args.retire:
        if not worker.wait_connected(30):
            log.error("cannot reach the broker: %s is not retired", hub.worker_id)
            worker.stop()
            return 1
        retired = worker.retire()
        worker.stop()
        log.info("%s %s", hub.worker_id, "retired: session ended" if retired else "still receiving: NOT retired")
        return 0 if retired else 1
    log.info("hub worker %s running; metrics on %s:%d", hub.worker_id, hub.metrics.host, hub.metrics.port)
    done.wait()
    worker.stop()
    if keeper is not None:
        keeper.stop()
    return 0
