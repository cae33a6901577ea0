"""Shared helpers for the rules/alerts/routing tests: a small community and envelope builders."""

from __future__ import annotations

import itertools
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from commhub.community import Community
from commhub.services import Postgres as Postgres  # the tests' throwaway server; the benchmarks use it too
from commhub.wire import BODY_TYPES, Envelope
from hub.rules.engine import Engine, MemoryStates
from hub.rules.event import Ctx, Event, Signal
from hub.rules.spec import load_rules

ROOT = Path(__file__).resolve().parents[1]
RULES = ROOT / "configs" / "rules.yaml"
ROUTING = ROOT / "configs" / "routing.yaml"
RESIDENT = "ab12cd34ef56ab78"
CONTACT = "cc00dd11ee22ff33"
STRANGER = "5eed5eed5eed5eed"


def community(site: str = "s1") -> Community:
    """Two grids, three buildings, one device of every kind that matters, staff and a resident."""
    devices: list[dict[str, Any]] = []

    def dev(i: str, kind: str, grid: str, building: str | None = None, unit: str | None = None,
            interval: float = 60.0) -> None:
        d: dict[str, Any] = {"id": i, "kind": kind, "grid": grid, "interval_s": interval}
        if building:
            d["building"] = building
        if unit:
            d["unit"] = unit
        devices.append(d)

    for b, g in (("b1", "g1"), ("b2", "g1"), ("b3", "g2")):
        dev(f"door-{b}", "door_controller", g, b, "u1", 300)
        dev(f"fgate-{b}", "face_gate", g, b, "u1", 300)
        dev(f"cam-{b}", "camera", g, b, "u1", 10)
        dev(f"smoke-{b}-1", "smoke", g, b, "u1", 3600)
        dev(f"smoke-{b}-2", "smoke", g, b, "u1", 3600)
        dev(f"gas-{b}", "gas", g, b, "u1")
        dev(f"leak-{b}", "water_leak", g, b, "u1", 3600)
        dev(f"hydrant-{b}", "hydrant", g, b, "u1")
        dev(f"firedoor-{b}", "fire_door", g, b, "u1", 600)
        dev(f"elev-{b}", "elevator", g, b, "u1", 300)
        dev(f"elec-{b}", "electrical", g, b)
        dev(f"panic-{b}", "panic_button", g, b, "u1", 3600)
        dev(f"dc-{b}", "door_contact", g, b, "u1", 3600)
        dev(f"wm-{b}", "water_meter", g, b, "u1", 900)
    for g in ("g1", "g2"):
        dev(f"gate-{g}", "turnstile", g, None, None, 300)
        dev(f"ir-{g}", "intrusion", g, None, None, 300)
        dev(f"charger-{g}", "charger", g)
        dev(f"manhole-{g}", "manhole", g, None, None, 600)
        dev(f"patrol-{g}", "patrol", g, None, None, 3600)
    return Community.model_validate({
        "site": {"id": site, "timezone": "Asia/Shanghai", "jurisdiction": "pcs-1",
                 "devices": [{"id": "api-reports", "kind": "report_desk"}]},  # the API's report desk
        "grids": [{"id": "g1", "buildings": [{"id": "b1", "units": ["u1"]}, {"id": "b2", "units": ["u1"]}]},
                  {"id": "g2", "buildings": [{"id": "b3", "units": ["u1"]}]}],
        "devices": devices,
        "staff": [
            {"id": "gw-day-g1", "role": "grid_worker", "grids": ["g1"],
             "shifts": [{"start": "08:00", "end": "20:00"}]},
            {"id": "gw-night-g1", "role": "grid_worker", "grids": ["g1"],
             "shifts": [{"start": "20:00", "end": "08:00"}]},
            {"id": "gw-g2", "role": "grid_worker", "grids": ["g2"]},
            {"id": "prop-1", "role": "property"},
            {"id": "police-1", "role": "police_liaison", "jurisdiction": "pcs-1"},
            {"id": "police-other", "role": "police_liaison", "jurisdiction": "pcs-9"},
            {"id": "ctrl-1", "role": "control_room"},
            {"id": "maint-1", "role": "maintenance"},
            {"id": "sup-1", "role": "security_supervisor"},
        ],
        "residents": [{"ref": RESIDENT, "grid": "g1", "building": "b1", "unit": "u1",
                       "devices": ["dc-b1", "wm-b1"], "emergency_contact": CONTACT}],
    })


