"""A hub worker run in-process on a scenario's simulated clock, isolated from any hub already running."""

from __future__ import annotations

import logging
import math
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from commhub.config import Config
from hub.rules.clock import DeviceClocks

log = logging.getLogger(__name__)


def isolated(cfg: Config, workdir: Path, rules_file: Path | None = None) -> Config:
    """A copy of cfg with its own topic root, InfluxDB database, spool, alert database and worker id.

    Its own root keeps a running hub (which keeps wall-clock time) from seeing the scenario's traffic.
    """
    tag = uuid.uuid4().hex[:8]
    mqtt = cfg.mqtt.model_copy(update={"root": f"{cfg.mqtt.root}-scn{tag}"})
    influx = cfg.influx.model_copy(update={"database": f"{cfg.influx.database}_scenarios"})
    spool = cfg.hub.spool.model_copy(update={"dir": workdir / "spool"})
    metrics = cfg.hub.metrics.model_copy(update={"port": 0})
    hub = cfg.hub.model_copy(update={"worker_id": f"scenario-{tag}", "share_group": f"scn{tag}", "spool": spool,
                                     "metrics": metrics, "snapshots_dir": workdir / "snapshots"})
    # Fine-grained timers: at 60x a 0.25 s tick would be 15 simulated seconds of slack on every hold time.
    update: dict[str, Any] = {"enabled": True, "db_url": "", "db_path": workdir / "alerts.db", "tick_s": 0.05}
    if "max_clock_skew_s" in type(cfg.alerts).model_fields:
        # Every stamp is simulated and consistent; the event clock lags by up to a batch, which at high
        # speed spans more simulated time than any real clock skew: never re-time messages here.
        update["max_clock_skew_s"] = 30 * 86400.0
    if rules_file is not None:
        update["rules_file"] = rules_file
    alerts = cfg.alerts.model_copy(update=update)
    return cfg.model_copy(update={"mqtt": mqtt, "influx": influx, "hub": hub, "alerts": alerts})


# A message handed to an agent and not handled this long (wall seconds) was dead-lettered or lost: it no longer
# holds time back. An agent on a loaded machine delivers within a second or two.
LOST_S = 30.0


class InFlight:
    """The messages the scenario handed to its agents that the hub has not handled yet, and when each was sent.

    Each agent is a broker connection of its own: its messages reach the hub in order, but one agent's may
    overtake another's. Live that skew is a fraction of a second; at a hundred times real speed an agent whose
    pump lags one wall second behind the others is two simulated minutes behind. So the event clock may not
    pass a message still in flight on any connection, and a message counts as received when it was sent (its
    stamp, or the end of its late window), not when a newer message of another agent got in first.
    """

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._queues: dict[str, deque[tuple[str, int, float, float]]] = {}  # agent -> (device, seq, at, mono)
        self._sent: dict[tuple[str, int], tuple[str, float]] = {}  # (device, seq) -> (agent, at)

    def send(self, agent: str, publish: Callable[[], int], device_id: str, at: float) -> int:
        """Publish through the agent (publish() returns the seq) and note the message as in flight since at."""
        with self._lock:  # held across the publish, so the hub cannot handle the message before it is noted
            seq = publish()
            self._sent[(device_id, seq)] = (agent, at)
            self._queues.setdefault(agent, deque()).append((device_id, seq, at, time.monotonic()))
            return seq

    def sent_at(self, device_id: str, seq: int) -> float | None:
        """When a message still in flight was sent (simulated time), or None."""
        with self._lock:
            entry = self._sent.get((device_id, seq))
            return None if entry is None else entry[1]

    def handled(self, device_id: str, seq: int) -> None:
        """The hub handled a message: it, and every older one of its agent (the hub dropped those), are in."""
        with self._lock:
            entry = self._sent.get((device_id, seq))
            if entry is None:
                return  # an agent's own message, a redelivery, or one of an agent that is gone
            q = self._queues[entry[0]]
            while q:
                d, s, _at, _mono = q.popleft()
                del self._sent[(d, s)]
                if (d, s) == (device_id, seq):
                    break

    def floor(self) -> float:
        """The send time of the oldest message in flight (inf if none): time may not pass it."""
        with self._lock:
            oldest = math.inf
            lost = time.monotonic() - LOST_S
            for agent, q in self._queues.items():
                while q and q[0][3] < lost:
                    d, s, at, _mono = q.popleft()
                    del self._sent[(d, s)]
                    log.warning("a message of %s sent at %.3f was not handled in %.0f s: no longer waited for",
                                agent, at, LOST_S)
                if q:
                    oldest = min(oldest, q[0][2])
            return oldest

    def forget(self, agent: str) -> None:
        """An agent died or stopped: what it did not deliver will not come."""
        with self._lock:
            for d, s, _at, _mono in self._queues.pop(agent, ()):
                self._sent.pop((d, s), None)


