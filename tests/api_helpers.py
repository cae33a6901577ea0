"""Helpers for the API tests: a config on a given store, accounts per role, a real uvicorn server, an SSE reader."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import httpx
import uvicorn
from alerts_helpers import ROUTING, RULES, community

from commhub.config import AlertsConfig, ApiConfig, Config, InfluxConfig, MqttConfig
from commhub.ports import free_port

PASSWORD = "correct-horse-9"
# username -> (role, roster staff id); the roster is alerts_helpers.community(): g1 = b1, b2; g2 = b3
ACCOUNTS = {
    "sec": ("security_staff", None),
    "gw1": ("grid_worker", "gw-day-g1"),
    "gw2": ("grid_worker", "gw-g2"),
    "prop": ("property", None),
    "police": ("police_liaison", "police-1"),
    "adm": ("admin", None),
}


def bearer(client: Any, tokens: dict[str, str], user: str) -> dict[str, str]:
    """Authorization header of a user, logging in once with the shared test password (tokens caches it)."""
    if user not in tokens:
        r = client.post("/api/v1/auth/token", data={"username": user, "password": PASSWORD})
        assert r.status_code == 200, r.text
        tokens[user] = r.json()["access_token"]
    return {"Authorization": f"Bearer {tokens[user]}"}


def api_config(db_url: str, site: str = "s1", mqtt_port: int = 1, influx_url: str = "http://127.0.0.1:9",
               **api: Any) -> Config:
    """A Config on this store; the broker and InfluxDB default to closed ports (no live feed needed)."""
    api = {"argon2_time_cost": 1, "argon2_memory_kib": 1024, **api}  # cheap hashes: tests log in often
    return Config(community=community(site), mqtt=MqttConfig(port=mqtt_port, root=site),
                  influx=InfluxConfig(url=influx_url, transport="v1"),
                  alerts=AlertsConfig(enabled=True, db_url=db_url, rules_file=RULES, routing_file=ROUTING),
                  api=ApiConfig(**api))


def add_accounts(services: Any, accounts: dict[str, tuple[str, str | None]] = ACCOUNTS) -> None:
    """Create the accounts (property manages b1 only)."""
    for name, (role, staff) in accounts.items():
        services.accounts.add(name, role, PASSWORD, staff, ["b1"] if role == "property" else None)


def open_alert(store: Any, rule: str, grid: str, building: str | None, subject: str,
               condition_active: bool = True) -> int:
    """Open an alert of a rule from the pack at a place, as the rules would; returns its id."""
    spec = store.rules[rule]
    with store.tx() as tx:
        n = tx.open_alert(spec, subject, spec.severity, {"site": store.site, "grid": grid, "building": building,
                                                         "unit": None, "device": None}, [], {"limit": 1}, None)
    if not condition_active:
        with store.engine.begin() as conn:
            conn.exec_driver_sql(f"UPDATE alerts SET condition_active = false WHERE id = {int(n.alert_id)}")
    return int(n.alert_id)


class ApiServer:
    """The app under a real uvicorn on a free loopback port, in a thread."""

    def __init__(self, app: Any) -> None:
        self.port = free_port()
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning",
                                                    access_log=False, lifespan="on",
                                                    timeout_graceful_shutdown=3))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def url(self) -> str:
        """Base URL."""
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> ApiServer:
        """Start and wait until it serves."""
        self.thread.start()
        deadline = time.monotonic() + 60
        while not self.server.started:
            assert self.thread.is_alive() and time.monotonic() < deadline, "the API server did not start"
            time.sleep(0.05)
        return self

    def stop(self) -> None:
        """Stop (SSE streams are cut)."""
        self.server.should_exit = True
        self.thread.join(30)

    def login(self, username: str, password: str = PASSWORD) -> str:
        """An access token."""
        r = httpx.post(f"{self.url}/api/v1/auth/token", data={"username": username, "password": password},
                       timeout=30)
        assert r.status_code == 200, r.text
        return str(r.json()["access_token"])


@dataclass
class SseReader:
    """Reads an SSE stream in a thread; `events` holds (id, notice dict) in arrival order."""

    url: str
    token: str
    last_event_id: int | None = None
    events: list[tuple[int, dict[str, Any]]] = field(default_factory=list)
    status: int | None = None

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._connected = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._response: Any = None

    def start(self) -> SseReader:
        """Connect and wait for the response headers."""
        self._thread.start()
        assert self._connected.wait(30), "the SSE stream did not answer"
        return self

    def _run(self) -> None:
        headers = {"Authorization": f"Bearer {self.token}"}
        if self.last_event_id is not None:
            headers["Last-Event-ID"] = str(self.last_event_id)
        with httpx.Client(timeout=httpx.Timeout(30, read=None)) as client, \
                client.stream("GET", f"{self.url}/api/v1/alerts/stream", headers=headers) as r:
            self._response = r
            self.status = r.status_code
            self._connected.set()
            if r.status_code != 200:
                return
            ev_id: int | None = None
            data = ""
            try:
                for line in r.iter_lines():
                    if self._stop.is_set():
                        return
                    if line.startswith("id: "):
                        ev_id = int(line[4:])
                    elif line.startswith("data: "):
                        data = line[6:]
                    elif line == "" and ev_id is not None:
                        self.events.append((ev_id, json.loads(data)))
                        ev_id, data = None, ""
            except (httpx.HTTPError, RuntimeError):
                return

    def wait_for(self, pred: Any, timeout: float = 60.0) -> dict[str, Any]:
        """The first notice matching pred, waiting for it (generous bound; the verdict does not depend on it)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for _, n in list(self.events):
                if pred(n):
                    return n
            time.sleep(0.02)
        raise AssertionError(f"no matching notice within {timeout} s; got {[n['subject'] for _, n in self.events]}")

    def close(self) -> None:
        """Drop the connection."""
        # The reader notices at the next line (the heartbeat is short in tests) and leaves, closing the socket.
        self._stop.set()
        self._thread.join(30)
        assert not self._thread.is_alive(), "the SSE reader did not stop"

    @property
    def ids(self) -> list[int]:
        """Event ids received."""
        return [i for i, _ in self.events]


def wait_until(pred: Any, timeout: float = 60.0, what: str = "condition") -> None:
    """Poll pred until true (a generous bound; never a timing verdict)."""
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, f"{what} not reached within {timeout} s"
        time.sleep(0.02)
