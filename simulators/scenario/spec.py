"""The scenario file: normal life, incidents injected on top of it, and the alerts expected (ground truth)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator

from commhub.wire import Ident, Label, Severity
from simulators.units import parse_duration, parse_start

Seconds = Annotated[float, BeforeValidator(parse_duration), Field(ge=0)]


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _Incident(_Spec):
    at: Seconds = Field(description="When it starts, after the scenario start (simulated).")
    device: Ident = Field(description="The device it happens at.")


class ForcedOpen(_Incident):
    """A door opened with no grant or exit request (or, as a near miss, right after an exit request)."""

    action: Literal["forced_open"]
    open_for: Seconds = 60.0
    authorized: bool = Field(default=False, description="Near miss: an exit request 2 s before the opening.")


class HeldOpen(_Incident):
    """A granted door that stays open."""

    action: Literal["held_open"]
    open_for: Seconds = 120.0


class Tailgate(_Incident):
    """One grant at a gate or turnstile, several people through."""

    action: Literal["tailgate"]
    passages: int = Field(default=2, ge=1, le=100)


class CredentialBurst(_Incident):
    """Denied credentials at one reader in quick succession."""

    action: Literal["credential_burst"]
    denials: int = Field(default=4, ge=1, le=100)
    spacing: Seconds = 8.0


class DuressCode(_Incident):
    """A duress PIN entered at a reader."""

    action: Literal["duress"]


class SmokeAlarm(_Incident):
    """A detector in alarm, clearing after a while."""

    action: Literal["smoke"]
    alarm_for: Seconds = 600.0


class HydrantDrop(_Incident):
    """Hydrant/sprinkler-end pressure falling to a level (at once, or over ramp), then restored."""

    action: Literal["hydrant_drop"]
    to_mpa: float = Field(default=0.05, ge=0, le=10)
    ramp: Seconds = 0.0
    lasts: Seconds = 900.0


class GasLeak(_Incident):
    """Gas at a %LEL level, reported every `every` while it lasts."""

    action: Literal["gas"]
    lel_pct: float = Field(default=35.0, ge=0, le=100)
    lasts: Seconds = 600.0
    every: Seconds = 30.0


class NoActivity(_Incident):
    """An opted-in resident's door contact and water meter go still (heartbeats continue)."""

    action: Literal["no_activity"]
    devices: tuple[Ident, ...] = Field(default=(), description="More devices of the same household.")
    lasts: Seconds = 90000.0


class EbikeInLift(_Incident):
    """An e-bike seen in a lift car on several frames."""

    action: Literal["ebike_in_lift"]
    floor: int = Field(default=0, ge=-10, le=200)
    frames: int = Field(default=3, ge=1, le=50)
    spacing: Seconds = 1.0
    source: Literal["camera", "rfid"] = "camera"


class VehicleInZone(_Incident):
    """A vehicle standing in a camera zone (the fire lane by default)."""

    action: Literal["vehicle_in_zone"]
    zone: Label = "fire_lane"
    lasts: Seconds = 480.0
    every: Seconds = 30.0


class Offline(_Incident):
    """The device says nothing at all for a while."""

    action: Literal["offline"]
    lasts: Seconds


class CameraCovered(_Incident):
    """A camera's lens covered: a tamper flag, and no analytics until uncovered."""

    action: Literal["camera_covered"]
    lasts: Seconds = 120.0
    kind: Literal["covered", "defocused", "moved", "signal_lost"] = "covered"


class Crowd(_Incident):
    """A crowd count in a zone, reported every `every` while it lasts."""

    action: Literal["crowd"]
    zone: Label = "plaza"
    count: int = Field(default=15, ge=0, le=10000)
    lasts: Seconds = 180.0
    every: Seconds = 10.0


class SkipPatrol(_Incident):
    """A patrol checkpoint's next scheduled scan(s) skipped, or (with late_by) only made late."""

    action: Literal["skip_patrol"]
    rounds: int = Field(default=1, ge=1, le=24)
    late_by: Seconds | None = Field(default=None, description="Near miss: the scan happens this late instead.")


class Intrusion(_Incident):
    """A person in a camera's armed zone for a while."""

    action: Literal["intrusion"]
    zone: Label = "perimeter"
    lasts: Seconds = 20.0
    every: Seconds = 2.0


class AgentCrash(_Incident):
    """An edge agent dies (SIGKILL: its will tells) or, as a near miss, stops cleanly (announced)."""

    action: Literal["agent_crash"]
    agent: Label = Field(description="The agent's name; it serves `device` and `devices` (their births say so).")
    devices: tuple[Ident, ...] = Field(default=(), description="More devices the agent serves.")
    clean: bool = Field(default=False, description="Near miss: a planned stop the agent announces.")


class RawMessage(_Spec):
    """One message of a raw incident."""

    after: Seconds = 0.0
    body: dict[str, Any]


class Raw(_Incident):
    """Any bodies, published as given (validated against the wire models)."""

    action: Literal["raw"]
    messages: tuple[RawMessage, ...] = Field(min_length=1)
    silence: Seconds = Field(default=0.0, description="Also mute the device's own activity this long.")