class EventClock:
    """A hub sink that keeps event time for the alert timers, from the simulated messages the hub handled.

    Each agent's messages arrive in simulated-time order over its own connection. Once the hub has handled a
    message stamped t, every message of that agent stamped before t has been handled, so timers may run up to
    the previous distinct stamp, and never past a message still in flight on another agent's connection
    (InFlight): they can never overtake one, however fast the simulation runs. Births and states carry the
    agent's wall clock and are skipped. Time starts just before the scenario (so absence timers are seeded
    there), stops at its end, and jumps there once release() says every message is in.
    """

    def __init__(self, start: float, end: float, inflight: InFlight | None = None) -> None:
        self.end = end
        self.inflight = inflight if inflight is not None else InFlight()
        self.latest = start - 1.0  # the newest stamp of any batch the rules have started on
        self.newest = start - 1.0
        self.safe = self.newest
        self.released = False
        self.wills: set[str] = set()  # agents and devices whose offline state (a will) the rules have seen
        self._lock = threading.Lock()

    def start(self) -> None:
        """Nothing to open."""

    def handle(self, batch: Sequence[Any]) -> None:
        """Advance with the simulated stamps in the batch."""
        with self._lock:
            for a in batch:
                env = a.envelope
                self.inflight.handled(env.device_id, env.seq)
                if env.body.type in ("birth", "state"):
                    if env.body.type == "state" and getattr(env.body, "status", None) == "offline":
                        self.wills.add(env.device_id)
                    continue
                t = min(env.ts.timestamp(), self.end)
                if t > self.newest:
                    self.safe, self.newest = self.newest, t

    def stop(self) -> None:
        """Nothing to flush."""

    def release(self) -> None:
        """Every message is in: let time run to the scenario's end."""
        with self._lock:
            self.released = True

    def now(self) -> float:
        """Event time (never past a message in flight), or the end once released."""
        floor = self.inflight.floor() - 1e-3
        with self._lock:
            return self.end if self.released else min(self.safe, floor)

    def seen_will(self, device_id: str) -> bool:
        """Whether the rules have handled an offline state (a will) of this agent or device."""
        with self._lock:
            return device_id in self.wills

    def reached(self, t: float) -> bool:
        """Whether a message stamped t (or later) has been handled (envelopes keep microseconds)."""
        with self._lock:
            return self.newest >= t - 1e-3

    def advance(self, t: float) -> None:
        """Move time to t: the caller knows every message stamped before t has been handled."""
        with self._lock:
            if t > self.safe:
                self.safe = t
                self.newest = max(self.newest, t)

    def before(self, batch: Sequence[Any]) -> bool:
        """Move time to just before the batch's first stamp (everything older is handled); True if it moved."""
        stamps = [a.envelope.ts.timestamp() for a in batch if a.envelope.body.type not in ("birth", "state")]
        if not stamps:
            return False
        t = min(min(stamps), self.end, self.inflight.floor()) - 1e-3
        with self._lock:
            self.latest = max(self.latest, max(stamps))
            if t <= self.safe:
                return False
            self.safe = t
            self.newest = max(self.newest, t)
            return True


class TimersFirst:
    """A sink, before the rules, that runs the alert timers due before a batch's first stamp, in the worker.

    The timer thread ticks on the wall clock; under load it can fall behind a simulation running at thousands
    of times real speed, and a timer then fires late in simulated time. Ticking here, in the worker, keeps the
    timers in step with the messages however slow the machine is: a deadline that passed before a message
    was sent fires before the rules see that message, as it would have live.
    """

    def __init__(self, clock: EventClock, alerting: Any) -> None:
        self.clock = clock
        self.alerting = alerting

    def start(self) -> None:
        """Nothing to open."""

    def handle(self, batch: Sequence[Any]) -> None:
        """Tick once when the batch moves time forward."""
        if self.clock.before(batch):
            self.alerting.tick()

    def stop(self) -> None:
        """Nothing to flush."""


def _wait_until(done: Callable[[], bool], timeout: float) -> bool:
    """Poll until done() or the timeout; done()'s last answer."""
    deadline = time.monotonic() + timeout
    while not done() and time.monotonic() < deadline:
        time.sleep(0.02)
    return done()


