"""The alerting sink: accepted messages -> rules -> alerts (SQL) -> routing -> notifiers.

`build_sink(cfg)` is what the hub worker calls. The sink runs one timer thread for hold times, absence
deadlines, escalation and auto-close; its clock is injectable so tests can move time by hand.
"""

from __future__ import annotations

import contextlib
import logging
import math
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from sqlalchemy.exc import DisconnectionError, InterfaceError, OperationalError

from commhub.config import Config
from commhub.wire import AlertNotice
from hub.alerts.db import make_engine
from hub.alerts.store import AlertStore, StateConflict, Tx
from hub.clockwatch import ClockWatch
from hub.ingest.message import Accepted
from hub.metrics import HubMetrics
from hub.notify.live import LiveFeed
from hub.notify.mqtt import MqttNotifier
from hub.notify.webhook import WebhookNotifier
from hub.routing.router import Router
from hub.routing.spec import load_routing
from hub.rules.clock import DeviceClocks
from hub.rules.engine import Engine, MemoryStates
from hub.rules.event import Ctx, Event, Signal
from hub.rules.kinds.absence import Absence
from hub.rules.kinds.base import Rule
from hub.rules.kinds.correlation import Correlation
from hub.rules.spec import load_rules

log = logging.getLogger(__name__)
# Errors that say the database cannot be reached, not that an event is bad: these hold the batch.
_UNREACHABLE = (OperationalError, InterfaceError, DisconnectionError)

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
_RETRIES = 5
# How many times one transaction feeds stale keys again before it rolls back: each redo locks the keys it found
# stale, so only keys new to the transaction (a correlation a redone step now feeds) can be stale again.
_REDOS = 3
# The timer thread looks in the database at the next due time it knows of (its own transactions tell it) and
# at least this often, for timers another worker or the API set (a worker that died leaves them to the others).
RECHECK_S = 5.0
_PURGE_EVERY_S = 3600.0
_KEEP_DELIVERED_S = 7 * 86400.0


def db_url(cfg: Config) -> str:
    """The configured SQLAlchemy URL (SQLite at alerts.db_path by default)."""
    return cfg.alerts.db_url or f"sqlite:///{cfg.alerts.db_path}"


