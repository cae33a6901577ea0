"""A hub worker run in-process on a scenario's simulated clock, isolated from any hub already running."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from commhub.config import Config

log = logging.getLogger(__name__)


def isolated(cfg: Config, workdir: Path, rules_file: Path | None = None) -> Config:
    """A copy of cfg with its own topic root, InfluxDB database, spool, alert database and worker id.

    Its own root keeps a running hub (which keeps wall-clock time) from seeing the scenario's traffic.
    """
    tag = uuid.uuid4().hex[:8]
    mqtt = cfg.mqtt.model_copy(update={"root": f"{cfg.mqtt.root}-scn{tag}"})
    influx = cfg.influx.model_copy(update={"database": f"{cfg.influx.database}_scenarios"})
    spool = cfg.hub.spool.model_copy(update={"dir": workdir / "spool"})
    metrics = cfg.hub.metrics.model_copy(update={"port": 0})
    hub = cfg.hub.model_copy(update={"worker_id": f"scenario-{tag}", "share_group": f"scn{tag}", "spool": spool,
                                     "metrics": metrics, "snapshots_dir": workdir / "snapshots"})
    # Fine-grained timers: at 60x a 0.25 s tick would be 15 simulated seconds of slack on every hold time.
    update: dict[str, Any] = {"enabled": True, "db_url": "", "db_path": workdir / "alerts.db", "tick_s": 0.05}
    if rules_file is not None:
        update["rules_file"] = rules_file
    alerts = cfg.alerts.model_copy(update=update)
    return cfg.model_copy(update={"mqtt": mqtt, "influx": influx, "hub": hub, "alerts": alerts})


class ScenarioHub:
    """The real hub worker and alerting sink, with the sink's clock on simulated time."""

    def __init__(self, cfg: Config, clock: Callable[[], float]) -> None:
        self.cfg = cfg
        self.clock = clock
        self.worker: Any = None

    def start(self, timeout: float = 20.0) -> None:
        """Start the worker and wait until it is subscribed."""
        from hub.alerting import AlertingSink
        from hub.worker import Worker

        self.cfg.hub.spool.dir.mkdir(parents=True, exist_ok=True)
        self.cfg.alerts.db_path.parent.mkdir(parents=True, exist_ok=True)
        self.worker = Worker(self.cfg, sinks=[AlertingSink(self.cfg, clock=self.clock)])
        self.worker.start()
        if not self.worker.wait_connected(timeout):
            self.stop()
            raise TimeoutError(f"the scenario hub did not subscribe within {timeout}s")
        log.info("scenario hub %s running on simulated time", self.cfg.hub.worker_id)

    def stop(self) -> None:
        """Stop the worker (it flushes to InfluxDB)."""
        if self.worker is not None:
            self.worker.stop()
            self.worker = None
