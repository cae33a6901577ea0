"""One hub worker: MQTT shared subscription -> validate -> de-duplicate -> spool -> ack -> sinks.

A message is acknowledged (manual PUBACK) only after its point is durably in the spool, so a crash at any
moment loses nothing: the broker redelivers whatever was not acknowledged. What was spooled but not yet
acknowledged comes back as a duplicate with the same timestamp and tags, which InfluxDB overwrites in place.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as paho
from prometheus_client import start_http_server

from commhub import topics
from commhub.config import Config
from commhub.mqtt import connect, make_client
from commhub.topics import Channel
from commhub.wire import DeadLetter
from hub.ingest.dedup import Deduplicator
from hub.ingest.message import Accepted, Sink
from hub.ingest.validate import Validator
from hub.metrics import HubMetrics
from hub.store.drain import Drainer
from hub.store.influx import make_transport
from hub.store.points import PointBuilder, dead_letter_point
from hub.store.snapshots import SnapshotStore
from hub.store.spool import Spool

log = logging.getLogger(__name__)


@dataclass(slots=True)
class _Inbound:
    topic: str
    payload: bytes
    mid: int
    qos: int
    generation: int
    received_at: float


class Worker:
    """A hub worker; several can share one subscription group."""

    def __init__(self, cfg: Config, sinks: Sequence[Sink] = ()) -> None:
        self.cfg = cfg
        self.sinks = list(sinks)
        hub = cfg.hub
        self.metrics = HubMetrics(hub.worker_id)
        self.spool = Spool(hub.spool.dir / hub.worker_id, fsync=hub.spool.fsync)
        self.drainer = Drainer(self.spool, lambda: make_transport(cfg.influx), hub.spool, self.metrics)
        self.validator = Validator(cfg.mqtt.root, cfg.community.device_index(), hub.worker_id)
        self.snapshots = SnapshotStore(hub.snapshots_dir, hub.snapshot_max_bytes)
        self.dedup = Deduplicator(hub.dedup_window)
        self.points = PointBuilder()
        self._inbox: queue.SimpleQueue[_Inbound | None] = queue.SimpleQueue()
        self._generation = 0
        self._connected = threading.Event()
        self._client: paho.Client | None = None
        self._thread: threading.Thread | None = None
        self._http: Any = None
        self.processed = 0

    # ---- lifecycle -------------------------------------------------------------------------------

    def start(self) -> None:
        """Open the spool, start writing to InfluxDB, then subscribe."""
        self.spool.open()
        m = self.metrics
        m.gauge("commhub_spool_segments", "Spooled batches waiting for InfluxDB", lambda: self.spool.depth[0])
        m.gauge("commhub_spool_points", "Spooled points waiting for InfluxDB", lambda: self.spool.depth[1])
        m.gauge("commhub_spool_bytes", "Bytes waiting in the spool", lambda: self.spool.depth[2])
        m.gauge("commhub_spool_oldest_age_seconds", "Age of the oldest spooled batch", lambda: self.spool.oldest_age)
        m.gauge("commhub_mqtt_connected", "1 while connected to the broker", lambda: float(self._connected.is_set()))
        self.drainer.start()
        for sink in self.sinks:
            sink.start()
        mc = self.cfg.hub.metrics
        if mc.port:
            self._http = start_http_server(mc.port, mc.host, registry=m.registry)
        self._thread = threading.Thread(target=self._process_loop, name="hub-process", daemon=True)
        self._thread.start()
        client = make_client(self.cfg.hub.worker_id, self.cfg.mqtt, manual_ack=True)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.reconnect_delay_set(1, 10)
        self._client = client
        connect(client, self.cfg.mqtt, clean_start=False, session_expiry_s=self.cfg.hub.session_expiry_s,
                receive_maximum=self.cfg.hub.receive_maximum, asynchronous=True)
        client.loop_start()

    def wait_connected(self, timeout: float = 10.0) -> bool:
        """Block until subscribed to the broker."""
        return self._connected.wait(timeout)

    def stop(self, flush_timeout: float = 10.0) -> None:
        """Process what has arrived, disconnect, write the spool out for up to flush_timeout, and stop."""
        self._inbox.put(None)
        if self._thread is not None:
            self._thread.join(timeout=60)
        if self._client is not None:
            self._client.disconnect()
            self._client.loop_stop()
        for sink in self.sinks:
            sink.stop()
        self.drainer.stop(flush_timeout)
        if self._http is not None:
            server, thread = self._http
            server.shutdown()
            thread.join(timeout=5)

    # ---- MQTT callbacks: hand messages on, nothing else ------------------------------------------

    def _on_connect(self, client: paho.Client, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        if reason.is_failure:
            log.error("broker refused the connection: %s", reason)
            return
        # Message ids restart per connection: an ack for an old one must never be sent on the new one.
        self._generation += 1
        group = self.cfg.hub.share_group
        client.subscribe(topics.shared(group, topics.devices_filter(self.cfg.mqtt.root)), qos=1)
        self._connected.set()
        log.info("connected to %s:%d, subscribed as %s", self.cfg.mqtt.host, self.cfg.mqtt.port, group)

    def _on_disconnect(self, _c: Any, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        self._connected.clear()
        if reason.is_failure:
            log.warning("disconnected from the broker (%s); reconnecting", reason)

    def _on_message(self, _c: Any, _u: Any, msg: paho.MQTTMessage) -> None:
        self._inbox.put(_Inbound(msg.topic, bytes(msg.payload), msg.mid, msg.qos, self._generation, time.time()))

    # ---- processing ---------------------------------------------------------------------------------

    def _process_loop(self) -> None:
        hub = self.cfg.hub
        wait = hub.batch_wait_ms / 1000
        while True:
            first = self._inbox.get()
            if first is None:
                return
            batch = [first]
            deadline = time.monotonic() + wait
            stop = False
            while len(batch) < hub.batch_max:
                try:
                    item = self._inbox.get_nowait()
                except queue.Empty:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    try:
                        item = self._inbox.get(timeout=left)
                    except queue.Empty:
                        break
                if item is None:
                    stop = True
                    break
                batch.append(item)
            try:
                self._process(batch)
            except Exception:
                # Nothing in the batch was acknowledged, so the broker will deliver it again.
                log.exception("batch of %d failed; left unacknowledged for redelivery", len(batch))
            if stop:
                return

    def _process(self, batch: list[_Inbound]) -> None:
        lines: list[str] = []
        accepted: list[Accepted] = []
        dead: list[DeadLetter] = []
        duplicates = 0
        for item in batch:
            result = self._classify(item)
            if isinstance(result, Accepted):
                env = result.envelope
                if not self.dedup.first_time(env.device_id, env.seq):
                    duplicates += 1
                    continue
                lines.append(self.points.build(result))
                accepted.append(result)
            elif isinstance(result, DeadLetter):
                dead.append(result)
                lines.append(dead_letter_point(result))
        if lines:
            try:
                self.spool.append(lines)
            except Exception:
                for a in accepted:
                    self.dedup.forget(a.envelope.device_id, a.envelope.seq)
                raise
        self._publish_dead(dead)
        self._ack(batch)
        m = self.metrics
        m.messages_in.inc(len(batch))
        m.points_spooled.inc(len(lines))
        if duplicates:
            m.duplicates.inc(duplicates)
        self.processed += len(batch)
        for sink in self.sinks:
            try:
                sink.handle(accepted)
            except Exception:
                m.sink_errors.inc()
                log.exception("sink %s failed on a batch of %d", type(sink).__name__, len(accepted))

    def _classify(self, item: _Inbound) -> Accepted | DeadLetter | None:
        parts = self.validator.parse_topic(item.topic)
        if not isinstance(parts, str):
            if parts.channel is Channel.CMD:
                return None  # our own commands to devices
            if parts.channel is Channel.SNAP:
                problem = self.snapshots.save(parts, item.payload)
                if problem is None:
                    self.metrics.snapshots.inc()
                    return None
                return self.validator.reject("snapshot", problem, item.topic, item.payload, item.received_at)
        return self.validator.check(item.topic, item.payload, item.received_at)

    def _publish_dead(self, dead: list[DeadLetter]) -> None:
        if not dead or self._client is None:
            return
        topic = topics.dead_letter(self.cfg.mqtt.root)
        for dl in dead:
            self.metrics.invalid(dl.reason).inc()
            self._client.publish(topic, dl.model_dump_json(), qos=1)
            log.info("dead letter (%s) from %s: %s", dl.reason, dl.topic[:200], dl.detail[:200])

    def _ack(self, batch: list[_Inbound]) -> None:
        client = self._client
        if client is None:
            return
        generation = self._generation
        for item in batch:
            if item.qos > 0 and item.generation == generation:
                client.ack(item.mid, item.qos)
