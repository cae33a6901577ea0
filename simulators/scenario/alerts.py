"""Alert notices as the scenario runner sees them, and a listener on the hub's alert topics."""

from __future__ import annotations

import logging
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as paho
from pydantic import ValidationError

from commhub import mqtt, topics
from commhub.config import MqttConfig
from commhub.wire import AlertNotice

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ObservedAlert:
    """One alert transition seen on the wire, reduced to what scoring needs."""

    alert_id: int
    code: str
    severity: str
    site: str
    grid: str
    building: str | None
    unit: str | None
    device_id: str | None
    transition: str
    opened_at: float  # epoch seconds, as the hub stamped it
    received_mono: float  # time.monotonic() when it arrived
    rule: str = ""
    event_ts: float | None = None  # the newest triggering event's own (device) time
    suppressed: str | None = None  # the silence/maintenance/inhibition that kept it from paging anyone
    recipients: tuple[str, ...] = ()  # "role:id" of everyone this transition was routed to

    @property
    def raised_at(self) -> float:
        """When the alert was raised: its stamp, or its triggering event if that is later (instant rules)."""
        return self.opened_at if self.event_ts is None else max(self.opened_at, self.event_ts)


def from_payload(payload: bytes | bytearray, received_mono: float) -> ObservedAlert:
    """Adapt one notice payload (commhub.wire.AlertNotice); raises ValueError if it is not one."""
    try:
        n = AlertNotice.model_validate_json(payload)
    except ValidationError as e:
        raise ValueError(f"not an AlertNotice: {e.errors()[0]['msg']}") from None
    event_ts = max((e.ts.timestamp() for e in n.events), default=None)
    return ObservedAlert(n.alert_id, n.code, n.severity, n.site, n.grid, n.building, n.unit, n.device_id,
                         n.transition, n.opened_at.timestamp(), received_mono, n.rule, event_ts,
                         n.route.suppressed, tuple(f"{r.role}:{r.id}" for r in n.route.recipients))


class AlertListener:
    """Subscribes to one site's alert notices (and keeps only those naming it, whatever topic they came on)."""

    def __init__(self, cfg: MqttConfig, site: str) -> None:
        self.cfg = cfg
        self.site = site
        self.alerts: list[ObservedAlert] = []
        self.invalid = 0
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        self._client: paho.Client | None = None

    def start(self, timeout: float = 60.0) -> None:
        """Connect and subscribe; returns once the subscription is acknowledged."""
        client = mqtt.make_client(f"scenario-{uuid.uuid4().hex[:8]}", self.cfg, account=mqtt.API_ACCOUNT)
        client.on_connect = self._on_connect
        client.on_subscribe = lambda *_a: self._subscribed.set()
        client.on_message = self._on_message
        self._client = client
        mqtt.connect(client, self.cfg)
        client.loop_start()
        if not self._subscribed.wait(timeout):
            self.stop()
            raise TimeoutError(f"no SUBACK for the alert topics from {self.cfg.host}:{self.cfg.port} in {timeout}s")

    def _on_connect(self, client: paho.Client, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        if reason.is_failure:
            log.error("alert listener: connect refused: %s", reason)
            return
        # Its site's only: the API account it logs in with reads no other site's alerts on a provisioned broker.
        client.subscribe(topics.alerts_filter(self.cfg.root, self.site), qos=1)

    def _on_message(self, _c: Any, _u: Any, msg: paho.MQTTMessage) -> None:
        now = time.monotonic()
        try:
            alert = from_payload(msg.payload, now)
        except ValueError as e:
            with self._lock:
                self.invalid += 1
            log.warning("alert listener: %s on %s", e, msg.topic)
            return
        if alert.site != self.site:
            return
        with self._lock:
            self.alerts.append(alert)

    def snapshot(self) -> list[ObservedAlert]:
        """The alerts seen so far."""
        with self._lock:
            return list(self.alerts)

    def stop(self) -> None:
        """Disconnect."""
        if self._client is not None:
            self._client.disconnect()
            self._client.loop_stop()
            self._client = None
