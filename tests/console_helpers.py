"""The console's test rig: broker, influxd, a real hub process and a real API process, demo accounts, incidents."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from hub_helpers import REPO, HubProcess, raw_client, write_config

from commhub.ports import free_port
from commhub.services import Influxd, Mosquitto

PASSWORD = "console-test-pw"
# username -> (role, roster staff id); gw1 covers cell g1 of the sample community only.
ACCOUNTS: dict[str, tuple[str, str | None]] = {
    "gw1": ("grid_worker", "gw-g1-day"),
    "guard": ("security_staff", None),
    "police": ("police_liaison", None),
    "admin": ("admin", None),
    "prop": ("property", None),
}


class ApiProcess:
    """`commhub api --config ... --port P` as a child process, restartable on the same port."""

    def __init__(self, config: Path, log: Path) -> None:
        self.config = config
        self.log = log
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """The base URL."""
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60.0) -> None:
        """Start and wait until /readyz says the database and the broker are reachable."""
        cmd = [sys.executable, "-m", "commhub.cli", "api", "--config", str(self.config), "--port", str(self.port)]
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=REPO)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"api exited: {self.log.read_text()[-3000:]}"
            try:
                with urllib.request.urlopen(f"{self.url}/readyz", timeout=2) as r:
                    if json.load(r).get("ready"):
                        return
            except (OSError, ValueError):
                pass
            time.sleep(0.2)
        raise AssertionError(f"api not ready: {self.log.read_text()[-3000:]}")

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if it lingers."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class ConsoleStack:
    """The sample community on real services: hub worker + operator API (serving the console) + a device client."""

    def __init__(self, tmp: Path, broker: Mosquitto, influx: Influxd, rules_file: Path | None = None) -> None:
        self.tmp = tmp
        self.broker = broker
        self.site = "sunrise"
        root = "c" + uuid.uuid4().hex[:8]  # a topic root of our own on the shared broker
        self.config = write_config(
            tmp, broker, influx, f"console_{uuid.uuid4().hex[:8]}",
            mqtt={"host": broker.host, "port": broker.port, "root": root},
            hub={"batch_wait_ms": 2.0},
            alerts={"enabled": True, "db_path": str(tmp / "alerts.db"), "tick_s": 0.2,
                    **({"rules_file": str(rules_file)} if rules_file else {})},
            api={"host": "127.0.0.1", "access_ttl_s": 3600})
        self.root = root
        self.hub = HubProcess(self.config, tmp / "hub.log")
        self.api = ApiProcess(self.config, tmp / "api.log")
        self.seq = int(time.time() * 1e6)
        self.client: Any = None
        self.latency: dict[str, float] = {}  # figures measured along the way, for the report
        self._tokens: dict[str, str] = {}

    def start(self) -> ConsoleStack:
        """Accounts first (migrating the store), then the hub, the API and the device client."""
        from api.state import Services
        from commhub.config import load
        services = Services(load(self.config), live=False)
        services.start()
        try:
            for name, (role, staff) in ACCOUNTS.items():
                services.accounts.add(name, role, PASSWORD, staff_id=staff)
        finally:
            services.stop()
        # The two processes start side by side: each takes seconds to import on a loaded machine.
        errors: list[BaseException] = []

        def hub() -> None:
            try:
                self.hub.start(timeout=60)
            except BaseException as e:
                errors.append(e)

        t = threading.Thread(target=hub)
        t.start()
        self.api.start()
        t.join()
        if errors:
            raise errors[0]
        self.client = raw_client(self.broker, f"console-dev-{uuid.uuid4().hex[:6]}")
        return self

    def stop(self) -> None:
        """Everything we started."""
        if self.client is not None:
            self.client.disconnect()
            self.client.loop_stop()
        self.api.stop()
        self.hub.stop()

    def send(self, kind: str, device_id: str, body: dict[str, Any], channel: str = "evt") -> None:
        """Publish one envelope from a device of the sample community, now, at QoS 1."""
        from commhub import topics
        self.seq += 1
        payload = json.dumps({"schema": 1, "device_id": device_id, "seq": self.seq, "body": body,
                              "ts": datetime.now(UTC).isoformat().replace("+00:00", "Z")}).encode()
        info = self.client.publish(topics.device(self.root, self.site, kind, device_id, channel), payload, qos=1)
        info.wait_for_publish(10)

    def snapshot(self, device_id: str, snapshot_id: str, jpeg: bytes) -> None:
        """Publish a camera's JPEG on its snapshot topic, as the camera agent does before the event."""
        from commhub import topics
        info = self.client.publish(topics.snapshot(self.root, self.site, "camera", device_id, snapshot_id), jpeg, qos=1)
        info.wait_for_publish(10)

    def door(self, device_id: str, opened: bool) -> None:
        """A door of a door controller opens (with no grant: forced) or closes."""
        self.send("door_controller", device_id, {"type": "door_opened" if opened else "door_closed", "door": "d1"})

    def token(self, username: str) -> str:
        """An access token for a demo account (one login each: argon2 is slow on purpose)."""
        if username in self._tokens:
            return self._tokens[username]
        data = f"username={username}&password={PASSWORD}&grant_type=password".encode()
        req = urllib.request.Request(f"{self.api.url}/api/v1/auth/token", data=data,
                                     headers={"Content-Type": "application/x-www-form-urlencoded"})
        with urllib.request.urlopen(req, timeout=30) as r:
            self._tokens[username] = str(json.load(r)["access_token"])
        return self._tokens[username]

    def get(self, username: str, path: str) -> Any:
        """GET an API path as a demo account (JSON)."""
        req = urllib.request.Request(f"{self.api.url}{path}",
                                     headers={"Authorization": f"Bearer {self.token(username)}"})
        with urllib.request.urlopen(req, timeout=10) as r:
            return json.load(r)

    def wait_alert(self, username: str, timeout: float = 30.0, **match: Any) -> dict[str, Any]:
        """The first alert (as the account sees it) whose fields match, waiting for it."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                items = self.get(username, "/api/v1/alerts?limit=500")["items"]
            except urllib.error.URLError:
                items = []
            for a in items:
                if all(a.get(k) == v for k, v in match.items()):
                    return dict(a)
            time.sleep(0.2)
        raise AssertionError(f"no alert matching {match} within {timeout}s")
