"""Helpers for the issue-13 tests: a cuttable TCP forwarder, an in-process hub worker, metric reads, and a
hub process and an edge agent process for the fault-interleaving property (run as a script: the agent)."""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from hub_helpers import REPO, HubProcess, write_config

from commhub.config import Config, load
from commhub.ports import free_port
from commhub.services import Influxd, Mosquitto
from commhub.wire import BODY_TYPES, DeviceKind
from edge_agents.base import BaseAgent
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
        self.port = free_port(host)  # reserved: up() listens on it again after down()

    @property
    def is_up(self) -> bool:
        """Whether it listens now."""
        return self._up

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


# ---- issue 13's second property: a real agent process, a real hub process, faults on a timeline ------------

class HubRunner(HubProcess):
    """`commhub hub` as a child process that may be started while the broker is away (no wait for it)."""

    def launch(self) -> None:
        """Start the process and return at once (a supervisor's restart)."""
        cmd = [sys.executable, "-m", "commhub.cli", "hub", "--config", str(self.config),
               "--metrics-port", str(self.metrics_port)]
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=REPO)


def spooled_seqs(spool_file: Path) -> set[tuple[str, int]]:
    """(device_id, seq) of every message in an agent's spool file now (read beside the running agent)."""
    if not spool_file.exists():
        return set()
    db = sqlite3.connect(f"file:{spool_file}?mode=ro", uri=True, timeout=10)
    try:
        rows = db.execute("SELECT payload FROM spool WHERE session = 0").fetchall()
    finally:
        db.close()
    out = set()
    for (payload,) in rows:
        env = json.loads(payload)
        out.add((env["device_id"], int(env["seq"])))
    return out


def stream_agent(argv: list[str]) -> int:
    """A real edge agent process (BaseAgent, its own spool) publishing a planned stream, then flushing it.

    The plan is a JSON list of [offset_s, device_id, kind, body], played once connected and once the file --go
    exists (the hub has subscribed); every published message is written to --out
    as a JSON line [device_id, seq, type, unix time] before the next, and a last line "flushed" once the
    broker has acknowledged everything (the spool is empty).
    """
    p = argparse.ArgumentParser()
    p.add_argument("--config", type=Path, required=True)
    p.add_argument("--name", required=True)
    p.add_argument("--state-dir", type=Path, required=True)
    p.add_argument("--plan", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--go", type=Path, required=True, help="the stream starts once this file exists")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    cfg = load(args.config)
    plan = json.loads(args.plan.read_text())
    agent = BaseAgent(cfg.mqtt, cfg.community.site.id, args.name, args.state_dir, cfg.agent)
    for device_id, kind in sorted({(d, k) for _, d, k, _ in plan}):
        agent.add_device(device_id, DeviceKind(kind), 3600.0)
    agent.start()
    while not (agent.connected and args.go.exists()):
        time.sleep(0.05)
    t0 = time.monotonic()
    with open(args.out, "a") as out:
        for offset, device_id, _, body in plan:
            time.sleep(max(0.0, t0 + offset - time.monotonic()))
            seq = agent.publish(device_id, BODY_TYPES[body["type"]].model_validate(body))
            out.write(json.dumps([device_id, seq, body["type"], time.time()]) + "\n")
            out.flush()
        while not agent.flush(5.0):
            pass  # the broker or the hub is away: the spool keeps everything; wait (the test bounds this)
        out.write("flushed\n")
        out.flush()
    agent.stop()
    return 0


if __name__ == "__main__":
    sys.exit(stream_agent(sys.argv[1:]))