class AlertingSink:
    """A hub Sink that turns accepted messages into routed, notified alerts."""

    def __init__(self, cfg: Config, clock: Callable[[], float] = time.time, mqtt: bool = True) -> None:
        self.cfg = cfg
        self.clock = clock
        self.mqtt_enabled = mqtt
        a = cfg.alerts
        self.pack = load_rules(a.rules_file or CONFIGS / "rules.yaml")
        self.routing = load_routing(a.routing_file or CONFIGS / "routing.yaml")
        self.ctx = Ctx(cfg.community)
        self.engine = Engine(self.pack, self.ctx, a.state_write_back_s)
        self.clocks = DeviceClocks(a.max_clock_skew_s, write_back_s=a.state_write_back_s)
        self.live = LiveFeed(a.live_feed_size)
        self.db = make_engine(db_url(cfg))
        self.store = AlertStore(self.db, Router(self.routing, cfg.community), {r.id: r for r in self.pack.rules},
                                cfg.community.site.id, a.webhooks, clock, cfg.hub.worker_id, a.auto_close_s,
                                a.outbox_lease_s)
        self.mqtt: MqttNotifier | None = None
        self.webhooks = [WebhookNotifier(self.store, w) for w in a.webhooks]
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_purge = 0.0
        self._opened = False
        self._open_lock = threading.Lock()
        # Contention evidence for /metrics and `bench scale`: transactions rolled back and run again, by cause.
        self.retries: dict[str, int] = {"conflict": 0, "deadlock": 0, "serialization": 0, "other": 0}
        self.batches = 0  # batch transactions committed
        self.handled = 0  # batches handed to the sink (their size is the worker's batch size)
        self.most_attempts = 0  # the most attempts one transaction needed
        self.redone = 0  # batches whose stale keys were fed again in the same transaction
        self.stale_keys: dict[str, int] = {"absence": 0, "correlation": 0, "other": 0}  # found stale, by kind
        self.timer_runs = 0  # timer passes that went to the database
        # CPU time of this thread spent on batches and on timer passes: the rules' own cost, which the load of a
        # shared machine changes far less than wall time, and which other threads' work does not blur.
        self.handle_cpu_s = 0.0
        self.timer_cpu_s = 0.0
        # The earliest due time (rule timers, escalations, auto-close) this worker knows of, on self.clock.
        self._next_due = 0.0
        self._due_lock = threading.Lock()
        self._checked_at = -math.inf  # time.monotonic() of the last timer pass
        # The host's clock being set (the real clock only: an injected one, a test's or a scenario's, jumps
        # on purpose): said when seen, for the operator; timers are not moved (hub.clockwatch).
        self.clock_watch = ClockWatch() if clock is time.time else None

    def start(self) -> None:
        """Migrate the schema, start absence timers, notifiers and the timer thread."""
        self.store.lease_own_mqtt = self.mqtt_enabled
        self.store.on_notices = self._notify
        self.store.on_due = self._due_at
        try:
            self.open()
        except _UNREACHABLE as e:
            # Not a reason to exit: the worker holds what arrives unacknowledged until handle() can open it.
            log.error("the alert database is unreachable (%s): alerts wait for it, the hub holds its messages",
                      str(e).splitlines()[0][:300] if str(e) else type(e).__name__)
        if self.mqtt_enabled:
            self.mqtt = MqttNotifier(self.store, self.cfg.mqtt, f"{self.cfg.hub.worker_id}-alerts",
                                     self.cfg.alerts.mqtt_qos)
            self.mqtt.start()
        for w in self.webhooks:
            w.start()
        self._thread = threading.Thread(target=self._timer, name="alerts-timer", daemon=True)
        self._thread.start()

    def open(self) -> None:
        """Migrate the schema and seed absence timers, once; raises while the database is unreachable."""
        with self._open_lock:
            if self._opened:
                return
            self.store.start()
            with self.store.tx() as tx:
                n = self.engine.seed(tx, self.clock(), self.cfg.alerts.restart_grace_s)
            self._opened = True
        log.info("alerting: %d rules, %d new absence timers", len(self.engine.rules), n)

    def register_metrics(self, metrics: HubMetrics) -> None:
        """Export the notifiers' give-ups on the worker's /metrics."""
        metrics.gauge("commhub_webhook_given_up", "Alert notices a webhook gave up on (not delivered)",
                      lambda: sum(w.given_up for w in self.webhooks))
        metrics.gauge("commhub_alert_tx_batches_total", "Batch transactions the alert store committed",
                      lambda: self.batches)
        metrics.gauge("commhub_alert_batches_handled_total", "Batches the worker handed to the alerting sink",
                      lambda: self.handled)
        metrics.gauge("commhub_alert_tx_redone_total",
                      "Batches whose rule states another worker changed meanwhile, fed again in the same transaction",
                      lambda: self.redone)
        for cause in self.retries:
            metrics.gauge(f"commhub_alert_tx_retries_{cause}_total",
                          f"Alert store transactions rolled back and retried ({cause})",
                          lambda cause=cause: self.retries[cause])  # type: ignore[misc]
        for kind in self.stale_keys:
            metrics.gauge(f"commhub_alert_tx_stale_{kind}_total",
                          f"Rule states ({kind}) another worker changed while a transaction of ours ran",
                          lambda kind=kind: self.stale_keys[kind])  # type: ignore[misc]
        metrics.gauge("commhub_alert_timer_runs_total", "Timer passes that queried the alert database",
                      lambda: self.timer_runs)
        metrics.gauge("commhub_alert_handle_cpu_seconds_total", "CPU time the alerting sink spent on batches",
                      lambda: self.handle_cpu_s)
        metrics.gauge("commhub_alert_timer_cpu_seconds_total", "CPU time the alerting sink spent on timer passes",
                      lambda: self.timer_cpu_s)
        watch = self.clock_watch
        for way in ("back", "forward"):
            metrics.gauge(f"commhub_clock_set_{way}_total", f"Times the host's clock was seen set {way} (timers then "
                          f"{'come late by the step' if way == 'back' else 'in the skipped span fall due at once'})",
                          lambda way=way: 0 if watch is None else getattr(watch, way))  # type: ignore[misc]
            metrics.gauge(f"commhub_clock_set_{way}_seconds_total", f"Seconds the host's clock was set {way}, summed",
                          lambda way=way: 0.0 if watch is None else getattr(watch, f"{way}_s"))  # type: ignore[misc]

    def handle(self, batch: Sequence[Accepted]) -> None:
        """Run the rules over one batch and apply their signals, in one transaction."""
        cpu0 = time.thread_time()
        self.handled += 1
        try:
            self._handle(batch)
        finally:
            self.handle_cpu_s += time.thread_time() - cpu0

    def _handle(self, batch: Sequence[Accepted]) -> None:
        self.open()  # a no-op once open; while the database is unreachable it raises and the batch is held
        events = []
        for a in batch:
            try:
                env = a.envelope
                events.append(Event.from_envelope(env, a.topic.device_kind, self.ctx.place(env.device_id),
                                                  a.device))
            except Exception:
                log.exception("cannot read %s seq %d for the rules", a.envelope.device_id, a.envelope.seq)
        if not events:
            return
        try:
            self._retry(lambda careful: self._process(events, careful))
        except _UNREACHABLE:
            raise  # the database is down or the link to it broke: the worker holds the batch unacknowledged
        except Exception:
            # One bad event must not cost the others: replay the batch one event per transaction.
            log.exception("alerting failed on a batch of %d; retrying one by one", len(events))
            for ev in events:
                try:
                    self._retry(lambda careful, ev=ev: self._process([ev], careful))  # type: ignore[misc]
                except _UNREACHABLE:
                    raise  # not this event's fault: hold the batch rather than lose its alerts
                except Exception:
                    log.exception("alerting skipped %s seq %d", ev.device_id, ev.seq)

    def _process(self, events: list[Event], careful: bool = False) -> None:
        # Rules keep device time; the clocks correct a device whose clock is off (hold times would otherwise
        # start in the past or the future) while a backlog keeps its own stamps (hub.rules.clock).
        received = self.clock()
        self.engine.ctx.received = received
        changed = MemoryStates()  # clock offsets that moved, written with the batch's transaction
        # Optimistic first: a worker racing another on the same devices then holds row locks only while it
        # writes. A retry (after a conflict, a deadlock or a busy database) locks what it reads, so it finishes.
        if self.clocks.prefetch(events, changed):
            # A device whose clock state is not cached yet: read it in the tx (written there when it moves).
            with self.store.batch_tx(optimistic=not careful) as tx:
                tx.prefetch(self.clocks.prefetch(events, tx))
                events = [self.clocks.correct(ev, received, tx) for ev in events]
                self._run(tx, self.engine.plan(events))
            self.batches += 1
            return
        events = [self.clocks.correct(ev, received, changed) for ev in events]
        work = self.engine.plan(events)
        if not work and not changed.states:
            return  # only signs of life the engine keeps in memory: no transaction at all
        with self.store.batch_tx(optimistic=not careful) as tx:
            for (rule, key), st in changed.states.items():
                tx.save(rule, key, st)
            # Every key the batch reads or writes at once, sorted (locked in that order when careful).
            tx.prefetch({*changed.states, *((rule.id, key) for _, rule, key in work)})
            self._run(tx, work)
        self.batches += 1

    def _run(self, tx: Tx, work: list[tuple[Event, Rule, str]]) -> None:
        """Feed the batch's steps, write their state, then apply their signals, in the batch's transaction."""
        steps = self.engine.run_steps(work, tx)
        # The stale keys are locked by us now: feed their steps (and the correlations they feed) again on the
        # other worker's state, instead of running the whole batch again.
        self.redone += self._flush(tx, lambda stale: self.engine.redo(work, steps, stale, tx))
        tx.apply([sig for step in steps for sig in step])

    def _write_back(self, tx: Tx, now: float, force: bool = False) -> list[Signal]:
        """Write the signs of life kept in memory and flush; a subject another worker changed is fed again."""
        signals = self.engine.write_back(tx, now, force)

        def again(stale: set[tuple[str, str]]) -> bool:
            nonlocal signals
            redone = self.engine.redo_write_back(stale, tx)
            if redone is None:
                return False
            signals = redone
            return True
        self._flush(tx, again)
        return signals

    def _flush(self, tx: Tx, redo: Callable[[set[tuple[str, str]]], bool]) -> bool:
        """Flush the transaction's rule states (before its alert rows, in every transaction: one lock order).

        A state another worker changed meanwhile is forgotten and `redo` feeds it again (False: it cannot, and
        the transaction rolls back), up to _REDOS times. True when something was fed again.
        """
        redone = False
        for attempt in range(_REDOS + 1):
            try:
                tx.flush()
                return redone
            except StateConflict as e:
                self._count_stale(e.stale)
                tx.forget(e.stale)
                if attempt == _REDOS:
                    raise
                # The other worker's states, read in one query rather than one per key as the redo loads them.
                tx.prefetch(e.stale)
                if not redo(e.stale):
                    raise
                redone = True
        raise AssertionError("unreachable")  # the last attempt returns or raises

    def _count_stale(self, stale: set[tuple[str, str]]) -> None:
        for rule_id, _ in stale:
            rule = self.engine.rules.get(rule_id)
            kind = "absence" if isinstance(rule, Absence) else "correlation" if isinstance(rule, Correlation) else \
                "other"
            self.stale_keys[kind] += 1

    def tick(self) -> None:
        """Run due rule timers, escalations and auto-close once (the timer thread calls this)."""
        if not self._opened:
            try:
                self.open()
            except _UNREACHABLE:
                return  # unreachable since start (said once then); handle() holds batches meanwhile

        with self._due_lock:
            self._next_due = math.inf  # our transactions from now on lower it again (see _due_at)
        self._checked_at = time.monotonic()
        self.timer_runs += 1

        def timers(careful: bool) -> None:
            # Optimistic too, so the write-back of many subjects' activity holds no row locks while it runs.
            with self._write_backs_ending(), self.store.tx(optimistic=not careful) as tx:
                now = self.clock()
                self.clocks.write_back(tx, now)  # last writer wins: never a conflict
                # Written and flushed before the timers run, so a conflict on a sign of life is fed again.
                signals = self._write_back(tx, now)
                signals += self.engine.tick(tx, now)
                tx.flush()  # rule state rows before alert rows, as in the batch transactions
                tx.apply(signals)
        try:
            self._retry(timers)
            # Committed timers, whoever set them. The escalation transaction only when one is due: a pass for
            # a rule timer or a write-back (most passes) then costs one query, not a transaction of three.
            rule_due, alert_due = self.store.due_times()
            if alert_due is not None and alert_due <= self.clock():
                self._retry(lambda _careful: self.store.escalate_due())
                rule_due, alert_due = self.store.due_times()
            now = self.clock()
            if now - self._last_purge > _PURGE_EVERY_S:
                self._last_purge = now
                self.store.purge(_KEEP_DELIVERED_S)
            self._due_at(min((t for t in (rule_due, alert_due) if t is not None), default=None))
        except BaseException:
            self._due_at(-math.inf)  # not done: the next tick tries again
            raise
        self._due_at(self._last_purge + _PURGE_EVERY_S)

    @contextlib.contextmanager
    def _write_backs_ending(self) -> Iterator[None]:
        """The write-backs (signs of life, clock offsets) of the transaction inside end with it: a rollback puts
        them back in memory, so a retry writes them again."""
        try:
            yield
        except BaseException:
            self.engine.write_back_ended(committed=False)
            self.clocks.write_back_ended(committed=False)
            raise
        self.engine.write_back_ended(committed=True)
        self.clocks.write_back_ended(committed=True)

    def _due_at(self, t: float | None) -> None:
        """A timer due at t (on self.clock) exists: the timer thread looks at the database then, not before."""
        if t is not None:
            with self._due_lock:
                self._next_due = min(self._next_due, t)

    def timers_due(self) -> bool:
        """Whether the next tick should go to the database: a timer we know of is due, a write-back of signs of
        life or clock offsets is, RECHECK_S passed, or the rules' hold is full."""
        if not self._opened:
            return True
        now = self.clock()
        return now >= min(self._next_due, self.engine.write_back_at(), self.clocks.write_back_at()) or \
            time.monotonic() - self._checked_at >= RECHECK_S or self.engine.hold_full

    def stop(self) -> None:
        """Stop the timer, then the notifiers; undelivered notices stay in the outbox."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
        if self._opened:  # else the database was unreachable all along: nothing to write back
            try:
                def last(careful: bool) -> None:
                    with self._write_backs_ending(), self.store.tx(optimistic=not careful) as tx:
                        self.clocks.write_back(tx, self.clock(), force=True)
                        tx.apply(self._write_back(tx, self.clock(), force=True))
                self._retry(last)
            except Exception:
                # Lost signs of life only bring absence deadlines a few seconds closer; the restart grace covers it.
                log.exception("could not write back %d subjects' last activity", self.engine.pending_write_back)
        if self.mqtt is not None:
            self.mqtt.stop()
        for w in self.webhooks:
            w.stop()
        self.store.close()
        self.db.dispose()

    def _timer(self) -> None:
        # Each pass costs a few queries: idle, a worker goes to the database only when a timer it knows of is
        # due, a write-back is, or every RECHECK_S (four passes a second cost an idle worker 17-24 ms of CPU a
        # second on PostgreSQL).
        while not self._stop.wait(self.cfg.alerts.tick_s):
            self.look_at_clock()
            if not self.timers_due():
                continue
            cpu0 = time.thread_time()
            try:
                self.tick()
            except Exception:
                log.exception("alert timers failed; trying again next tick")
            self.timer_cpu_s += time.thread_time() - cpu0

    def look_at_clock(self) -> float:
        """Say so when the host's clock was set since the last look (hub.clockwatch); returns the step."""
        step = 0.0 if self.clock_watch is None else self.clock_watch.look()
        if step < 0:
            log.warning("the host's clock was set back %.0f s: every rule timer, escalation and absence deadline "
                        "comes that much later than it should (stored timers are not moved)", -step)
        elif step > 0:
            log.warning("the host's clock was set forward %.0f s: every timer due in the skipped span fell due at "
                        "once (devices silent for it are raised offline)", step)
        return step

    def _notify(self, notices: list[AlertNotice]) -> None:
        self.live.publish(notices)
        if self.mqtt is not None:
            self.mqtt.send(notices)
        for w in self.webhooks:
            w.wake()

    def _retry(self, fn: Callable[[bool], object]) -> None:
        # A conflict, a deadlock or a busy database rolls the whole transaction back, so running it again is
        # safe; fn(careful) is told whether an attempt failed before (then it takes its locks as it reads).
        for attempt in range(_RETRIES):
            self.most_attempts = max(self.most_attempts, attempt + 1)
            try:
                fn(attempt > 0)
                return
            except StateConflict as e:
                self.retries["conflict"] += 1
                if attempt == _RETRIES - 1:
                    raise
                log.debug("alert store: %s; retrying with row locks", e)
            except OperationalError as e:
                code = getattr(e.orig, "sqlstate", None)
                self.retries["deadlock" if code == "40P01" else "serialization" if code == "40001" else "other"] += 1
                if attempt == _RETRIES - 1:
                    raise
                log.warning("alert store busy (%s); retrying", str(e).splitlines()[0][:200])
                time.sleep(0.05 * (attempt + 1))


def open_store(cfg: Config, clock: Callable[[], float] = time.time, actor: str = "api") -> AlertStore:
    """An AlertStore for another process (the API): reads, human actions, reports and silences.

    Its notices go to the outbox; the hub's MQTT and webhook notifiers deliver them within a second.
    Call start() once (it migrates the schema, which is safe alongside running hubs).
    """
    pack = load_rules(cfg.alerts.rules_file or CONFIGS / "rules.yaml")
    routing = load_routing(cfg.alerts.routing_file or CONFIGS / "routing.yaml")
    return AlertStore(make_engine(db_url(cfg)), Router(routing, cfg.community), {r.id: r for r in pack.rules},
                      cfg.community.site.id, cfg.alerts.webhooks, clock, actor, cfg.alerts.auto_close_s,
                      cfg.alerts.outbox_lease_s)


def build_sink(cfg: Config) -> AlertingSink:
    """The whole rules -> alerts -> routing -> notifiers chain, as a hub Sink."""
    return AlertingSink(cfg)
