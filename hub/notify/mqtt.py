"""Publish alert notices on topics.alert(root, site, grid, severity), QoS 1, from the outbox."""

from __future__ import annotations

import logging
import queue
import threading
from collections import OrderedDict
from collections.abc import Sequence

from commhub import topics
from commhub.config import MqttConfig
from commhub.mqtt import HUB_ACCOUNT, connect, make_client
from commhub.wire import AlertNotice
from hub.alerts.store import AlertStore

log = logging.getLogger(__name__)
CHANNEL = "mqtt"


class MqttNotifier:
    """Sends fresh notices at once (they are leased to us at commit) and sweeps the outbox for leftovers."""

    def __init__(self, store: AlertStore, cfg: MqttConfig, client_id: str, qos: int = 1,
                 sweep_s: float = 1.0) -> None:
        self.store = store
        self.cfg = cfg
        self.client_id = client_id
        self.qos = qos
        self.sweep_s = sweep_s
        self._q: queue.SimpleQueue[list[AlertNotice] | None] = queue.SimpleQueue()
        self._client = make_client(client_id, cfg, account=HUB_ACCOUNT)
        self._thread: threading.Thread | None = None
        # Notice ids this process already published: the sweep and the fast path never send one twice.
        self._sent: OrderedDict[int, None] = OrderedDict()
        self.sent = 0

    def start(self) -> None:
        """Connect and start the sender thread."""
        connect(self._client, self.cfg, asynchronous=True)
        self._client.loop_start()
        self._thread = threading.Thread(target=self._run, name="alerts-mqtt", daemon=True)
        self._thread.start()

    def send(self, notices: list[AlertNotice]) -> None:
        """Queue notices committed a moment ago."""
        self._q.put(notices)

    def stop(self, timeout: float = 5.0) -> None:
        """Send what is queued, then disconnect; unsent rows stay in the outbox for the next start."""
        if self._thread is not None:
            self._q.put(None)
            self._thread.join(timeout)
        self._client.disconnect()
        self._client.loop_stop()

    def _run(self) -> None:
        while True:
            try:
                item = self._q.get(timeout=self.sweep_s)
            except queue.Empty:
                item = []
            if item is None:
                return
            try:
                if item:
                    self._publish(item)
                    self.store.delivered_notices(CHANNEL, [n.notice_id for n in item])
                self._sweep()
            except Exception:
                # Rows stay leased and undelivered; the sweep picks them up after the lease.
                log.exception("publishing alert notices failed")

    def _sweep(self) -> None:
        rows = self.store.claim(CHANNEL)
        if not rows:
            return
        notices = [AlertNotice.model_validate_json(payload) for _, payload, _ in rows]
        self._publish(notices)
        self.store.delivered([r[0] for r in rows])

    def _publish(self, notices: Sequence[AlertNotice]) -> None:
        root = self.cfg.root
        fresh = [n for n in notices if n.notice_id not in self._sent]
        infos = [self._client.publish(topics.alert(root, n.site, n.grid, n.severity), n.model_dump_json(),
                                      qos=self.qos) for n in fresh]
        for info in infos:
            info.wait_for_publish(timeout=10.0)
            if not info.is_published():
                raise RuntimeError(f"alert notice not acknowledged by the broker (rc={info.rc})")
        for n in fresh:
            self._sent[n.notice_id] = None
        while len(self._sent) > 100_000:
            self._sent.popitem(last=False)
        self.sent += len(fresh)
