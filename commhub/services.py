"""Run Debian's mosquitto and influxd on loopback, with data under a directory of ours.

Used by `commhub up`, the benchmarks and the test fixtures, so all three start the services the same way.
"""

from __future__ import annotations

import contextlib
import logging
import os
import pwd
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, replace
from pathlib import Path

from commhub.ports import free_port

log = logging.getLogger(__name__)


class ServiceError(RuntimeError):
    """A service binary is missing or did not come up."""


def _which(binary: str, package: str) -> str:
    path = shutil.which(binary) or next(
        (p for p in (f"/usr/sbin/{binary}", f"/usr/bin/{binary}") if os.access(p, os.X_OK)), None)
    if path is None:
        raise ServiceError(f"{binary} not found: install Debian's {package} package (apt-get install {package})")
    return path


def _wait_tcp(host: str, port: int, timeout: float, proc: subprocess.Popen[bytes], name: str, logf: Path) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise ServiceError(f"{name} exited with {proc.returncode}; see {logf}")
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.2):
            return
        time.sleep(0.05)
    raise ServiceError(f"{name} did not listen on {host}:{port} within {timeout}s; see {logf}")


class _Service:
    name = "service"

    def __init__(self, workdir: Path, host: str = "127.0.0.1", port: int | None = None) -> None:
        self.workdir = Path(workdir)
        self.host = host
        self.port = port or free_port(host)
        self.proc: subprocess.Popen[bytes] | None = None
        self.logfile = self.workdir / f"{self.name}.log"

    def _command(self) -> list[str]:
        raise NotImplementedError

    def _ready(self) -> None:
        """Block until the service answers."""

    def start(self, timeout: float = 120.0) -> None:
        """Start the service and wait until it answers."""
        if self.running:
            return
        self.workdir.mkdir(parents=True, exist_ok=True)
        cmd = self._command()
        with open(self.logfile, "ab") as out:
            self.proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        _wait_tcp(self.host, self.port, timeout, self.proc, self.name, self.logfile)
        self._ready()
        log.info("%s listening on %s:%d", self.name, self.host, self.port)

    @property
    def running(self) -> bool:
        """Whether our process is alive."""
        return self.proc is not None and self.proc.poll() is None

    def stop(self, kill: bool = False, timeout: float = 15.0) -> None:
        """Stop the service (SIGTERM, or SIGKILL with kill=True) and wait for it."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None


# Seconds between saves of the broker's in-memory state: a SIGKILL or power cut loses at most the messages
# the broker accepted in this window that no hub worker had received yet (SIGTERM saves everything).
AUTOSAVE_INTERVAL_S = 5


@dataclass(frozen=True, slots=True)
class BrokerAuth:
    """mosquitto's password file and ACL, as `commhub mqtt provision` writes them."""

    password_file: Path
    acl_file: Path


@dataclass(frozen=True, slots=True)
class BrokerTls:
    """A TLS listener: files as `commhub certs init` writes them; clients must present a certificate of ca."""

    ca: Path
    cert: Path
    key: Path
    port: int = 0  # 0 = a free port
    host: str = "127.0.0.1"
    require_certificate: bool = True
    # The certificate's CN is the username (mosquitto's use_identity_as_username): the ACL applies to it and no
    # password is asked on this listener.
    use_identity_as_username: bool = False


class Mosquitto(_Service):
    """A mosquitto broker with persistence and queues sized for the hub; with auth, no anonymous client."""

    name = "mosquitto"

    def __init__(self, workdir: Path, host: str = "127.0.0.1", port: int | None = None,
                 max_queued_messages: int = 1_000_000, extra_conf: str = "", auth: BrokerAuth | None = None,
                 tls: BrokerTls | None = None, autosave_interval_s: int = AUTOSAVE_INTERVAL_S) -> None:
        super().__init__(workdir, host, port)
        if tls is not None and tls.use_identity_as_username and not tls.require_certificate:
            raise ValueError("use_identity_as_username needs require_certificate: without one, there is no identity")
        self.max_queued_messages = max_queued_messages
        self.autosave_interval_s = autosave_interval_s
        self.extra_conf = extra_conf
        self.auth = auth
        self.tls = tls if tls is None or tls.port else replace(tls, port=free_port(tls.host))

    def _auth_lines(self) -> list[str]:
        if self.auth is None:
            return ["allow_anonymous true"]
        return ["allow_anonymous false", f"password_file {self.auth.password_file}", f"acl_file {self.auth.acl_file}"]

    def _tls_lines(self) -> list[str]:
        t = self.tls
        if t is None:
            return []
        return [f"listener {t.port} {t.host}", f"cafile {t.ca}", f"certfile {t.cert}", f"keyfile {t.key}",
                "tls_version tlsv1.2", f"require_certificate {'true' if t.require_certificate else 'false'}",
                *(["use_identity_as_username true"] if t.use_identity_as_username else [])]

    def config_text(self) -> str:
        """The mosquitto.conf we run with."""
        # Stock max_queued_messages (1000) dropped 10-27 % of messages to a slow subscriber: size it.
        return "\n".join([
            "per_listener_settings false",
            # As root, mosquitto would switch to its own user, who cannot write our data dir.
            f"user {pwd.getpwuid(os.geteuid()).pw_name}",
            *self._auth_lines(),
            f"listener {self.port} {self.host}",
            *self._tls_lines(),
            "persistence true",
            f"persistence_location {self.workdir}/",
            f"autosave_interval {self.autosave_interval_s}",
            f"max_queued_messages {self.max_queued_messages}",
            "max_queued_bytes 0",
            "max_inflight_messages 0",
            "set_tcp_nodelay true",
            "log_dest stderr",
            "log_type error",
            "log_type warning",
            "log_type notice",
            "connection_messages false",
            self.extra_conf,
            "",
        ])

    def _command(self) -> list[str]:
        conf = self.workdir / "mosquitto.conf"
        conf.write_text(self.config_text())
        return [_which("mosquitto", "mosquitto"), "-c", str(conf)]


