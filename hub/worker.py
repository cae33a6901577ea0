"""One hub worker: MQTT shared subscription -> validate -> de-duplicate -> spool -> sinks -> ack.

A message is acknowledged (manual PUBACK) only after its point is durably in the spool and every sink has
it, so a crash at any moment loses nothing: the broker redelivers whatever was not acknowledged. What was
spooled but not yet acknowledged comes back as a duplicate with the same timestamp and tags, which InfluxDB
overwrites in place. A batch whose spool write or sink fails is held and retried, unacknowledged, and no new
batch starts meanwhile (docs/robustness.md); one message InfluxDB cannot store is a dead letter on its own.
"""

from __future__ import annotations

import contextlib
import logging
import math
import random
import select
import socket
import struct
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import repeat
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions
from prometheus_client import start_http_server

from commhub import topics
from commhub.config import Config
from commhub.mqtt import HUB_ACCOUNT, connect, make_client
from commhub.topics import Channel
from commhub.wire import DeadLetter, Envelope
from hub.ingest.dedup import Deduplicator
from hub.ingest.message import Accepted, Sink
from hub.ingest.mqttread import PacketReader
from hub.ingest.validate import Route, Validator, safe_topic
from hub.metrics import HubMetrics
from hub.store.drain import Drainer
from hub.store.influx import make_transport
from hub.store.lineproto import LineProtocolError
from hub.store.points import PointBuilder, dead_letter_point
from hub.store.snapshots import SnapshotStore
from hub.store.spool import Spool, SpoolError

log = logging.getLogger(__name__)

_PUBACK = struct.Struct("!BBH")
# After one select() wakes us, read up to this many packets before looking at the clock again.
_READS_PER_WAKEUP = 256
# Broker reconnects: full-jitter exponential backoff; a connection that lasted this long resets it.
_RECONNECT_INITIAL_S = 0.5
_RECONNECT_MAX_S = 30.0
_STABLE_S = 30.0
# A held batch (spool or sink failing) is retried with backoff up to this.
_HOLD_RETRY_MAX_S = 5.0
# CONNACK / DISCONNECT reason codes that mean "not you, not now": say so in words a person acts on.
_REFUSALS = {
    0x85: "client id {id} refused by the broker",
    0x86: "bad user name or password (mqtt.username/password)",
    0x87: "not authorized (mqtt.username/password, broker ACL)",
    0x8A: "banned by the broker",
    0x8E: "is another client connected with our client id {id}? Two kick each other off: each worker needs "
          "its own hub.worker_id",
}


@dataclass(slots=True)
class _Inbound:
    topic: str
    payload: bytes
    mid: int
    qos: int
    generation: int
    received_at: float


@dataclass(slots=True)
class _Held:
    """A batch that is not finished: it stays unacknowledged, and no new batch starts until it is."""

    items: list[_Inbound]
    accepted: list[Accepted] | None = None  # set once the batch is in the spool
    dead: list[DeadLetter] | None = None
    lines: int = 0
    duplicates: int = 0
    sinks_left: list[Sink] | None = None
    problem: str = ""  # "spool" or "sink" while held
    since: float = 0.0
    retry_at: float = 0.0
    delay: float = 0.0


def _unstorable(env: Envelope) -> str:
    """Name the field InfluxDB cannot store and the rule it breaks, quoting nothing from the payload."""
    values: list[tuple[str, Any]] = [("seq", env.seq)]
    for name, value in env.body.__dict__.items():
        if hasattr(value, "__dict__") and not isinstance(value, str | int | float | bool):
            values += [(f"body.{name}.{sub}", v) for sub, v in value.__dict__.items()]
        else:
            values.append((f"body.{name}", value))
    for name, value in values:
        if isinstance(value, float) and not math.isfinite(value):
            return f"{name}: not a finite number (InfluxDB stores finite floats only)"
        if isinstance(value, int) and not isinstance(value, bool) and not -(2**63) <= value < 2**63:
            return f"{name}: integer outside the 64-bit range InfluxDB stores"
    return "a value InfluxDB cannot store"


