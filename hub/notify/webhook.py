"""POST alert notices to a webhook, one thread per receiver, with retry and backoff from the outbox."""

from __future__ import annotations

import json
import logging
import threading
from collections import defaultdict

import httpx

from commhub.config import WebhookConfig
from hub.alerts.store import AlertStore

log = logging.getLogger(__name__)


class WebhookNotifier:
    """One receiver; a slow or failing receiver delays only itself."""

    def __init__(self, store: AlertStore, cfg: WebhookConfig, poll_s: float = 0.5) -> None:
        self.store = store
        self.cfg = cfg
        self.channel = f"webhook:{cfg.name}"
        self.poll_s = poll_s
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.sent = 0
        self.failures = 0
        self.given_up = 0

    def start(self) -> None:
        """Start the sender thread."""
        self._thread = threading.Thread(target=self._run, name=f"alerts-{self.channel}", daemon=True)
        self._thread.start()

    def wake(self) -> None:
        """New notices were committed."""
        self._wake.set()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop; what is not delivered stays in the outbox."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        with httpx.Client(timeout=self.cfg.timeout_s) as http:
            while not self._stop.is_set():
                self._wake.wait(self.poll_s)
                self._wake.clear()
                try:
                    self._deliver(http)
                except Exception:
                    log.exception("webhook %s: delivery loop failed", self.cfg.name)

    def _deliver(self, http: httpx.Client) -> None:
        rows = self.store.claim(self.channel, limit=100)
        # Notices of one group travel together in one request.
        groups: dict[str, list[tuple[int, str, int]]] = defaultdict(list)
        for row in rows:
            groups[json.loads(row[1]).get("route", {}).get("group", "")].append(row)
        for group, items in groups.items():
            body = '{"group":' + json.dumps(group) + ',"notices":[' + ",".join(p for _, p, _ in items) + "]}"
            try:
                r = http.post(self.cfg.url, content=body, headers={"content-type": "application/json"})
                r.raise_for_status()
            except httpx.HTTPError as e:
                self.failures += 1
                gave_up = 0
                for oid, _, attempts in items:
                    give_up = attempts + 1 >= self.cfg.max_attempts
                    delay = min(self.cfg.backoff_initial_s * 2 ** attempts, self.cfg.backoff_max_s)
                    self.store.retry_later(oid, f"{type(e).__name__}: {e}", None if give_up else delay)
                    gave_up += give_up
                if gave_up:
                    # Nobody else will tell a person: these notices will not reach this receiver by itself.
                    self.given_up += gave_up
                    log.error("webhook %s: GAVE UP on %d alert notices after %d attempts (last error: %s); they "
                              "stay in the outbox as failed and were NOT delivered to %s", self.cfg.name, gave_up,
                              self.cfg.max_attempts, type(e).__name__, self.cfg.name)
                if gave_up < len(items):
                    log.warning("webhook %s: %s (%d notices will be retried)", self.cfg.name, e,
                                len(items) - gave_up)
                continue
            self.store.delivered([oid for oid, _, _ in items])
            self.sent += len(items)
