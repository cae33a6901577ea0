"""The base agent every edge agent and simulator publishes through.

Delivery: publish() numbers the message (per-device `seq`, persisted), puts it on an in-memory queue and
returns. A pump thread writes queued messages to the SQLite spool in group commits, then sends them at
QoS 1 in spool order; a message leaves the spool only when the broker has acknowledged it. After a
reconnect, or at start-up, every unacknowledged message is sent again, oldest first, so nothing is lost
and the order is kept (the hub removes the duplicates by (device_id, seq)).

Acknowledged means delivered: a PUBACK with 0x10 (No matching subscribers) or any failure code (>= 0x80)
is not. mosquitto answers 0x10 and discards the message while the hub's shared subscription is missing,
e.g. right after a broker restart (it does not restore `$share/` subscriptions from persistence). Then
the agent holds: the message stays in the spool, nothing new is sent, and the oldest spooled message is
sent alone as a probe after a growing delay; the first probe that is delivered ends the hold and the rest
of the spool follows in order.

Durability window: a message is in the spool file before it is first sent to the broker, and at most
`commit_interval_ms` plus one commit after publish() returned (on an idle agent: one commit). With
`spool_fsync` that commit is fsynced, so the window also covers a power cut; a crash inside the window
loses only messages nobody has seen, and their seqs are then reused, so the wire never shows a gap.

Will and state: MQTT allows one will per connection and an agent serves many devices over one connection.
So the will belongs to the agent itself: a pseudo-device of kind `agent` whose retained `state` topic the
will sets to offline with the session number. Each device's birth names its agent, so the hub marks the
devices of an agent offline when the agent's will arrives (Sparkplug's NDEATH works the same way). Devices
also get a retained per-device `state` (online at connect, offline on a clean stop), and on stop the agent
publishes its own offline state; if that cannot be acknowledged it disconnects with reason 0x04 so the
broker sends the will instead.

State and birth messages belong to one session: unsent ones of an older session are discarded on the next
connect instead of replayed (a stale "online" must not overwrite a newer state).
"""

from __future__ import annotations

import logging
import re
import sqlite3
import threading
import time
from collections import deque
from dataclasses import dataclass
from datetime import datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from pydantic import TypeAdapter

from commhub import topics
from commhub.agent_config import AgentSettings
from commhub.config import MqttConfig
from commhub.wire import (
    BODY_TYPES,
    KIND_BODIES,
    Birth,
    DeviceKind,
    DeviceState,
    Envelope,
    Heartbeat,
    Ident,
    now_utc,
)
from edge_agents.base.link import Link
from edge_agents.base.spool import Row, Spool
from edge_agents.base.statedir import StateDir, StateDirError

log = logging.getLogger(__name__)

_AGENT_NAME = re.compile(r"^[a-z0-9][a-z0-9_]{0,47}$")
_MEM_CAP = 20_000  # rows kept in memory for sending before the pump falls back to reading the spool
_OWNED_BODIES = frozenset(("birth", "state"))
_NO_SUBSCRIBERS = 0x10
_HOLD_MAX_DELAY_S = 5.0  # longest wait between probes while the broker has no subscriber for us
_IDENT: TypeAdapter[str] = TypeAdapter(Ident)


def delivered(reason: int, hold_on_no_subscribers: bool = True) -> bool:
    """Whether a PUBACK reason code means the broker took the message for a subscriber."""
    return reason < 0x80 and (reason != _NO_SUBSCRIBERS or not hold_on_no_subscribers)


def _version() -> str:
    try:
        return metadata.version("commhub")[:32]
    except metadata.PackageNotFoundError:
        return "0.0.0"


@dataclass(frozen=True, slots=True)
class AgentStats:
    """Counters since start(); `spooled` is the number of unacknowledged messages on disk now."""

    published: int
    persisted: int
    spooled: int
    spooled_bytes: int
    sent: int
    acked: int
    dropped: int
    rejected: int  # PUBACKs that did not deliver (0x10 no subscriber, or >= 0x80): kept and sent again
    holding: bool  # the broker has no subscriber for us: messages wait in the spool, one probe at a time
    superseded: int
    connects: int
    session: int
    connected: bool


@dataclass(slots=True)
class _Device:
    kind: DeviceKind
    interval_s: float
    topics: dict[str, str]
    last_publish: float = 0.0
    reachable: bool = True