Incident = Annotated[
    ForcedOpen | HeldOpen | Tailgate | CredentialBurst | DuressCode | SmokeAlarm | HydrantDrop | GasLeak
    | NoActivity | EbikeInLift | VehicleInZone | Offline | CameraCovered | Crowd | SkipPatrol | Intrusion | Raw
    | AgentCrash,
    Field(discriminator="action"),
]


class Expect(_Spec):
    """One alert that must be raised (ground truth): its code, where, and by when."""

    code: Label
    device: Ident | None = None
    grid: Ident | None = None
    building: Ident | None = None
    unit: Ident | None = None
    severity: Severity | None = Field(default=None, description=(
        "Only an alert of this severity counts; a severity step (low, then medium) is a sighting of its own."))
    paged: bool | None = Field(default=None, description=(
        "true: it must have been delivered to someone; false: kept quiet (silence, maintenance, inhibition)."))
    recipients: tuple[str, ...] = Field(default=(), description=(
        "Roles (grid_worker) or role:id (grid_worker:gw-day-g1) it must have been routed to."))
    after: Seconds | None = Field(default=None, description="Reference time (default: the first incident's at).")
    within: Seconds = Field(description="Deadline after the reference time (simulated).")


class Background(_Spec):
    """Which devices live their normal life around the incidents (incident devices always do)."""

    grids: tuple[Ident, ...] | None = None
    buildings: tuple[Ident, ...] | None = None
    kinds: tuple[Label, ...] | None = None
    devices: tuple[Ident, ...] | None = None
    limit: int | None = Field(default=None, ge=0, description="At most this many (round-robin over kinds).")


class Late(_Spec):
    """One device's messages in [at, at + lasts) held back and delivered together at the end (a spool replay)."""

    device: Ident
    at: Seconds = Field(description="When its link drops, after the scenario start (simulated).")
    lasts: Seconds = Field(gt=0, description="How long; its messages of that time arrive when it ends.")
    order: Literal["in_order", "shuffled"] = "in_order"
    heartbeats: bool = Field(default=False, description=(
        "Heartbeats still arrive on time (an event queue backed up while the link stayed up)."))


class Delivery(_Spec):
    """Faults of the delivery path (an at-least-once broker repeats messages; a spool replays them late)."""

    duplicate_share: float = Field(default=0.0, ge=0, le=1, description=(
        "Share of messages delivered twice (offline rules loop only)."))
    late: tuple[Late, ...] = Field(default=(), description="Windows of late (historical) delivery.")


class Scenario(_Spec):
    """One scenario file."""

    name: Label
    description: str = ""
    seed: int = 1
    start: str = Field(description="Simulated start, ISO-8601 with offset, e.g. 2026-03-02T01:30:00+08:00.")
    duration: Seconds = Field(gt=0)
    speed: float = Field(default=60.0, gt=0, description="Simulated seconds per wall second.")
    background: Background = Background()
    incidents: tuple[Incident, ...] = ()
    expect: tuple[Expect, ...] = ()
    allow: tuple[Label, ...] = Field(default=(), description="Alert codes tolerated though not expected.")
    delivery: Delivery = Delivery()

    @model_validator(mode="after")
    def _check(self) -> Scenario:
        parse_start(self.start)
        for i, inc in enumerate(self.incidents):
            if inc.at >= self.duration:
                raise ValueError(f"incidents[{i}]: at {inc.at:g}s is not before the end ({self.duration:g}s)")
        if self.expect and not self.incidents:
            raise ValueError("expected alerts need at least one incident")
        for i, exp in enumerate(self.expect):
            if self.reference(exp) + exp.within > self.duration:
                raise ValueError(f"expect[{i}] ({exp.code}): the deadline is after the scenario ends; "
                                 f"make duration at least {self.reference(exp) + exp.within:g}s")
        return self

    @property
    def start_ts(self) -> float:
        """Simulated start, epoch seconds."""
        return parse_start(self.start)

    def reference(self, exp: Expect) -> float:
        """Seconds after start that an expectation's deadline counts from."""
        if exp.after is not None:
            return exp.after
        return min(inc.at for inc in self.incidents) if self.incidents else 0.0


class ScenarioError(Exception):
    """A scenario file is unreadable or invalid; the message names the file, the path in it and the reason."""


def load_scenario(path: str | Path) -> Scenario:
    """Read and validate a scenario file."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise ScenarioError(f"{path}: cannot read: {e.strerror}") from None
    except yaml.YAMLError as e:
        raise ScenarioError(f"{path}: not valid YAML: {e}") from None
    if not isinstance(data, dict):
        raise ScenarioError(f"{path}: <root>: expected a mapping")
    try:
        return Scenario.model_validate(data)
    except ValidationError as e:
        lines = []
        for err in e.errors():
            where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in err["loc"]).lstrip(".")
            lines.append(f"{path}: {where or '<root>'}: {err['msg']}")
        raise ScenarioError("\n".join(lines)) from None