_SEQ = itertools.count(1)


def env(device_id: str, body_type: str, t: float, seq: int | None = None, **fields: Any) -> Envelope:
    """An envelope with a body of the given type at time t (seconds since the epoch)."""
    body = BODY_TYPES[body_type](**fields)
    return Envelope(device_id=device_id, ts=datetime.fromtimestamp(t, UTC), seq=next(_SEQ) if seq is None else seq,
                    body=body)  # type: ignore[arg-type]


def kind_of(c: Community, device_id: str) -> str:
    """The device kind of a registered device."""
    return str(c.device_index()[device_id].kind)


class FakeClock:
    """A clock the test moves by hand."""

    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t

    def advance(self, s: float) -> float:
        """Move forward and return the new time."""
        self.t += s
        return self.t


# ---- catalogue scenarios: (rule id, subject, steps that fire it, near-miss steps that must not) ---------
# A step is ("msg", device_id, body_type, seconds_after_previous_step, fields) or ("wait", seconds).
# T0 is 07:00 local time on a Wednesday, so "night" and "06-22 h" windows are reachable by waiting.
T0 = datetime(2026, 6, 2, 23, 0, tzinfo=UTC).timestamp()
PASSER = "a11ce000a11ce000"
Step = tuple[Any, ...]


def msg(device: str, body_type: str, dt: float = 0.0, **fields: Any) -> Step:
    """A message step."""
    return ("msg", device, body_type, dt, fields)


def wait(s: float) -> Step:
    """A wait step."""
    return ("wait", s)


def until(hour: int) -> Step:
    """Wait until the next hh:00 local time (site timezone), so steps do not depend on where the clock is."""
    return ("until", hour)


def seconds_until(now: float, hour: int, tz: str = "Asia/Shanghai") -> float:
    """Seconds from now to the next hh:00 local time (0 when it is exactly hh:00)."""
    from datetime import timedelta
    from zoneinfo import ZoneInfo
    local = datetime.fromtimestamp(now, UTC).astimezone(ZoneInfo(tz))
    target = local.replace(hour=hour, minute=0, second=0, microsecond=0)
    if target < local:
        target += timedelta(days=1)
    return (target - local).total_seconds()


def play(steps: list[Step], clock: FakeClock, wait_fn: Any, send_fn: Any) -> None:
    """Play scenario steps with the given wait(seconds) and send(device, type, dt, **fields)."""
    for st in steps:
        if st[0] == "wait":
            wait_fn(st[1])
        elif st[0] == "until":
            wait_fn(seconds_until(clock(), st[1]))
        else:
            send_fn(st[1], st[2], st[3], **st[4])


class RulesDriver:
    """The real rule pack on in-memory state and a fake clock; messages may carry their own seq and arrive late."""

    def __init__(self, c: Community | None = None, overrides: dict[str, dict[str, Any]] | None = None) -> None:
        self.c = c or community()
        self.ctx = Ctx(self.c)
        self.engine = Engine(load_rules(RULES, overrides), self.ctx)
        self.store = MemoryStates()
        self.clock = FakeClock(T0)
        self.signals: list[Signal] = []
        self.engine.seed(self.store, self.clock())

    def send(self, device: str, body_type: str, dt: float = 0.0, *, seq: int | None = None,
             at: float | None = None, **fields: Any) -> list[Signal]:
        """Deliver one message dt seconds from now (stamped `at` if given), running due timers first."""
        self.wait(dt)
        e = env(device, body_type, self.clock() if at is None else at, seq, **fields)
        d = self.ctx.devices.get(device)
        # An unregistered sender is taken for an agent (its will and births name no registered device).
        ev = Event.from_envelope(e, d.kind.value if d else "agent", self.ctx.place(device), d)
        out = self.engine.process([ev], self.store)
        self.signals.extend(out)
        return out

    def wait(self, s: float) -> None:
        """Advance time, firing each timer at its due time."""
        end = self.clock() + s
        while True:
            dues = [st.due for st in self.store.states.values() if st.due is not None and st.due <= end]
            t = max(min(dues), self.clock()) if dues else end
            self.clock.t = t
            self.signals.extend(self.engine.tick(self.store, t))
            if not dues:
                return

    def run(self, steps: list[Step]) -> None:
        """Play scenario steps."""
        play(steps, self.clock, self.wait, self.send)

    def fired(self, rule: str, subject: str | None = None) -> list[Signal]:
        """Fire signals of a rule (and subject)."""
        return [s for s in self.signals if s.action == "fire" and s.rule == rule
                and (subject is None or s.subject == subject)]