class BaseAgent:
    """MQTT v5 session, will and births, on-disk spool, reconnect, and per-device numbering."""

    def __init__(self, mqtt: MqttConfig, site: str, agent_name: str, state_dir: Path,
                 settings: AgentSettings) -> None:
        self.mqtt = mqtt
        self.site = site
        self.agent_name = agent_name
        self.state_dir = Path(state_dir)
        self.settings = settings
        self._devices: dict[str, _Device] = {}
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._work = threading.Event()
        self._pump_stop = threading.Event()
        self._queue: list[Row] = []
        self._dirty_seqs: dict[str, int] = {}
        self._acks: deque[tuple[int, int, int]] = deque()
        self._holding = False
        self._seq: dict[str, int] = {}
        self._next_id = 1
        self._persisted_upto = 0
        self._outstanding = 0
        self._running = False
        self._failure = ""
        self._births_session = 0
        self._started_at = 0.0
        self._counts = dict.fromkeys(("published", "persisted", "sent", "acked", "dropped", "rejected",
                                      "superseded"), 0)
        self._statedir: StateDir | None = None
        self._spool: Spool | None = None
        self._link: Link | None = None
        self._pump: threading.Thread | None = None

    # ---- set-up --------------------------------------------------------------------------------

    def add_device(self, device_id: str, kind: DeviceKind, interval_s: float = 60.0) -> None:
        """Register a device this agent publishes for (before or after start())."""
        kind = DeviceKind(kind)
        _IDENT.validate_python(device_id)  # the topic level and the envelope's device_id
        if kind is DeviceKind.AGENT:
            raise ValueError("kind 'agent' is reserved for the agent itself")
        if not interval_s > 0:
            raise ValueError(f"interval_s must be > 0, got {interval_s}")
        dev = self._make_device(device_id, kind, interval_s)
        with self._lock:
            if device_id in self._devices or device_id == self.agent_name:
                raise ValueError(f"device {device_id!r} is already registered")
            self._devices[device_id] = dev
            if self._running:
                self._seq.setdefault(device_id, self._initial_seq())
                if self._births_session:
                    self._enqueue_birth(device_id, dev, self._births_session)
        if self._running:
            self._work.set()

    def set_reachable(self, device_id: str, reachable: bool) -> None:
        """Mark a device's source (Modbus server, controller) reachable or not: no heartbeats while it is not."""
        dev = self._devices.get(device_id)
        if dev is None or dev.kind is DeviceKind.AGENT:
            raise ValueError(f"unknown device {device_id!r}")
        # Heartbeats vouch for the device, not for the agent: silence lets the hub's liveness timer fire.
        dev.reachable = reachable

    def _make_device(self, device_id: str, kind: DeviceKind, interval_s: float) -> _Device:
        root = self.mqtt.root
        built = {ch: topics.device(root, self.site, kind.value, device_id, ch)
                 for ch in ("evt", "tele", "state", "birth")}
        return _Device(kind, interval_s, built)

    def start(self) -> None:
        """Open the spool, start the pump and begin connecting; returns without waiting for the broker."""
        if not _AGENT_NAME.match(self.agent_name):
            raise ValueError(f"agent name {self.agent_name!r} must match {_AGENT_NAME.pattern}")
        with self._lock:
            if self._running:
                raise RuntimeError("agent already started")
        self._devices[self.agent_name] = self._make_device(self.agent_name, DeviceKind.AGENT, 60.0)
        statedir = StateDir(self.state_dir)
        statedir.acquire()
        spool = Spool(statedir.spool_path, fsync=self.settings.spool_fsync)
        try:
            spool.open()
        except sqlite3.Error as e:
            statedir.release()
            raise StateDirError(f"{statedir.spool_path}: cannot open the spool ({e}); move the file aside to "
                                "start with an empty one (its unsent messages would be lost)") from None
        except Exception:
            statedir.release()
            raise
        stored = spool.load_seqs()
        with self._lock:
            for device_id in self._devices:
                self._seq[device_id] = stored.get(device_id, self._initial_seq())
            self._next_id = spool.next_id
            self._persisted_upto = spool.next_id - 1
            self._outstanding = spool.count
            self._running = True
        self._statedir, self._spool = statedir, spool
        self._started_at = time.monotonic()
        client_id = f"agent-{self.site}-{self.agent_name}"
        self._link = Link(self.mqtt, client_id, self.settings, statedir, self._will, self._work.set, self._on_ack)
        self._pump_stop.clear()
        self._pump = threading.Thread(target=self._pump_main, name=f"pump-{self.agent_name}", daemon=True)
        self._pump.start()
        self._link.start()

    @staticmethod
    def _initial_seq() -> int:
        # A device with no stored seq (first run, or a wiped state dir) starts at the clock in microseconds,
        # so a wiped state dir can never reuse numbers the hub has already seen and de-duplicated.
        return time.time_ns() // 1000

    # ---- publishing ----------------------------------------------------------------------------

    def publish(self, device_id: str, body: Any, *, ts: datetime | None = None) -> int:
        """Queue one wire body for a device; returns its seq. Never blocks on the network."""
        dev = self._devices.get(device_id)
        if dev is None or dev.kind is DeviceKind.AGENT:
            raise ValueError(f"unknown device {device_id!r}: add_device() it first")
        btype = getattr(body, "type", None)
        if not isinstance(btype, str) or BODY_TYPES.get(btype) is not type(body):
            raise TypeError(f"body must be a commhub.wire body model, got {type(body).__name__}")
        if btype not in KIND_BODIES[dev.kind]:
            raise ValueError(f"a {dev.kind.value} may not send {btype!r}")
        if btype in _OWNED_BODIES:
            raise ValueError(f"{btype!r} messages are sent by the agent itself")
        if ts is not None and ts.tzinfo is None:
            raise ValueError("ts must be timezone-aware")
        return self._enqueue(device_id, dev, body, ts=ts)

    def _enqueue(self, device_id: str, dev: _Device, body: Any, *, ts: datetime | None = None,
                 session: int = 0, retain: bool = False) -> int:
        channel = body.channel
        topic = dev.topics[channel]
        link = self._link
        # Historical: produced while there was no broker connection (also before the first CONNACK, so callers
        # that want their first messages live call wait_connected() after start()).
        historical = session == 0 and not (link is not None and link.up)
        when = ts or now_utc()
        with self._lock:
            if not self._running:
                raise RuntimeError(self._failure or "agent is not running: call start() first (or it was stopped)")
            seq = self._seq[device_id] + 1
            # Built before the seq is taken: an envelope that fails validation must not leave a gap.
            try:
                payload = Envelope(device_id=device_id, ts=when, seq=seq, historical=historical,
                                   body=body).to_json()
            except (ValueError, ArithmeticError) as e:  # ArithmeticError: a ts that overflows in UTC
                raise ValueError(f"invalid message for {device_id}: {str(e).splitlines()[0]}") from e
            self._seq[device_id] = seq
            self._queue.append(Row(self._next_id, topic, payload, retain, session, time.time()))
            self._next_id += 1
            self._dirty_seqs[device_id] = seq
            self._counts["published"] += 1
            self._outstanding += 1
            dev.last_publish = time.monotonic()
        self._work.set()
        return seq

    def publish_snapshot(self, device_id: str, snapshot_id: str, jpeg: bytes) -> None:
        """Queue a JPEG snapshot on its own topic (referenced from an event by snapshot_id)."""
        dev = self._devices.get(device_id)
        if dev is None or dev.kind is DeviceKind.AGENT:
            raise ValueError(f"unknown device {device_id!r}: add_device() it first")
        if not isinstance(jpeg, bytes | bytearray) or not jpeg:
            raise ValueError("jpeg must be non-empty bytes")
        topic = topics.snapshot(self.mqtt.root, self.site, dev.kind.value, device_id, snapshot_id)
        with self._lock:
            if not self._running:
                raise RuntimeError("agent is not running: call start() first (or it was stopped)")
            self._queue.append(Row(self._next_id, topic, bytes(jpeg), False, 0, time.time()))
            self._next_id += 1
            self._counts["published"] += 1
            self._outstanding += 1
        self._work.set()

    # ---- waiting -------------------------------------------------------------------------------

    def flush(self, timeout: float) -> bool:
        """Wait until every message so far is acknowledged by the broker (or dropped); False on timeout."""
        deadline = time.monotonic() + timeout
        self._work.set()
        with self._cond:
            while self._outstanding > 0:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
        return True

    def sync(self, timeout: float) -> bool:
        """Wait until every message so far is in the spool file; False on timeout."""
        deadline = time.monotonic() + timeout
        self._work.set()
        with self._cond:
            target = self._next_id - 1
            while self._persisted_upto < target:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
        return True

    def wait_connected(self, timeout: float) -> bool:
        """Wait until the broker connection is up; False on timeout."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.connected:
                return True
            time.sleep(0.01)
        return self.connected

    @property
    def connected(self) -> bool:
        """Whether the broker connection is up now."""
        return self._link is not None and self._link.up

    @property
    def stats(self) -> AgentStats:
        """A snapshot of the counters."""
        link, spool = self._link, self._spool
        with self._lock:
            c = dict(self._counts)
        return AgentStats(
            published=c["published"], persisted=c["persisted"],
            spooled=spool.count if spool else 0, spooled_bytes=spool.bytes if spool else 0,
            sent=c["sent"], acked=c["acked"], dropped=c["dropped"], rejected=c["rejected"],
            superseded=c["superseded"], holding=self._holding, connects=link.connects if link else 0,
            session=link.session if link else 0, connected=bool(link and link.up))

    def seq(self, device_id: str) -> int:
        """The last seq given to a device."""
        with self._lock:
            return self._seq[device_id]

    # ---- stopping ------------------------------------------------------------------------------

    def stop(self) -> None:
        """Publish offline states, wait for acknowledgements, persist the rest and disconnect; the spool stays."""
        with self._lock:
            if not self._running:
                return
            session = self._births_session
            link_up = self._link is not None and self._link.up
        if link_up and session:
            for device_id, dev in list(self._devices.items()):
                # clean=True announces a planned stop, so the hub marks the devices offline without alerting.
                self._enqueue(device_id, dev, DeviceState(status="offline", session=session, clean=True),
                              session=session, retain=True)
        delivered = self.flush(self.settings.stop_timeout_s)
        self._shut(send_will=not delivered)

    def kill(self) -> None:
        """What SIGKILL leaves (scenario crashes): no announcement and no flush; the broker publishes the will
        (MQTT 5 "disconnect with will message"), and the spool keeps what was unsent, as on disk."""
        self._shut(send_will=True)

    def _shut(self, send_will: bool) -> None:
        with self._lock:
            self._running = False
        self._pump_stop.set()
        self._work.set()
        if self._pump is not None:
            self._pump.join()
        if self._link is not None:
            self._link.stop(send_will=send_will)
        if self._spool is not None:
            left = self._spool.count
            self._spool.close()
            if left:
                log.info("%d messages stay in the spool for the next start", left)
        if self._statedir is not None:
            self._statedir.release()
        self._devices.pop(self.agent_name, None)

    # ---- callbacks and the pump ----------------------------------------------------------------

    def _will(self, session: int) -> tuple[str, bytes]:
        dev = self._devices[self.agent_name]
        with self._lock:
            seq = self._seq[self.agent_name] + 1
            self._seq[self.agent_name] = seq
            self._dirty_seqs[self.agent_name] = seq
        env = Envelope(device_id=self.agent_name, ts=now_utc(), seq=seq,
                       body=DeviceState(status="offline", session=session))
        return dev.topics["state"], env.to_json()

    def _on_ack(self, generation: int, mid: int, reason: int) -> None:
        # Runs on the MQTT thread inside paho's locks: only hand over (deque.append is thread-safe).
        self._acks.append((generation, mid, reason))
        self._work.set()

    def _enqueue_birth(self, device_id: str, dev: _Device, session: int) -> None:
        # Called with self._lock held (Envelope building and seq assignment stay in queue order).
        for body, retain in ((Birth(session=session, agent=self.agent_name, version=_version(),
                                    interval_s=min(dev.interval_s, 86400.0)), False),
                             (DeviceState(status="online", session=session), True)):
            seq = self._seq[device_id] + 1
            self._seq[device_id] = seq
            payload = Envelope(device_id=device_id, ts=now_utc(), seq=seq, body=body).to_json()
            self._queue.append(Row(self._next_id, dev.topics[body.channel], payload, retain, session, time.time()))
            self._next_id += 1
            self._dirty_seqs[device_id] = seq
            self._counts["published"] += 1
            self._outstanding += 1
        dev.last_publish = time.monotonic()

    def _pump_main(self) -> None:
        try:
            _Pump(self).run()
        except BaseException as e:
            # Without the pump nothing reaches disk or broker: make publish() fail loudly from now on.
            with self._lock:
                self._failure = f"agent pump failed: {e!r}"
                self._running = False
            log.exception("agent pump failed; what was committed stays in the spool")
            raise


class _Pump:
    """The one thread that owns the spool: commit, send in spool order, account acknowledgements."""

    def __init__(self, agent: BaseAgent) -> None:
        assert agent._spool is not None and agent._link is not None
        self.a = agent
        self.spool = agent._spool
        self.link = agent._link
        self.inflight: dict[int, tuple[int, int]] = {}  # mid -> (row id, size)
        self.mem: deque[Row] = deque()  # committed, unsent rows right after `cursor`, when not behind
        self.behind = True  # some unsent rows are only on disk
        self.cursor = 0  # last row id handed to the current connection
        self.generation = 0
        self.carry_rows: list[Row] = []
        self.carry_acked: list[tuple[int, int]] = []
        self.last_commit = 0.0
        self.last_trim = 0.0
        self.last_beat = 0.0
        self.hold_since = 0.0  # > 0: holding (see the module docstring)
        self.hold_delay = 0.0
        self.probe_at = 0.0
        self.hold_reason = 0
        self.rewind = False  # some sent row was not delivered: send again from the oldest spooled row

    def run(self) -> None:
        a = self.a
        interval = a.settings.commit_interval_ms / 1000.0
        failures = 0
        while True:
            stopping = a._pump_stop.is_set()
            if not stopping:
                a._work.wait(0.25)
                a._work.clear()
                # Group commit: give producers the rest of the interval to fill the batch.
                pause = self.last_commit + interval - time.monotonic()
                if pause > 0 and not a._pump_stop.is_set():
                    time.sleep(pause)
            self._step()
            if stopping:
                if self.carry_rows:
                    failures += 1
                    if failures >= 10:
                        log.error("could not write %d messages to the spool while stopping: they are lost",
                                  len(self.carry_rows))
                        return
                    continue
                with a._lock:
                    if not a._queue:
                        return

    def _step(self) -> None:
        a = self.a
        with a._lock:
            rows, a._queue = a._queue, []
            seqs, a._dirty_seqs = a._dirty_seqs, {}
        rows = self.carry_rows + rows if self.carry_rows else rows
        acked = self.carry_acked
        rejected = 0
        while a._acks:
            generation, mid, reason = a._acks.popleft()
            if generation != self.generation:
                continue  # an ack from a connection that is gone: its rows are re-sent anyway
            entry = self.inflight.pop(mid, None)
            if entry is None:
                continue
            if delivered(reason, a.settings.hold_on_no_subscribers):
                acked.append(entry)
            else:
                rejected += 1  # the row stays in the spool and is sent again after a rewind
                self.hold_reason = reason
                self.rewind = True
        if acked and self.hold_since:
            self._end_hold()
        elif rejected and not self.hold_since:
            self._start_hold()
        try:
            self.spool.commit(rows, acked, seqs)
        except Exception:
            # Keep everything for the next round (e.g. a full disk); nothing is dropped silently.
            log.exception("spool commit failed; retrying")
            self.carry_rows, self.carry_acked = rows, acked
            with a._lock:
                for k, v in seqs.items():
                    a._dirty_seqs.setdefault(k, v)
            time.sleep(0.5)
            return
        self.carry_rows, self.carry_acked = [], []
        self.last_commit = time.monotonic()
        self._link_changes()
        if rows and not self.behind:
            self.mem.extend(rows)
        dropped = self._trim()
        self._send()
        with a._cond:
            a._counts["persisted"] += len(rows)
            a._counts["acked"] += len(acked)
            a._counts["rejected"] += rejected
            a._counts["dropped"] += dropped
            a._outstanding -= len(acked) + dropped
            if rows:
                a._persisted_upto = rows[-1].id
            a._cond.notify_all()
        self._heartbeats()

    def _start_hold(self) -> None:
        a = self.a
        self.hold_since = time.monotonic()
        self.hold_delay = a.settings.backoff_initial_s
        self.probe_at = self.hold_since + self.hold_delay
        a._holding = True
        what = "no matching subscribers" if self.hold_reason == _NO_SUBSCRIBERS else "a refusal"
        log.warning("broker answered 0x%02x (%s): holding %d spooled messages until the hub subscribes again",
                    self.hold_reason, what, self.spool.count)

    def _end_hold(self) -> None:
        log.info("broker delivers again after %.1fs on hold: sending the %d spooled messages",
                 time.monotonic() - self.hold_since, self.spool.count)
        self.hold_since = 0.0
        self.a._holding = False

    def _send_window(self) -> int:
        """How many more messages may go out now; while holding, one probe once the previous answer is in."""
        a, link = self.a, self.link
        now = time.monotonic()
        if self.hold_since and now < self.probe_at:
            return 0
        if self.rewind or self.hold_since:
            if self.inflight:
                return 0  # every answer must be in first, or a rewind would send a row twice
            self.rewind = False
            self.cursor = 0
            self.behind = True
            self.mem.clear()
        if self.hold_since:
            self.hold_delay = min(self.hold_delay * 2, _HOLD_MAX_DELAY_S)
            self.probe_at = now + self.hold_delay
            return 1  # the probe: the oldest spooled row
        return min(a.settings.max_inflight, link.receive_maximum) - len(self.inflight)

    def _link_changes(self) -> None:
        a = self.a
        up, generation, session = self.link.status()
        if not up:
            self.behind = True
            self.mem.clear()
            return
        if generation == self.generation:
            return
        # A new connection: everything unacknowledged is sent again from the oldest (a hold probes at once).
        self.generation = generation
        self.probe_at = 0.0
        self.inflight.clear()
        self.cursor = 0
        self.behind = True
        self.mem.clear()
        stale = self.spool.drop_stale_sessions(session)
        with a._cond:
            a._counts["superseded"] += len(stale)
            a._outstanding -= len(stale)
            a._births_session = session
            for device_id, dev in a._devices.items():
                a._enqueue_birth(device_id, dev, session)
            a._cond.notify_all()
        a._work.set()

    def _trim(self) -> int:
        a = self.a
        now = time.monotonic()
        if self.spool.bytes <= a.settings.spool_max_bytes and now - self.last_trim < 1.0:
            return 0
        self.last_trim = now
        ids = self.spool.trim(a.settings.spool_max_bytes, a.settings.spool_max_age_s, time.time())
        if not ids:
            return 0
        log.warning("spool bound reached: dropped the %d oldest messages", len(ids))
        gone = set(ids)
        self.inflight = {m: e for m, e in self.inflight.items() if e[0] not in gone}
        self.behind = True
        self.mem.clear()
        return len(ids)

    def _send(self) -> None:
        a, link = self.a, self.link
        if not link.up or link.generation != self.generation:
            return
        window = self._send_window()
        sent = 0
        while window > 0:
            if self.behind:
                want = min(window, 1000)
                batch = self.spool.read_after(self.cursor, want)
                if len(batch) < want:
                    self.behind = False
            else:
                batch = [self.mem.popleft() for _ in range(min(window, len(self.mem)))]
            if not batch:
                break
            for row in batch:
                mid = link.publish(self.generation, row.topic, row.payload, row.retain)
                if mid is None:
                    # The connection went away; the rest is re-sent from the spool after reconnecting.
                    self.behind = True
                    self.mem.clear()
                    window = 0
                    break
                self.inflight[mid] = (row.id, row.size)
                self.cursor = row.id
                window -= 1
                sent += 1
        if len(self.mem) > _MEM_CAP:
            self.mem.clear()
            self.behind = True
        if sent:
            with a._lock:
                a._counts["sent"] += sent

    def _heartbeats(self) -> None:
        a = self.a
        now = time.monotonic()
        if not a.settings.heartbeats or not self.link.up or now - self.last_beat < 1.0:
            return
        self.last_beat = now
        session = a._births_session
        uptime = now - a._started_at
        for device_id, dev in list(a._devices.items()):
            if dev.reachable and now - dev.last_publish >= dev.interval_s:
                try:
                    a._enqueue(device_id, dev, Heartbeat(uptime_s=uptime), session=session)
                except RuntimeError:
                    return  # stopping