class Influxd(_Service):
    """An InfluxDB 1.x server (Debian's influxdb 1.6.7) with data under workdir."""

    name = "influxd"

    def __init__(self, workdir: Path, host: str = "127.0.0.1", port: int | None = None,
                 retention_check_s: float = 1800.0) -> None:
        super().__init__(workdir, host, port)
        self.rpc_port = free_port(host)
        self.retention_check_s = retention_check_s

    @property
    def url(self) -> str:
        """Base URL of the HTTP API."""
        return f"http://{self.host}:{self.port}"

    def config_text(self) -> str:
        """The influxd.conf we run with."""
        d = self.workdir
        return f"""reporting-disabled = true
bind-address = "{self.host}:{self.rpc_port}"
[meta]
  dir = "{d}/meta"
  logging-enabled = false
[data]
  dir = "{d}/data"
  wal-dir = "{d}/wal"
  query-log-enabled = false
  trace-logging-enabled = false
[monitor]
  store-enabled = false
[http]
  enabled = true
  bind-address = "{self.host}:{self.port}"
  log-enabled = false
  max-body-size = 0
[continuous_queries]
  enabled = true
[retention]
  enabled = true
  check-interval = "{max(1, int(self.retention_check_s))}s"
[logging]
  level = "warn"
"""

    def _command(self) -> list[str]:
        conf = self.workdir / "influxd.conf"
        conf.write_text(self.config_text())
        return [_which("influxd", "influxdb"), "-config", str(conf)]

    def _ready(self) -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"{self.url}/ping", timeout=1) as r:
                    if r.status == 204:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.1)
        raise ServiceError(f"influxd did not answer /ping; see {self.logfile}")


class Postgres:
    """initdb + postgres on a free loopback port, data in a temporary directory (run as 'postgres' when root).

    The tests and `commhub bench scale` use it; the server's settings can be extended with `extra`
    ("name=value" strings, e.g. "log_lock_waits=on").
    """

    def __init__(self, workdir: Path, extra: tuple[str, ...] = ()) -> None:
        self.workdir = Path(workdir)
        self.extra = extra
        self.port = free_port()
        bindir = next((d for d in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)
                       if (d / "initdb").exists()), None) if Path("/usr/lib/postgresql").exists() else None
        initdb = shutil.which("initdb") or (str(bindir / "initdb") if bindir else None)
        self.bindir = Path(initdb).parent if initdb else None
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def available(self) -> bool:
        """Whether PostgreSQL's server binaries are installed."""
        return self.bindir is not None

    @property
    def url(self) -> str:
        """SQLAlchemy URL (psycopg 3) of the `postgres` database."""
        return self.url_for("postgres")

    def url_for(self, database: str) -> str:
        """SQLAlchemy URL (psycopg 3) of one database on this server."""
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    @property
    def log_path(self) -> Path:
        """The server's log file."""
        return self.workdir / "postgres.log"

    def _as_owner(self, cmd: list[str]) -> list[str]:
        return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else cmd

    def start(self) -> None:
        """Create the cluster and start the server; wait until it accepts connections."""
        import tempfile

        import psycopg  # optional dependency (extra "postgres")
        if self.bindir is None:
            raise ServiceError("PostgreSQL server binaries not found: apt-get install postgresql")
        if os.geteuid() == 0:
            # A root-owned temp directory is private: the postgres user needs a directory of its own.
            self.workdir = Path(tempfile.mkdtemp(prefix="commhub-pg-"))
            shutil.chown(self.workdir, "postgres", "postgres")
        data = self.workdir / "pgdata"
        self.workdir.mkdir(parents=True, exist_ok=True)
        subprocess.run(self._as_owner([str(self.bindir / "initdb"), "-D", str(data), "-U", "postgres", "-A", "trust",
                                       "--no-sync"]), check=True, capture_output=True)
        logf = open(self.log_path, "ab")  # noqa: SIM115 - kept open for the server's life
        self.proc = subprocess.Popen(self._as_owner([
            str(self.bindir / "postgres"), "-D", str(data), "-p", str(self.port), "-k", str(self.workdir),
            "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off", "-c", "max_connections=50",
            *[a for kv in self.extra for a in ("-c", kv)]]),
            stdout=logf, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 60
        while True:
            try:
                psycopg.connect(f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres").close()
                return
            except psycopg.OperationalError as e:
                if self.proc.poll() is not None:
                    raise ServiceError(f"postgres exited: {self.log_path.read_text()[-2000:]}") from e
                if time.monotonic() > deadline:
                    raise ServiceError(f"postgres did not start; see {self.log_path}") from e
                time.sleep(0.1)

    def stop(self, keep: bool = False) -> None:
        """Stop the server (fast shutdown); keep=True leaves its data and log on disk."""
        if self.proc is not None and self.proc.poll() is None:
            # runuser does not pass signals on: signal the whole session (postgres and its children).
            os.killpg(self.proc.pid, signal.SIGINT)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        if not keep and self.workdir.name.startswith("commhub-pg-"):
            shutil.rmtree(self.workdir, ignore_errors=True)