def _grant(device: str, dt: float = 0.0, **kw: Any) -> Step:
    return msg(device, "access_granted", dt, door=kw.pop("door", "d1"), credential_ref=kw.pop("ref", PASSER),
               method=kw.pop("method", "card"), **kw)


def _water(total: float, dt: float) -> Step:
    return msg("wm-b1", "water_meter", dt, total_l=total, flow_l=0.0)


def _stranger(dt: float) -> Step:
    return _grant("fgate-b1", dt, ref=STRANGER, method="face", registered=False)


def _obj(label: str, dwell: float, zones: tuple[str, ...] = (), phase: str = "update", dt: float = 0.0) -> Step:
    return msg("cam-b1", "camera_object", dt, event_id="e1", phase=phase, label=label, score=0.9, zones=zones,
               dwell_s=dwell)


SCENARIOS: dict[str, tuple[str, list[Step], list[Step]]] = {
    "sos_button": ("device:panic-b1", [msg("panic-b1", "panic_press")], [msg("panic-b1", "heartbeat")]),
    "elderly_no_door": (f"resident:{RESIDENT}",
                        [msg("dc-b1", "door_contact", open=True), wait(86401)],
                        [msg("dc-b1", "door_contact", open=True), wait(80000),
                         msg("dc-b1", "door_contact", open=True), wait(10000)]),
    "elderly_low_water": (f"resident:{RESIDENT}",
                          [until(7), *[_water(1000 + 0.5 * i, 0 if i == 0 else 3600) for i in range(13)]],
                          [until(7), *[_water(1000 + 2.0 * i, 0 if i == 0 else 3600) for i in range(13)]]),
    "stranger_entries": (f"ref:{STRANGER}", [_stranger(0 if i == 0 else 86400) for i in range(5)],
                         [_stranger(0 if i == 0 else 86400) for i in range(4)]),
    "stranger_nights": (f"ref:{STRANGER}", [until(2), _stranger(0), _stranger(86400), _stranger(86400)],
                        [until(2), _stranger(0), _stranger(86400), _stranger(10 * 3600)]),
    "crowd_gathering": ("zone:cam-b1/plaza",
                        [msg("cam-b1", "camera_crowd", zone="plaza", count=25),
                         msg("cam-b1", "camera_crowd", 30, zone="plaza", count=24), wait(31)],
                        [msg("cam-b1", "camera_crowd", zone="plaza", count=25),
                         msg("cam-b1", "camera_crowd", 59, zone="plaza", count=18), wait(10)]),
    "patrol_missed": ("device:patrol-g1",
                      [msg("patrol-g1", "patrol_scan", checkpoint="cp1", guard_ref=PASSER), wait(8101)],
                      [msg("patrol-g1", "patrol_scan", checkpoint="cp1", guard_ref=PASSER),
                       msg("patrol-g1", "patrol_scan", 8000, checkpoint="cp1", guard_ref=PASSER), wait(200)]),
    "perimeter_beam": ("device:ir-g1", [msg("ir-g1", "door_opened", door="fence1")],
                       [msg("ir-g1", "door_closed", door="fence1")]),
    "perimeter_camera": ("device:cam-b1", [_obj("person", 6.0, ("perimeter",))],
                         [_obj("person", 4.0, ("perimeter",))]),
    # Judged once the opening settled (settle_s 3: a grant may still come from another worker).
    "door_forced_open": ("door:door-b1/d1", [msg("door-b1", "door_opened", door="d1"), wait(4)],
                         [_grant("door-b1"), msg("door-b1", "door_opened", 3, door="d1"),
                          msg("door-b1", "door_closed", 5, door="d1"), wait(4)]),
    "door_held_open": ("door:door-b1/d1", [_grant("door-b1"), msg("door-b1", "door_opened", 1, door="d1"), wait(34)],
                       [_grant("door-b1"), msg("door-b1", "door_opened", 1, door="d1"),
                        msg("door-b1", "door_closed", 28, door="d1"), wait(60)]),
    "invalid_credential_burst": ("door:door-b1/d1",
                                 [msg("door-b1", "access_denied", dt, door="d1", method="card",
                                      reason="unknown_credential") for dt in (0, 20, 20)],
                                 [msg("door-b1", "access_denied", dt, door="d1", method="card",
                                      reason="unknown_credential") for dt in (0, 35, 35)]),
    "anti_passback": (f"ref:{PASSER}", [_grant("gate-g1", direction="in"), _grant("gate-g1", 60, direction="in"),
                                        wait(4)],  # judged once the second entry settled (settle_s 3)
                      [_grant("gate-g1", direction="in"), _grant("gate-g1", 30, direction="out"),
                       _grant("gate-g1", 30, direction="in")]),
    "tailgating": ("door:gate-g1/t1", [_grant("gate-g1", door="t1"), msg("gate-g1", "passage", 1, door="t1", count=2),
                                       wait(4)],  # judged once the passage settled (settle_s 3)
                   [_grant("gate-g1", door="t1"), msg("gate-g1", "passage", 1, door="t1", count=1), wait(4)]),
    "duress": ("door:door-b1/d1", [msg("door-b1", "duress", door="d1")], [_grant("door-b1")]),
    "device_offline": ("device:gas-b1",
                       [msg("gas-b1", "birth", session=1, agent="sim", version="1", interval_s=60.0), wait(181)],
                       [msg("gas-b1", "birth", session=1, agent="sim", version="1", interval_s=60.0), wait(170),
                        msg("gas-b1", "heartbeat"), wait(100)]),
    "device_tamper": ("device:cam-b1", [msg("cam-b1", "tamper", kind="covered", active=True)],
                      [msg("cam-b1", "tamper", kind="covered", active=False)]),
    "high_altitude_throw": ("device:cam-b1", [msg("cam-b1", "falling_object", event_id="f1", est_floor=12,
                                                  snapshot="snap-f1")],
                            [msg("cam-b1", "camera_motion", active=True)]),
    "loitering": ("device:cam-b1", [until(23), _obj("person", 130.0)], [until(12), _obj("person", 130.0)]),
    "forced_entry_incident": ("door:door-b1",
                              [msg("door-b1", "door_opened", door="d1"), _obj("person", 0.0, phase="new", dt=5)],
                              [msg("door-b1", "door_opened", door="d1"),
                               msg("cam-b3", "camera_object", 5, event_id="e2", phase="new", label="person",
                                   score=0.9)]),
    "smoke_alarm": ("device:smoke-b1-1", [msg("smoke-b1-1", "smoke_state", alarm=True)],
                    [msg("smoke-b1-1", "smoke_state", alarm=False)]),
    "smoke_confirmed": ("building:b1", [msg("smoke-b1-1", "smoke_state", alarm=True),
                                        msg("smoke-b1-2", "smoke_state", 10, alarm=True)],
                        [msg("smoke-b1-1", "smoke_state", alarm=True),
                         msg("smoke-b1-1", "smoke_state", 10, alarm=True)]),
    "gas_leak": ("device:gas-b1", [msg("gas-b1", "gas_reading", lel_pct=25.0)],
                 [msg("gas-b1", "gas_reading", lel_pct=19.0)]),
    "water_leak": ("device:leak-b1", [msg("leak-b1", "water_leak", wet=True), wait(61)],
                   [msg("leak-b1", "water_leak", wet=True), msg("leak-b1", "water_leak", 59, wet=False), wait(10)]),
    "hydrant_pressure_low": ("device:hydrant-b1",
                             [msg("hydrant-b1", "hydrant_pressure", pressure_mpa=0.08),
                              msg("hydrant-b1", "hydrant_pressure", 300, pressure_mpa=0.08), wait(301)],
                             [msg("hydrant-b1", "hydrant_pressure", pressure_mpa=0.08),
                              msg("hydrant-b1", "hydrant_pressure", 590, pressure_mpa=0.11), wait(100)]),
    "hydrant_pressure_drop": ("device:hydrant-b1",
                              [msg("hydrant-b1", "hydrant_pressure", pressure_mpa=0.30),
                               msg("hydrant-b1", "hydrant_pressure", 30, pressure_mpa=0.24)],
                              [msg("hydrant-b1", "hydrant_pressure", pressure_mpa=0.30),
                               msg("hydrant-b1", "hydrant_pressure", 30, pressure_mpa=0.27),
                               msg("hydrant-b1", "hydrant_pressure", 60, pressure_mpa=0.24)]),
    "fire_door_open": ("device:firedoor-b1", [msg("firedoor-b1", "fire_door_state", open=True), wait(301)],
                       [msg("firedoor-b1", "fire_door_state", open=True),
                        msg("firedoor-b1", "fire_door_state", 299, open=False), wait(10)]),
    "fire_lane_blocked": ("zone:cam-b1/fire_lane", [_obj("vehicle", 310.0, ("fire_lane",))],
                          [_obj("vehicle", 290.0, ("fire_lane",))]),
    "ebike_in_elevator": ("device:elev-b1",
                          [msg("elev-b1", "elevator_ebike", floor=1, detected=True, source="camera"),
                           msg("elev-b1", "elevator_ebike", 2, floor=1, detected=True, source="camera")],
                          [msg("elev-b1", "elevator_ebike", floor=1, detected=True, source="camera"),
                           msg("elev-b1", "elevator_ebike", 2, floor=5, detected=True, source="camera")]),
    "electrical_residual": ("device:elec-b1", [msg("elec-b1", "electrical_reading", residual_ma=350.0, temp_c=30.0)],
                            [msg("elec-b1", "electrical_reading", residual_ma=290.0, temp_c=30.0)]),
    "electrical_temperature": ("device:elec-b1",
                               [msg("elec-b1", "electrical_reading", residual_ma=10.0, temp_c=85.0)],
                               [msg("elec-b1", "electrical_reading", residual_ma=10.0, temp_c=75.0)]),
    "manhole_displaced": ("device:manhole-g1", [msg("manhole-g1", "manhole_tilt", tilt_deg=20.0), wait(3)],
                          [msg("manhole-g1", "manhole_tilt", tilt_deg=20.0),
                           msg("manhole-g1", "manhole_tilt", 1, tilt_deg=5.0), wait(5)]),
    "charging_temperature": ("port:charger-g1/1", [msg("charger-g1", "charger_reading", port=1, temp_c=75.0,
                                                       current_a=5.0)],
                             [msg("charger-g1", "charger_reading", port=1, temp_c=65.0, current_a=5.0)]),
    "charging_current": ("port:charger-g1/1", [msg("charger-g1", "charger_reading", port=1, temp_c=30.0,
                                                   current_a=20.0)],
                         [msg("charger-g1", "charger_reading", port=1, temp_c=30.0, current_a=15.0)]),
}


