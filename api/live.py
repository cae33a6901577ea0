"""Live alert notices for SSE clients: fed from the MQTT alert topic (every hub worker) and this process's own
actions, de-duplicated by notice id, and fanned out to each client whose jurisdiction covers the alert."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from api.services.scope import Principal
from commhub import topics
from commhub.config import MqttConfig
from commhub.mqtt import API_ACCOUNT, connect, make_client
from commhub.wire import AlertNotice

log = logging.getLogger(__name__)
_SEEN = 20000


def sse_event(n: AlertNotice) -> bytes:
    """One notice as an SSE event: id = notice id, event = alert, data = the notice JSON."""
    return f"id: {n.notice_id}\nevent: alert\ndata: {n.model_dump_json()}\n\n".encode()


@dataclass(eq=False)
class Subscriber:
    """One SSE client: its principal and its queue (None in the queue = cut off, reconnect)."""

    principal: Principal
    queue: asyncio.Queue[tuple[int, bytes] | None]
    loop: asyncio.AbstractEventLoop
    dropped: bool = field(default=False)


class LiveHub:
    """One MQTT subscription per API process; thread-safe publish into asyncio queues."""

    def __init__(self, mqtt: MqttConfig, client_id: str, queue_size: int = 1000, site: str | None = None) -> None:
        self.mqtt = mqtt
        # This community's site: on a broker several communities share, the others' notices are not ours (their
        # grid ids may be ours too, and their notice ids come from another alert store).
        self.site = site
        self.client_id = client_id
        self.queue_size = queue_size
        self._client: Any = None
        self._subs: set[Subscriber] = set()
        self._lock = threading.Lock()
        self._seen: OrderedDict[int, None] = OrderedDict()
        self.connected = False
        self.received = 0

    def start(self) -> None:
        """Connect in the background; reconnects by itself (paho) and re-subscribes on every connect."""
        self._client = make_client(self.client_id, self.mqtt, account=API_ACCOUNT)
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.on_message = self._on_message
        connect(self._client, self.mqtt, asynchronous=True)
        self._client.loop_start()

    def stop(self) -> None:
        """Disconnect and cut every client off."""
        if self._client is not None:
            self._client.disconnect()
            self._client.loop_stop()
        self.cut_all()

    def _on_connect(self, client: Any, _u: Any, _f: Any, reason: Any, _p: Any = None) -> None:
        if getattr(reason, "is_failure", False):
            log.warning("live alerts: broker refused the connection: %s", reason)
            return
        client.subscribe(topics.alerts_filter(self.mqtt.root, self.site), qos=1)
        self.connected = True
        log.info("live alerts: subscribed to %s", topics.alerts_filter(self.mqtt.root, self.site))

    def _on_disconnect(self, *_a: Any) -> None:
        self.connected = False

    def _on_message(self, _c: Any, _u: Any, msg: Any) -> None:
        try:
            notice = AlertNotice.model_validate_json(msg.payload)
        except (ValidationError, ValueError):
            log.warning("live alerts: invalid notice on %s dropped", msg.topic)
            return
        self.publish([notice])

    def publish(self, notices: list[AlertNotice]) -> None:
        """Hand notices to every client in whose jurisdiction they are (from any thread); each id once."""
        with self._lock:
            fresh = []
            for n in notices:
                if self.site is not None and n.site != self.site:
                    continue  # another community's, whatever topic it came on
                if n.notice_id in self._seen:
                    continue
                self._seen[n.notice_id] = None
                if len(self._seen) > _SEEN:
                    self._seen.popitem(last=False)
                fresh.append(n)
            subs = list(self._subs)
        self.received += len(fresh)
        if not fresh or not subs:
            return
        # One wake-up per event loop and batch (not per client): the loop then fills every matching queue.
        events = [(n, (n.notice_id, sse_event(n))) for n in fresh]  # encoded once, whatever the clients
        by_loop: dict[asyncio.AbstractEventLoop, list[Subscriber]] = {}
        for sub in subs:
            by_loop.setdefault(sub.loop, []).append(sub)
        for loop, group in by_loop.items():
            with contextlib.suppress(RuntimeError):  # the loop is closed: the app is shutting down
                loop.call_soon_threadsafe(_deliver, group, events)

    def cut_all(self) -> None:
        """End every stream (shutting down); clients reconnect and replay."""
        with self._lock:
            subs = list(self._subs)
        for sub in subs:
            with contextlib.suppress(RuntimeError):
                sub.loop.call_soon_threadsafe(_put, sub, None)

    def subscribe(self, principal: Principal) -> Subscriber:
        """Register a client (call from the event loop)."""
        s = Subscriber(principal, asyncio.Queue(self.queue_size), asyncio.get_running_loop())
        with self._lock:
            self._subs.add(s)
        return s

    def unsubscribe(self, s: Subscriber) -> None:
        """Forget a client."""
        with self._lock:
            self._subs.discard(s)

    @property
    def clients(self) -> int:
        """Connected clients."""
        with self._lock:
            return len(self._subs)


def _deliver(subs: list[Subscriber], events: list[tuple[AlertNotice, tuple[int, bytes]]]) -> None:
    """In the event loop: queue each event for every client whose jurisdiction covers it."""
    for sub in subs:
        for n, event in events:
            if sub.principal.covers(n.grid, n.building, n.layer):
                _put(sub, event)


def _put(sub: Subscriber, item: tuple[int, bytes] | None) -> None:
    if sub.dropped:
        return
    try:
        sub.queue.put_nowait(item)
    except asyncio.QueueFull:
        # A client this far behind is cut off; it reconnects with Last-Event-ID and replays from SQL.
        sub.dropped = True
        while not sub.queue.empty():
            sub.queue.get_nowait()
        sub.queue.put_nowait(None)