class Worker:
    """A hub worker; several can share one subscription group."""

    def __init__(self, cfg: Config, sinks: Sequence[Sink] = ()) -> None:
        self.cfg = cfg
        self.sinks = list(sinks)
        hub = cfg.hub
        self.metrics = HubMetrics(hub.worker_id)
        self.spool = Spool(hub.spool.dir / hub.worker_id, fsync=hub.spool.fsync, max_bytes=hub.spool.max_bytes,
                           alarm_fraction=hub.spool.alarm_fraction)
        self.drainer = Drainer(self.spool, lambda: make_transport(cfg.influx), hub.spool, self.metrics)
        self.validator = Validator(cfg.mqtt.root, cfg.community.device_index(), hub.worker_id,
                                   cfg.community.site.id, hub.discovery)
        self.snapshots = SnapshotStore(hub.snapshots_dir, hub.snapshot_max_bytes, hub.snapshots_max_total_bytes,
                                       hub.snapshots_alarm_fraction)
        self.dedup = Deduplicator(hub.dedup_window)
        self.points = PointBuilder()
        self._pending: list[_Inbound] = []
        self._pending_since = 0.0
        # Whether the pending batch's first message came within batch_gather_ms of the last batch (a steady
        # stream: gather), and when that batch was done (monotonic).
        self._streaming = False
        self._flushed_at = -math.inf
        self._held: _Held | None = None
        self._connected_at = 0.0
        self._refusal = ""
        self._stopping = threading.Event()
        self._retiring = threading.Event()
        self._left_group_at = 0.0
        self._last_message_at = 0.0
        self._generation = 0
        self._connected = threading.Event()
        self._client: paho.Client | None = None
        self._reader: PacketReader | None = None
        self._last_received = 0.0
        self._thread: threading.Thread | None = None
        self._http: Any = None

    # ---- lifecycle -------------------------------------------------------------------------------

    def start(self) -> None:
        """Open the spool, start writing to InfluxDB, then subscribe."""
        self.spool.open()
        self.snapshots.open()
        m = self.metrics
        m.gauge("commhub_spool_segments", "Spooled batches waiting for InfluxDB", lambda: self.spool.depth[0])
        m.gauge("commhub_spool_points", "Spooled points waiting for InfluxDB", lambda: self.spool.depth[1])
        m.gauge("commhub_spool_bytes", "Disk the spool occupies (allocated blocks)", lambda: self.spool.depth[2])
        m.gauge("commhub_spool_limit_bytes", "The spool's configured limit (0 = none)", lambda: self.spool.max_bytes)
        m.gauge("commhub_spool_alarm", "1 while the spool is above its alarm level", lambda: float(self.spool.alarm))
        m.gauge("commhub_spool_oldest_age_seconds", "Age of the oldest spooled batch", lambda: self.spool.oldest_age)
        m.gauge("commhub_mqtt_connected", "1 while connected to the broker", lambda: float(self._connected.is_set()))
        m.gauge("commhub_ingest_held", "1 while a batch is held unacknowledged and no new one is taken",
                lambda: float(self._held is not None and bool(self._held.problem)))
        m.gauge("commhub_spool_failing", "1 while the spool cannot store (disk full, I/O error, limit)",
                lambda: float(self._held is not None and self._held.problem == "spool"))
        m.gauge("commhub_sink_failing", "1 while a sink (the alert database) refuses a held batch",
                lambda: float(self._held is not None and self._held.problem == "sink"))
        m.gauge("commhub_snapshot_store_bytes", "Disk the stored snapshots occupy", lambda: self.snapshots.used_bytes)
        m.gauge("commhub_snapshot_store_alarm", "1 while the snapshot store is above its alarm level",
                lambda: float(self.snapshots.alarm))
        self.drainer.start()
        for sink in self.sinks:
            sink.start()
            register = getattr(sink, "register_metrics", None)
            if register is not None:
                register(m)
        mc = self.cfg.hub.metrics
        if mc.port:
            self._http = start_http_server(mc.port, mc.host, registry=m.registry)
        client = make_client(self.cfg.hub.worker_id, self.cfg.mqtt, manual_ack=True, account=HUB_ACCOUNT)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.on_subscribe = self._on_subscribe
        self._client = client
        connect(client, self.cfg.mqtt, clean_start=False, session_expiry_s=self.cfg.hub.session_expiry_s,
                receive_maximum=self.cfg.hub.receive_maximum, asynchronous=True)
        self._thread = threading.Thread(target=self._network_loop, name="hub-mqtt", daemon=True)
        self._thread.start()

    def wait_connected(self, timeout: float = 10.0) -> bool:
        """Block until subscribed to the broker."""
        return self._connected.wait(timeout)

    def retire(self, quiet_s: float = 2.0, timeout: float = 300.0) -> bool:
        """Leave the group for good: unsubscribe, drain what the broker still holds for us, end the session.

        mosquitto keeps handing a shared group's messages to offline members with a persistent session, so a
        worker that is simply switched off holds its share until the session expires. Returns False when the
        share was still arriving at the timeout (the session then stays, and nothing is lost).
        """
        self._retiring.set()
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                self._retiring.clear()
                return False
        return True

    def stop(self, flush_timeout: float = 10.0) -> None:
        """Process what has arrived, disconnect, write the spool out for up to flush_timeout, and stop."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout=60)
        for sink in self.sinks:
            sink.stop()
        self.drainer.stop(flush_timeout)
        if self._http is not None:
            server, thread = self._http
            server.shutdown()
            thread.join(timeout=5)

    # ---- the network loop ------------------------------------------------------------------------

    def _network_loop(self) -> None:
        """Our own paho loop: one thread reads, processes in batches and acks, with no hand-over queue.

        paho's loop_forever() selects once per packet and loop_start() wakes a socketpair for every ack;
        reading all pending packets after one select, and acking from the same thread, avoids both.
        """
        client = self._client
        assert client is not None
        delay = _RECONNECT_INITIAL_S
        first = True
        while not self._stopping.is_set():
            if self._retiring.is_set() and self._left_group(client):
                break
            sock = client.socket()
            if sock is None:
                self._flush()  # acks would be for a dead connection: the broker redelivers those messages
                stable = bool(self._connected_at) and time.monotonic() - self._connected_at >= _STABLE_S
                if stable:
                    delay = _RECONNECT_INITIAL_S
                    self._refusal = ""  # a new streak of trouble is worth a new log line
                self._connected_at = 0.0
                # After a long healthy connection the first try is at once (a broker restart discards what is
                # published until we re-subscribe); every later failure waits.
                if not first and not stable:
                    # Every failure waits, refused or not: without it a broker that refuses us (or a twin
                    # worker with our id) sees thousands of CONNECTs a second. Full jitter spreads workers.
                    self._stopping.wait(random.uniform(delay / 2, delay))
                    delay = min(delay * 2, _RECONNECT_MAX_S)
                first = False
                if self._stopping.is_set():
                    break
                try:
                    client.reconnect()
                except OSError as e:
                    log.warning("cannot reach the broker at %s:%d (%s); retrying with backoff (now %.1fs)",
                                self.cfg.mqtt.host, self.cfg.mqtt.port, e, delay)
                continue
            first = False
            timeout = 1.0
            if self._pending:
                timeout = max(0.0, self._pending_since + self._limit() - time.monotonic())
            if self._held is not None:
                timeout = min(1.0, max(0.0, self._held.retry_at - time.monotonic()))
            pending = getattr(sock, "pending", None)
            if pending is not None and pending():
                readable = [sock]  # TLS: bytes decrypted inside the SSL object never wake select()
            else:
                try:
                    readable, _, _ = select.select([sock], [sock] if client.want_write() else [], [], timeout)
                except (OSError, ValueError):
                    readable = []
            drained = not readable
            reader = self._reader_for(client, sock) if readable else None
            if reader is not None:
                # Our own buffered reader (hub.ingest.mqttread): one recv() for many packets.
                batch_max = self.cfg.hub.batch_max
                before = len(self._pending)
                while not drained and len(self._pending) < batch_max and client.socket() is sock:
                    drained = reader.read()
                if len(self._pending) != before:
                    self._last_message_at = time.monotonic()
            elif readable:
                for _ in range(_READS_PER_WAKEUP):
                    before = len(self._pending)
                    # A read that brought no message found no data (or a non-PUBLISH packet): back to select.
                    # On an error paho closes the socket, and the next turn reconnects.
                    if client.loop_read() != paho.MQTT_ERR_SUCCESS or len(self._pending) == before:
                        drained = True
                        break
                    if len(self._pending) >= self.cfg.hub.batch_max:
                        break
            # Flush as soon as the socket is drained, so a lone alarm waits for nothing; in a steady stream, once
            # the batch's first message waited batch_gather_ms (see _ready).
            if self._held is not None or self._ready(drained, time.monotonic()):
                self._flush()
            if client.socket() is not None and client.want_write():
                client.loop_write()
            if client.socket() is not None:
                client.loop_misc()
        self._flush(final=True)
        if client.socket() is not None:
            props = None
            if self._retiring.is_set():
                props = Properties(PacketTypes.DISCONNECT)
                props.SessionExpiryInterval = 0  # the broker forgets us: no share is kept for a retired worker
            client.disconnect(properties=props)
            for _ in range(50):  # write the last acks and the DISCONNECT
                if client.socket() is None or not client.want_write():
                    break
                client.loop_write()

    def _limit(self) -> float:
        """How long the pending batch's first message may wait: batch_gather_ms in a stream, else batch_wait_ms."""
        hub = self.cfg.hub
        return min(hub.batch_gather_ms, hub.batch_wait_ms) / 1000 if self._streaming else hub.batch_wait_ms / 1000

    def _ready(self, drained: bool, now: float) -> bool:
        """Whether the pending batch ends now (drained: the socket has nothing more to read)."""
        # A live feed at 2,000 msg/s made batches of ~19 messages when every drained socket ended one, and each
        # batch pays a fixed few milliseconds of CPU (spool file, fsync, the rules' transaction): 175 µs a
        # message (docs/performance.md, round 5). In a stream the batch gathers for batch_gather_ms; a message
        # after a quiet spell (a lone alarm) is processed as soon as the socket is drained.
        if not self._pending:
            return False
        age = now - self._pending_since
        if len(self._pending) >= self.cfg.hub.batch_max or age >= self.cfg.hub.batch_wait_ms / 1000:
            return True
        return drained and (not self._streaming or age >= self._limit())

    def _left_group(self, client: paho.Client) -> bool:
        """Unsubscribe once; True when nothing has arrived for a while since the broker confirmed it."""
        if not self._left_group_at:
            if client.socket() is None or not self._connected.is_set():
                return False
            client.unsubscribe([self._filter(), self._legacy_filter()])
            self._left_group_at = time.monotonic()
            log.info("retiring: left the group, draining what the broker still holds for %s", self.cfg.hub.worker_id)
            return False
        quiet = time.monotonic() - max(self._left_group_at, self._last_message_at)
        return quiet >= 2.0 and not self._pending and self._held is None

    def _filter(self) -> str:
        # This community's site only: on a broker several communities share (a district), every other site's
        # traffic is another hub's, not a dead letter here.
        site = topics.site_filter(self.cfg.mqtt.root, self.cfg.community.site.id)
        return topics.shared(self.cfg.hub.share_group, site)

    def _legacy_filter(self) -> str:
        """Every site under the root: what a hub before the per-site filter subscribed to in its session."""
        return topics.shared(self.cfg.hub.share_group, topics.devices_filter(self.cfg.mqtt.root))

    # ---- MQTT callbacks: hand messages on, nothing else ------------------------------------------

    def _on_connect(self, client: paho.Client, _u: Any, flags: Any, reason: Any, _p: Any) -> None:
        if reason.is_failure:
            self._refused(f"broker refused the connection: {reason}", reason.value)
            return
        self._connected_at = time.monotonic()
        # Message ids restart per connection: an ack for an old one must never be sent on the new one.
        self._generation += 1
        group = self.cfg.hub.share_group
        if not self._retiring.is_set():
            # No retained copies: the persistent session already queues the originals, and mosquitto would
            # otherwise resend every device's retained state on each (re)subscribe, despite MQTT 5 §4.8.2.
            opts = SubscribeOptions(qos=1, retainHandling=SubscribeOptions.RETAIN_DO_NOT_SEND)
            client.subscribe(self._filter(), options=opts)
            if getattr(flags, "session_present", False):
                # A session an older hub left may still hold the all-sites subscription: it would go on
                # delivering every community's traffic on the broker. Unsubscribing one that is not there is
                # harmless (the broker answers "no subscription existed").
                client.unsubscribe(self._legacy_filter())
        else:
            self._connected.set()
        log.info("connected to %s:%d, subscribed as %s", self.cfg.mqtt.host, self.cfg.mqtt.port, group)

    def _on_subscribe(self, _c: Any, _u: Any, _mid: int, reasons: list[Any], _p: Any) -> None:
        # Connected means subscribed: until the SUBACK the broker discards what devices publish for us.
        failed = [r for r in reasons if r.is_failure]
        if failed:
            log.error("the broker refused our subscription to %s: %s", self._filter(), failed[0])
            return
        self._connected.set()

    def _on_disconnect(self, _c: Any, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        self._connected.clear()
        if not reason.is_failure:
            return
        lasted = time.monotonic() - self._connected_at if self._connected_at else 0.0
        if reason.value in _REFUSALS:
            self._refused(f"disconnected by the broker: {reason}", reason.value)
        elif self._connected_at and lasted < _STABLE_S:
            # mosquitto 2.0 closes a taken-over session without a DISCONNECT 0x8E, so a short life is the clue.
            self._refused(f"connection lost soon after the broker accepted it ({reason})", 0x8E)
        else:
            log.warning("disconnected from the broker (%s); reconnecting with backoff", reason)

    def _refused(self, what: str, code: int) -> None:
        """Say once per streak, in words, why the broker will not have us; the loop keeps backing off."""
        hint = _REFUSALS.get(code, "").format(id=self.cfg.hub.worker_id)
        line = f"{what}{': ' + hint if hint else ''}; retrying with backoff"
        if line != self._refusal:
            log.error("%s", line)
            self._refusal = line

    def _reader_for(self, client: paho.Client, sock: Any) -> PacketReader | None:
        """This connection's buffered reader; None when off, for TLS, or if paho already began reading this socket."""
        r = self._reader
        if r is not None and r.sock is sock:
            return r
        self._reader = None
        if not self.cfg.hub.buffered_reader or type(sock) is not socket.socket or client._in_packet["command"]:
            return None  # an SSLSocket decrypts inside itself; a half-read packet is paho's to finish
        self._reader = PacketReader(client, sock, self._on_publish)
        return self._reader

    def _on_publish(self, topic: str, payload: bytes, mid: int, qos: int) -> None:
        # One received PUBLISH into the pending batch: the buffered reader's hand-over, and paho's (_on_message).
        pending = self._pending
        if not pending:
            self._pending_since = now = time.monotonic()
            self._streaming = now - self._flushed_at < self.cfg.hub.batch_gather_ms / 1000
        # Distinct receive times, 2 µs apart at least (a float and datetime round to the nearest µs): a dead
        # letter is a point stamped with it (series: reason, worker), and two in one microsecond would overwrite
        # each other in InfluxDB; the buffered reader takes many messages within a microsecond or two.
        t = time.time()
        if t < self._last_received + 2e-6:
            t = self._last_received + 2e-6
        self._last_received = t
        pending.append(_Inbound(topic, payload, mid, qos, self._generation, t))

    def _on_message(self, _c: Any, _u: Any, msg: paho.MQTTMessage) -> None:
        self._last_message_at = time.monotonic()
        # paho's msg.topic raises for a topic that is not UTF-8 (MQTT forbids one; a broker should refuse it),
        # and the error would end this loop. Replacement characters, which no topic level admits, make it a
        # dead letter that is acknowledged like any other, instead of a redelivery every reconnect.
        topic = msg._topic.decode("utf-8", "replace")
        self._on_publish(topic, bytes(msg.payload), msg.mid, msg.qos)

    # ---- processing ---------------------------------------------------------------------------------

    def process_batch(self, messages: Sequence[tuple[str, bytes]], received_at: float | None = None) -> bool:
        """Take (topic, payload) pairs through validation, spool and sinks as one batch; False if it is held."""
        # For in-process use (benchmarks): QoS 0 items, so nothing is acknowledged to a broker.
        now = time.time() if received_at is None else received_at
        return self._advance(_Held([_Inbound(t, p, 0, 0, self._generation, now) for t, p in messages]))

    def _flush(self, final: bool = False) -> None:
        """Finish a held batch first (final: retry it now); only then take new messages, batch_max at a time."""
        if self._held is not None:
            if not final and time.monotonic() < self._held.retry_at:
                return
            if not self._advance(self._held):
                return
        batch_max = self.cfg.hub.batch_max
        while self._pending:
            batch, self._pending = self._pending[:batch_max], self._pending[batch_max:]
            if not self._advance(_Held(batch)):
                return
            self._flushed_at = time.monotonic()

    def _advance(self, held: _Held) -> bool:
        """Take a batch as far as it goes: spool, sinks, ack. False (and held) if a stage failed."""
        now = time.monotonic()
        stage = "spool"
        try:
            if held.accepted is None:
                self._store(held)
            stage = "sink"
            self._run_sinks(held)
        except Exception as e:
            # Nothing in the batch is acknowledged, and on a live connection nothing would redeliver it:
            # hold it here, take no new messages (the broker's receive maximum is the bound), and retry.
            if not held.problem:
                held.since = now
                held.delay = 0.1
                if stage == "spool":
                    log.error("cannot spool a batch of %d (%s): not taking new messages until the spool works "
                              "again", len(held.items), e)
                else:
                    log.error("a sink cannot take a batch of %d (%s: %s): holding it unacknowledged until it "
                              "can", len(held.items), type(e).__name__, str(e).splitlines()[0][:300] if str(e) else "")
            elif held.problem != stage:
                log.error("held batch of %d now waits for the %s (%s)", len(held.items), stage, type(e).__name__)
            held.problem = stage
            held.retry_at = now + random.uniform(held.delay / 2, held.delay)
            held.delay = min(held.delay * 2, _HOLD_RETRY_MAX_S)
            self._held = held
            return False
        if held.problem:
            log.warning("the %s works again after %.1fs: held batch of %d done, taking messages again",
                        held.problem, now - held.since, len(held.items))
        self._held = None
        self._publish_dead(held.dead or [])
        self._ack(held.items)
        m = self.metrics
        m.messages_in.inc(len(held.items))
        m.points_spooled.inc(held.lines)
        if held.duplicates:
            m.duplicates.inc(held.duplicates)
        return True

    def _store(self, held: _Held) -> None:
        """Validate, de-duplicate and spool a batch; one bad message costs only itself."""
        lines: list[str] = []
        accepted: list[Accepted] = []
        dead: list[DeadLetter] = []
        duplicates = 0
        # Bound once a batch: these run for every message.
        classify, first_time, build = self._classify, self.dedup.first_time, self.points.build
        try:
            for item in held.items:
                try:
                    result = classify(item)
                except OSError:
                    raise  # the disk, not the message: hold the batch
                except Exception as e:
                    # One poison message must not block its batch forever (it would be redelivered again and again).
                    log.exception("unexpected error on a message from %s", safe_topic(item.topic))
                    result = self.validator.reject("schema", f"unexpected {type(e).__name__}", item.topic,
                                                   item.payload, item.received_at)
                if isinstance(result, Accepted):
                    env = result.envelope
                    if not first_time(env.device_id, env.seq, env.body.type == "birth"):
                        duplicates += 1
                        continue
                    try:
                        lines.append(build(result))
                    except Exception as e:
                        # Valid by the schema yet not storable (1e999, 2**70...): this message only, and its
                        # seq is not kept as seen, so a corrected resend is not taken for a duplicate.
                        self.dedup.forget(env.device_id, env.seq)
                        self.metrics.unstorable.inc()
                        why = _unstorable(env) if isinstance(e, LineProtocolError) else f"unexpected {type(e).__name__}"
                        result = self.validator.reject("unstorable", why, item.topic, item.payload,
                                                       item.received_at)
                    else:
                        accepted.append(result)
                        continue
                if isinstance(result, DeadLetter):
                    dead.append(result)
                    lines.append(dead_letter_point(result))
            if lines:
                self.spool.append(lines)
        except BaseException as e:
            # Not stored: forget the seqs, so the retry (or a redelivery) is not dropped as a duplicate.
            for a in accepted:
                self.dedup.forget(a.envelope.device_id, a.envelope.seq)
            if isinstance(e, SpoolError | OSError):
                self.metrics.spool_errors.inc()
            raise
        held.accepted, held.dead, held.lines, held.duplicates = accepted, dead, len(lines), duplicates
        held.sinks_left = list(self.sinks)

    def _run_sinks(self, held: _Held) -> None:
        """Hand the batch to each sink that does not have it yet; raises while one refuses."""
        # Sinks run before the ack: a crash in between makes the broker redeliver, so the rules see every
        # message at least once (alert identity absorbs the repeat). A sink that raises holds the batch
        # unacknowledged; storage goes on (the points are already spooled) and is not repeated.
        left = held.sinks_left or []
        while left:
            try:
                left[0].handle(held.accepted or [])
            except Exception:
                self.metrics.sink_errors.inc()
                raise
            left.pop(0)

    def _classify(self, item: _Inbound) -> Accepted | DeadLetter | None:
        route = self.validator.route(item.topic)
        if type(route) is Route:
            channel = route.parts.channel
            if channel is Channel.CMD:
                return None  # our own commands to devices
            if channel is Channel.SNAP:
                problem = self.snapshots.save(route.parts, item.payload)
                if problem is None:
                    self.metrics.snapshots.inc()
                    return None
                return self.validator.reject("snapshot", problem, item.topic, item.payload, item.received_at)
        return self.validator.check(item.topic, item.payload, item.received_at, route)

    def _publish_dead(self, dead: list[DeadLetter]) -> None:
        if not dead or self._client is None:
            return
        topic = topics.dead_letter(self.cfg.mqtt.root)
        for dl in dead:
            self.metrics.invalid(dl.reason).inc()
            self._client.publish(topic, dl.model_dump_json(), qos=1)
            log.info("dead letter (%s) from %s: %s", dl.reason, safe_topic(dl.topic), dl.detail[:200])

    def _ack(self, batch: list[_Inbound]) -> None:
        client = self._client
        if client is None:
            return
        generation = self._generation
        mids = [item.mid for item in batch if item.qos == 1 and item.generation == generation]
        sock = client.socket()
        if mids and isinstance(sock, socket.socket) and not client.want_write():
            # paho sends each PUBACK with its own send(); with its queue empty (this is the only thread
            # using the client) we may write them all at once. A QoS 1 ack is a bare PUBACK in paho too.
            data = b"".join(map(_PUBACK.pack, repeat(0x40), repeat(2), mids))  # C-level loop: no frame per ack
            try:
                sock.settimeout(5.0)
                sock.sendall(data)
                mids = []
            except OSError:
                # Part of a packet may be on the wire: drop the connection; the broker redelivers what we
                # did not ack, and dedup drops the repeats.
                log.warning("acknowledgements failed; reconnecting")
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                return
            finally:
                with contextlib.suppress(OSError):
                    sock.setblocking(False)
        for mid in mids:
            client.ack(mid, 1)
        for item in batch:
            if item.qos == 2 and item.generation == generation:
                client.ack(item.mid, 2)