# ---- the alerting sink without a broker -----------------------------------------------------------------

def make_config(tmp: Path, c: Community | None = None, db_url: str = "", **alerts: Any) -> Any:
    """A Config with the alerting section on, SQLite under tmp unless db_url says otherwise."""
    from commhub.config import AlertsConfig, Config
    a = AlertsConfig(enabled=True, db_url=db_url or f"sqlite:///{tmp}/alerts.db", rules_file=RULES,
                     routing_file=ROUTING, **alerts)
    return Config(community=c or community(), alerts=a)


def accepted(cfg: Any, e: Envelope) -> Any:
    """Wrap an envelope as the worker hands it to sinks."""
    from commhub.topics import Channel, TopicParts
    from hub.ingest.message import Accepted
    dev = cfg.community.device_index().get(e.device_id)
    kind = str(dev.kind) if dev else "panic_button"
    return Accepted(TopicParts(cfg.mqtt.root, cfg.community.site.id, kind, e.device_id, Channel.EVT), e, dev,
                    e.ts.timestamp())


class SinkDriver:
    """Plays scenario steps into an AlertingSink (no MQTT) with a fake clock."""

    def __init__(self, cfg: Any, clock: FakeClock) -> None:
        from hub.alerting import AlertingSink
        self.cfg = cfg
        self.clock = clock
        self.sink = AlertingSink(cfg, clock=clock, mqtt=False)

    def start(self) -> SinkDriver:
        """Start the sink (its own timer is slow: the driver ticks by hand)."""
        self.sink.start()
        return self

    def send(self, device: str, body_type: str, dt: float = 0.0, **fields: Any) -> None:
        """One message dt seconds from now."""
        self.wait(dt)
        self.sink.handle([accepted(self.cfg, env(device, body_type, self.clock(), **fields))])

    def wait(self, s: float, step: float = 0.0) -> None:
        """Advance the clock, ticking at every rule timer and escalation deadline on the way."""
        from sqlalchemy import text
        end = self.clock() + s
        while True:
            with self.sink.db.connect() as conn:
                due = conn.execute(text("SELECT min(due) FROM rule_state WHERE due IS NOT NULL")).scalar()
                esc = conn.execute(text("SELECT min(escalate_at) FROM alerts WHERE escalate_at IS NOT NULL "
                                        "AND state IN ('open', 'escalated')")).scalar()
            nxt = min([x for x in (due, esc) if x is not None and x <= end] or [end])
            self.clock.t = max(nxt, self.clock())
            self.sink.tick()
            if nxt >= end:
                return

    def run(self, steps: list[Step]) -> None:
        """Play scenario steps."""
        play(steps, self.clock, self.wait, self.send)

    def alerts(self, **where: Any) -> list[dict[str, Any]]:
        """Alert rows."""
        return self.sink.store.alerts(**where)

    def stop(self) -> None:
        """Stop the sink."""
        self.sink.stop()


