"""The clients one API process (or one CLI run) holds: alert store, accounts, audit log, live feed, metrics."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from typing import Any

from sqlalchemy import Engine, create_engine, event

from api.data.state import DataServices
from api.live import LiveHub
from api.metrics import ApiMetrics
from api.services.accounts import Accounts
from api.services.alerts import AlertService
from api.services.audit import AuditLog
from commhub.config import Config
from hub.alerting import open_store

log = logging.getLogger(__name__)


class Services:
    """Constructed without I/O; start() migrates the schema and connects; stop() releases everything."""

    def __init__(self, cfg: Config, clock: Callable[[], float] = time.time, live: bool = True) -> None:
        self.cfg = cfg
        self.clock = clock
        self.store = open_store(cfg, clock, actor=f"api-{os.getpid()}")
        self.reader = read_engine(self.store.engine)
        self.accounts = Accounts(self.store.engine, cfg.community, cfg.api, clock, self.reader)
        self.audit = AuditLog(self.store.engine, clock, self.reader)
        self.alerts = AlertService(self.store, self.reader)
        self.data = DataServices(cfg, self.store)
        self.metrics = ApiMetrics()
        self.audit.on_write = self.metrics.audit_rows.inc
        self.live = LiveHub(cfg.mqtt, f"api-{os.getpid()}-{id(self):x}", cfg.api.sse_queue,
                            cfg.community.site.id) if live else None

    def start(self) -> None:
        """Migrate (safe beside running hubs), then connect to the broker in the background."""
        self.store.start()
        self.data.start()
        if self.live is not None:
            # This process's own actions reach its clients at once; the same notices from MQTT are then skipped.
            self.store.on_notices = self.live.publish
            self.live.start()

    def stop(self) -> None:
        """Disconnect and close the pools."""
        if self.live is not None:
            self.live.stop()
        self.data.stop()
        self.store.engine.dispose()
        if self.reader is not self.store.engine:
            self.reader.dispose()


def read_engine(engine: Engine) -> Engine:
    """For SQLite, a second engine for reads without BEGIN IMMEDIATE: under WAL a read then never waits for,
    nor holds up, a hub worker's write. Other databases read through the same engine."""
    if engine.dialect.name != "sqlite" or engine.url.database in (None, "", ":memory:"):
        return engine
    reader = create_engine(engine.url, connect_args={"timeout": 30, "check_same_thread": False})

    @event.listens_for(reader, "connect")
    def _connect(dbapi_conn: Any, _record: Any) -> None:
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA busy_timeout=30000")
        cur.execute("PRAGMA query_only=ON")  # this engine must never write
        cur.close()

    return reader
