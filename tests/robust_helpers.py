"""Helpers for the issue-13 tests: a cuttable TCP forwarder, an in-process hub worker, metric reads."""

from __future__ import annotations

import contextlib
import socket
import threading
from pathlib import Path
from typing import Any

from hub_helpers import write_config

from commhub.config import Config, load
from commhub.services import Influxd, Mosquitto
from hub.worker import Worker


class TcpProxy:
    """A loopback forwarder to a real server that counts connections and can cut them (a real outage)."""

    def __init__(self, target_port: int, host: str = "127.0.0.1") -> None:
        self.host = host
        self.target_port = target_port
        self.connections = 0
        self._listener: socket.socket | None = None
        self._socks: list[socket.socket] = []
        self._lock = threading.Lock()
        self._up = False
        probe = socket.socket()
        probe.bind((host, 0))
        self.port = probe.getsockname()[1]
        probe.close()

    def up(self) -> TcpProxy:
        """Listen (again) on the same port."""
        ls = socket.socket()
        ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        ls.bind((self.host, self.port))
        ls.listen(64)
        with self._lock:
            self._listener = ls
            self._up = True
        threading.Thread(target=self._accept, args=(ls,), daemon=True).start()
        return self

    def down(self) -> None:
        """Stop listening and cut every open connection."""
        with self._lock:
            self._up = False
            ls, self._listener = self._listener, None
            socks, self._socks = self._socks, []
        if ls is not None:
            with contextlib.suppress(OSError):
                ls.shutdown(socket.SHUT_RDWR)
            ls.close()
        for s in socks:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()

    def _accept(self, ls: socket.socket) -> None:
        while True:
            try:
                client, _ = ls.accept()
            except OSError:
                return
            self.connections += 1
            try:
                server = socket.create_connection((self.host, self.target_port), timeout=5)
            except OSError:
                client.close()
                continue
            server.settimeout(None)
            with self._lock:
                if not self._up or ls is not self._listener:
                    # Accepted while going down: this link must not outlive the outage.
                    client.close()
                    server.close()
                    continue
                self._socks += [client, server]
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                dst.shutdown(socket.SHUT_WR)


def hub_config(tmp: Path, broker: Mosquitto, influx: Influxd | None, db: str, root: str,
               mqtt_port: int | None = None, influx_url: str | None = None, **hub: Any) -> Config:
    """A validated config for an in-process worker: its own topic root and database, /metrics off."""
    mqtt = {"host": broker.host, "port": mqtt_port or broker.port, "root": root}
    path = write_config(tmp, broker, influx, db, mqtt=mqtt, hub={"metrics": {"port": 0}, **hub})
    cfg = load(path)
    if influx_url:
        cfg = cfg.model_copy(update={"influx": cfg.influx.model_copy(update={"url": influx_url})})
    return cfg


def metric(worker: Worker, name: str, **labels: str) -> float:
    """One sample of a worker's metrics (0 when absent), summed over other labels."""
    total = 0.0
    for fam in worker.metrics.registry.collect():
        for s in fam.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                total += s.value
    return total