class InStep:
    """The rules and their timers in step with simulated time, whatever the size of the hub's batches.

    A loaded machine makes the hub take bigger batches; at a hundred times real speed one can span a minute of
    simulated time, and a timer due inside it (a device's absence, a will's grace) would fire only at the next
    batch, late by the batch's span. So each batch goes to the rules in slices of at most `span_s` simulated
    seconds, with the timers due before each slice run first (TimersFirst), then the event clock moved on.
    """

    def __init__(self, clock: EventClock, alerting: Any, span_s: float = 5.0) -> None:
        self.clock = clock
        self.alerting = alerting
        self.timers = TimersFirst(clock, alerting)
        self.span_s = span_s

    def start(self) -> None:
        """Start the alerting sink."""
        self.alerting.start()

    def register_metrics(self, metrics: Any) -> None:
        """The alerting sink's metrics."""
        register = getattr(self.alerting, "register_metrics", None)
        if register is not None:
            register(metrics)

    def handle(self, batch: Sequence[Any]) -> None:
        """Slice by simulated time; timers, rules and clock for each slice in turn."""
        for part in self._slices(batch):
            self.timers.handle(part)
            self.alerting.handle(part)
            self.clock.handle(part)

    def _slices(self, batch: Sequence[Any]) -> list[Sequence[Any]]:
        out: list[Sequence[Any]] = []
        begin, first = 0, None
        for i, a in enumerate(batch):
            if a.envelope.body.type in ("birth", "state"):
                continue  # the agent's wall clock: it rides in the slice at hand
            t = a.envelope.ts.timestamp()
            if first is None:
                first = t
            elif t - first > self.span_s:
                out.append(batch[begin:i])
                begin, first = i, t
        out.append(batch[begin:])
        return out

    def stop(self) -> None:
        """Stop the alerting sink."""
        self.alerting.stop()


class ReceivedClocks(DeviceClocks):
    """The hub's device clocks, told when a message was received on the simulated clock.

    Live, a message is received just after it was sent. The event clock lags the batch in hand (its timers may
    not overtake it), so as a receive time it would make every message look early and the next ones late; and
    the newest stamp in hand may be another agent's that overtook this one. A message is received when the
    scenario sent it (InFlight); one not noted there (an agent's own) when the batch's newest stamp was.
    """

    def __init__(self, clock: EventClock, tolerance_s: float) -> None:
        super().__init__(tolerance_s)
        self.clock = clock

    def correct(self, ev: Any, received: float, store: Any) -> Any:
        """Correct against the message's send time (else the batch's arrival), not the timers' clock."""
        sent = self.clock.inflight.sent_at(ev.device_id, ev.seq)
        return super().correct(ev, max(received, self.clock.latest) if sent is None else sent, store)


class ScenarioHub:
    """The real hub worker and alerting sink, with the sink's clock on the simulation's event time."""

    def __init__(self, cfg: Config, start: float, end: float) -> None:
        self.cfg = cfg
        self.start_ts = start
        self.end = end
        self.clock: EventClock | None = None
        self.worker: Any = None
        self.inflight = InFlight()  # the runner sends every scenario message through it

    def start(self, timeout: float = 120.0) -> None:
        """Start the worker and wait until it is subscribed."""
        from hub.alerting import AlertingSink
        from hub.worker import Worker

        self.cfg.hub.spool.dir.mkdir(parents=True, exist_ok=True)
        self.cfg.alerts.db_path.parent.mkdir(parents=True, exist_ok=True)
        # The clock sink goes after the rules: time reaches a batch's stamps only once the rules have seen it.
        self.clock = EventClock(self.start_ts, self.end, self.inflight)
        alerting = AlertingSink(self.cfg, clock=self.clock.now)
        alerting.clocks = ReceivedClocks(self.clock, self.cfg.alerts.max_clock_skew_s)
        self.worker = Worker(self.cfg, sinks=[InStep(self.clock, alerting)])
        self.worker.start()
        if not self.worker.wait_connected(timeout):
            self.stop()
            raise TimeoutError(f"the scenario hub did not subscribe within {timeout}s")
        log.info("scenario hub %s running on simulated time", self.cfg.hub.worker_id)

    def caught_up(self, last_ts: float, timeout: float) -> bool:
        """Wait until the hub has handled the message stamped last_ts, then release time to the end."""
        clock = self.clock
        if clock is None:
            return False
        ok = _wait_until(lambda: clock.reached(last_ts), timeout)
        clock.release()
        return ok

    def settle(self, last_ts: float, t: float, timeout: float) -> bool:
        """Wait until the message stamped last_ts is handled, then move time to t (nothing older will come):
        what happens next (an agent's will, stamped by the hub when it arrives) is stamped at t."""
        clock = self.clock
        if clock is None:
            return False
        ok = _wait_until(lambda: clock.reached(last_ts), timeout)
        clock.advance(t)
        return ok

    def handled_will(self, agent: str, timeout: float) -> bool:
        """Wait until the rules have handled the agent's will (its alert may wait for the will's grace)."""
        clock = self.clock
        return clock is not None and _wait_until(lambda: clock.seen_will(agent), timeout)

    def stop(self) -> None:
        """Stop the worker (it flushes to InfluxDB)."""
        if self.worker is not None:
            self.worker.stop()
            self.worker = None