# ---- the real hub worker and broker -----------------------------------------------------------------------

def race(drivers: list[SinkDriver], rounds: int, sends: list[tuple[str, str, dict[str, Any]]]) -> list[BaseException]:
    """Each driver sends the same messages `rounds` times from its own thread, all at once; returns the errors."""
    errors: list[BaseException] = []

    def press(d: SinkDriver) -> None:
        try:
            for _ in range(rounds):
                for device, body_type, fields in sends:
                    d.send(device, body_type, **fields)
        except BaseException as e:  # surfaced to the test
            errors.append(e)

    threads = [threading.Thread(target=press, args=(d,)) for d in drivers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return errors


class CountingSink:
    """Wraps the alerting sink to tell the test when a batch has been handled (the worker calls it)."""

    def __init__(self, sink: Any) -> None:
        import threading
        self.sink = sink
        self.handled = 0
        self._cv = threading.Condition()

    def start(self) -> None:
        """Start the wrapped sink."""
        self.sink.start()

    def handle(self, batch: Any) -> None:
        """Handle, then count."""
        self.sink.handle(batch)
        with self._cv:
            self.handled += len(batch)
            self._cv.notify_all()

    def stop(self) -> None:
        """Stop the wrapped sink."""
        self.sink.stop()


class Rig:
    """Broker + real hub worker(s) with the alerting sink + a device publisher + an alert-topic listener."""

    def __init__(self, tmp: Path, broker: Any, site: str, clock: FakeClock, workers: int = 1,
                 db_url: str = "", **alerts: Any) -> None:
        self.tmp = tmp
        self.broker = broker
        self.site = site
        self.clock = clock
        self.n_workers = workers
        self.db_url = db_url or f"sqlite:///{tmp}/alerts.db"
        self.alerts_kw = {"tick_s": 0.1, **alerts}
        self.community = community(site)
        self.notices: list[Any] = []
        self.received_at: dict[int, float] = {}
        self.workers: list[Any] = []
        self.sinks: list[CountingSink] = []
        self.published = 0
        self._gen = 0

    def config(self, i: int) -> Any:
        """The config of worker i."""
        from commhub.config import AlertsConfig, Config, HubConfig, InfluxConfig, MetricsConfig, MqttConfig, SpoolConfig
        hub = HubConfig(worker_id=f"{self.site}-w{i}", metrics=MetricsConfig(port=0),
                        spool=SpoolConfig(dir=self.tmp / f"spool{i}", fsync=False),
                        snapshots_dir=self.tmp / "snapshots", batch_wait_ms=2.0)
        return Config(mqtt=MqttConfig(host=self.broker.host, port=self.broker.port, root=self.site), hub=hub,
                      influx=InfluxConfig(url="http://127.0.0.1:9", transport="v1"), community=self.community,
                      alerts=AlertsConfig(enabled=True, db_url=self.db_url, rules_file=RULES, routing_file=ROUTING,
                                          **self.alerts_kw))

    def start(self) -> Rig:
        """Listener first, then the workers, then the publisher."""
        import paho.mqtt.client as paho

        from commhub import topics
        from commhub.config import MqttConfig
        from commhub.mqtt import connect, make_client
        from commhub.wire import AlertNotice
        if not hasattr(self, "listener"):
            mc = MqttConfig(host=self.broker.host, port=self.broker.port, root=self.site)
            self.listener = make_client(f"{self.site}-listen", mc)

            def on_message(_c: Any, _u: Any, m: paho.MQTTMessage) -> None:
                import time
                n = AlertNotice.model_validate_json(m.payload)
                self.received_at.setdefault(n.notice_id, time.time())
                self.notices.append(n)

            self.listener.on_message = on_message
            connect(self.listener, mc)
            self.listener.subscribe(topics.alerts_filter(self.site), qos=1)
            self.listener.loop_start()
            self.pub = make_client(f"{self.site}-pub", mc)
            connect(self.pub, mc)
            self.pub.loop_start()
        self.start_workers()
        return self

    def start_workers(self) -> None:
        """Start fresh workers and sinks (again after stop_workers: a hub restart)."""
        from hub.alerting import AlertingSink
        from hub.worker import Worker
        self.sinks = [CountingSink(AlertingSink(self.config(i), clock=self.clock)) for i in range(self.n_workers)]
        self.workers = [Worker(self.config(i), sinks=[s]) for i, s in enumerate(self.sinks)]
        for w in self.workers:
            w.start()
        for w in self.workers:
            assert w.wait_connected(60), "hub worker did not connect"

    def stop_workers(self) -> None:
        """Stop the workers (and their sinks)."""
        for w in self.workers:
            w.stop(flush_timeout=0.5)
        self.workers = []

    def stop(self) -> None:
        """Stop everything."""
        self.stop_workers()
        for c in (getattr(self, "pub", None), getattr(self, "listener", None)):
            if c is not None:
                c.disconnect()
                c.loop_stop()

    @property
    def sink(self) -> Any:
        """The first alerting sink."""
        return self.sinks[0].sink

    def handled(self) -> int:
        """Messages the current sinks have handled."""
        return sum(s.handled for s in self.sinks)

    def publish(self, e: Envelope, wait: bool = True) -> None:
        """Publish one envelope on its device topic (QoS 1) and wait until a sink handled it."""
        import time

        from commhub import topics
        from commhub.wire import body_channel
        dev = self.community.device_index()[e.device_id]
        topic = topics.device(self.site, self.site, str(dev.kind), e.device_id, body_channel(e.body.type))
        before = self.handled()
        self.pub.publish(topic, e.to_json(), qos=1).wait_for_publish(5)
        self.published += 1
        if wait:
            deadline = time.monotonic() + 10
            while self.handled() <= before:
                assert time.monotonic() < deadline, "the hub did not handle a published message"
                time.sleep(0.002)

    def wait_handled(self, n: int, timeout: float = 30.0) -> None:
        """Until the sinks have handled n messages."""
        import time
        deadline = time.monotonic() + timeout
        while self.handled() < n:
            assert time.monotonic() < deadline, f"handled {self.handled()} of {n}"
            time.sleep(0.01)

    def send(self, device: str, body_type: str, dt: float = 0.0, **fields: Any) -> None:
        """Advance the fake clock by dt, then publish."""
        self.wait(dt)
        self.publish(env(device, body_type, self.clock(), **fields))

    def wait(self, s: float) -> None:
        """Advance the fake clock, ticking the sink at each timer on the way."""
        driver = SinkDriver.__new__(SinkDriver)
        driver.sink, driver.clock = self.sink, self.clock
        SinkDriver.wait(driver, s)

    def run(self, steps: list[Step]) -> None:
        """Play scenario steps."""
        play(steps, self.clock, self.wait, self.send)

    def wait_notice(self, pred: Any, timeout: float = 30.0) -> Any:
        """The first MQTT notice matching pred, waiting for it."""
        import time
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for n in list(self.notices):
                if pred(n):
                    return n
            time.sleep(0.005)
        return None


def run_in_batches(engine: Engine, events: list[Event]) -> tuple[list[tuple[str, str, str, float]], MemoryStates, int]:
    """Feed batches of 250 and tick after each, as the hub does; (signals, final states, steps taken)."""
    store = MemoryStates()
    engine.seed(store, events[0].t - 1)
    out: list[Signal] = []
    steps = 0
    for i in range(0, len(events), 250):
        batch = events[i:i + 250]
        work = engine.plan(batch)
        steps += len(work)
        out += engine.run(work, store)
        now = max(ev.t for ev in batch)
        out += engine.write_back(store, now, force=True)
        out += engine.tick(store, now)
    return [(s.action, s.rule, s.subject, s.t) for s in out], store, steps


def check_held_runs(store: Any) -> None:
    """Held messages kept by two transactions (two workers' batches), one of them in two runs under one marker,
    come back merged in (time, seq, device) order, each once, none of a marker not asked for; then they are
    gone. Run with a small reorder.RUN_PART, so runs span parts."""
    msgs = [(f"door-b{i % 3}", T0 + i // 2, 10 + i % 4, "door_controller", i % 2 == 0, f'{{"i":{i}}}')
            for i in range(9)]
    a, b, other = "1.000:a:0", "2.000:b:0", "3.000:c:0"
    with store.tx() as tx:
        for m in msgs[:5]:
            tx.keep(a, m)
    with store.tx() as tx:
        for m in [*msgs[5:], msgs[3]]:  # a redelivery, kept again by the other worker
            tx.keep(b, m)
        tx.flush()
        tx.keep(b, msgs[6])  # and once more in the same transaction: a second run under the marker
        tx.keep(other, ("gate-g1", T0, 1, "face_gate", False, "{}"))
    with store.tx() as tx:
        got = list(tx.kept([a, b]))
        tx.unkeep([a, b])
    assert got == sorted(msgs, key=lambda m: (m[1], m[2], m[0]))
    with store.tx() as tx:
        assert list(tx.kept([a, b])) == []
        assert [m[0] for m in tx.kept([other])] == ["gate-g1"]


# Rule-state keys as a hostile or merely unusual world makes them (PostgreSQL gets them as array elements, and in
# the upsert inside one JSON text).
ODD_KEYS = ["door-b1/main", "a,b", 'q"uote', "back\\slash", "{brace}", "NULL", "", " padded ", "网格/一号楼/单元",
            "tab\there", "new\nline", "'single'", "x" * 200, '{"rule": "x", "key": "y"}', "\\u0000", "]},{",
            "line\u2028sep", "门🚪", "null", "\\"]


def check_state_keys(store: Any) -> None:
    """Rule state under odd keys is written, read (plain, optimistic and locked), changed and deleted as itself."""
    from hub.rules.event import State
    rule = "door_held_open"
    with store.tx() as tx:
        for i, k in enumerate(ODD_KEYS):
            tx.save(rule, k, State({"i": i, "k": k}, T0 + i))
    for optimistic in (True, False):
        with store.tx(optimistic=optimistic) as tx:
            tx.prefetch({(rule, k) for k in [*ODD_KEYS, "missing"]})
            got = {k: tx.load(rule, k) for k in ODD_KEYS}
            missing = tx.load(rule, "missing")  # none, or PostgreSQL's empty placeholder of a locking read
            assert missing is None or (missing.data, missing.due) == ({}, None)
        assert {k: (st.data, st.due) for k, st in got.items() if st} == \
            {k: ({"i": i, "k": k}, T0 + i) for i, k in enumerate(ODD_KEYS)}
    with store.tx(optimistic=True) as tx:  # changed (the optimistic claim locks and checks each row's version)
        for i, k in enumerate(ODD_KEYS):
            st = tx.load(rule, k)
            tx.save(rule, k, State() if i % 2 else State({**st.data, "n": 1}, None))
    with store.tx() as tx:
        left = {k: tx.load(rule, k) for k in ODD_KEYS}
    # Deleted: none (or an empty placeholder, as above).
    assert {k: (st.data, st.due) for k, st in left.items() if st is not None and (st.data or st.due)} == \
        {k: ({"i": i, "k": k, "n": 1}, None) for i, k in enumerate(ODD_KEYS) if i % 2 == 0}
