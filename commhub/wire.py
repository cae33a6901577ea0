"""Every message on the wire, as frozen and strict pydantic models.

A payload is an `Envelope` whose `body` is one member of a discriminated union (by `type`).
Each device kind may send only the body types listed in `KIND_BODIES`; each body type travels on one
channel (`BODY_CHANNEL`). Persons are referenced only by opaque hashed refs, never by name or face.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, ClassVar, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator

SCHEMA: Literal[1] = 1
_TS_MIN = datetime(1970, 1, 1, tzinfo=UTC)
_TS_MAX = datetime(2262, 4, 11, tzinfo=UTC)

Ident = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]*$")]
# An opaque, hashed person/credential reference: never a name, card number or face.
PersonRef = Annotated[str, Field(min_length=8, max_length=64, pattern=r"^[a-f0-9]+$")]
Label = Annotated[str, Field(min_length=1, max_length=48, pattern=r"^[a-z0-9_]+$")]


class Layer(StrEnum):
    """The three layers of prevention."""

    PEOPLE = "people"
    TECHNICAL = "technical"
    FACILITY = "facility"


class _Wire(BaseModel):
    # No Infinity or NaN (JSON has neither; `1e999` parses to inf): InfluxDB cannot store them, and a rule would
    # compare against them. They are refused at the schema, with the field named.
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)


class _Body(_Wire):
    channel: ClassVar[str] = "evt"


# ---- access control (technical layer) -------------------------------------------------------------

class AccessGranted(_Body):
    type: Literal["access_granted"] = "access_granted"
    door: Ident
    credential_ref: PersonRef
    method: Literal["card", "face", "pin", "qr", "remote"]
    direction: Literal["in", "out"] = "in"
    registered: bool = True


class AccessDenied(_Body):
    type: Literal["access_denied"] = "access_denied"
    door: Ident
    credential_ref: PersonRef | None = None
    method: Literal["card", "face", "pin", "qr", "remote"]
    reason: Literal["unknown_credential", "expired", "out_of_schedule", "anti_passback", "blacklisted",
                    "face_mismatch", "other"]
    direction: Literal["in", "out"] = "in"


class DoorOpened(_Body):
    type: Literal["door_opened"] = "door_opened"
    door: Ident


class DoorClosed(_Body):
    type: Literal["door_closed"] = "door_closed"
    door: Ident


class ExitRequest(_Body):
    type: Literal["exit_request"] = "exit_request"
    door: Ident


class Passage(_Body):
    """A counted passage through a gate or turnstile (several per grant means tailgating)."""

    type: Literal["passage"] = "passage"
    door: Ident
    count: int = Field(ge=1, le=100)
    direction: Literal["in", "out"] = "in"


class Duress(_Body):
    type: Literal["duress"] = "duress"
    door: Ident


class Tamper(_Body):
    type: Literal["tamper"] = "tamper"
    kind: Literal["enclosure", "reader", "wiring", "covered", "defocused", "moved", "signal_lost", "other"]
    active: bool = True


class ReaderOffline(_Body):
    type: Literal["reader_offline"] = "reader_offline"
    door: Ident


# ---- camera analytics (technical layer) -----------------------------------------------------------

class Box(_Wire):
    x: int = Field(ge=0)
    y: int = Field(ge=0)
    w: int = Field(ge=0)
    h: int = Field(ge=0)


class CameraObject(_Body):
    """Frigate-like change feed for one tracked object: new, then updates, then end."""

    type: Literal["camera_object"] = "camera_object"
    event_id: Ident
    phase: Literal["new", "update", "end"]
    label: Literal["person", "vehicle", "ebike", "object"]
    score: float = Field(ge=0.0, le=1.0)
    box: Box | None = None
    zones: tuple[Label, ...] = ()
    entered_zones: tuple[Label, ...] = ()
    dwell_s: float = Field(default=0.0, ge=0.0)
    snapshot: Ident | None = None


class CameraLineCross(_Body):
    type: Literal["camera_line_cross"] = "camera_line_cross"
    event_id: Ident
    line: Label
    direction: Literal["in", "out"]
    label: Literal["person", "vehicle", "ebike", "object"] = "person"
    snapshot: Ident | None = None


class CameraCrowd(_Body):
    type: Literal["camera_crowd"] = "camera_crowd"
    zone: Label
    count: int = Field(ge=0, le=10000)
    snapshot: Ident | None = None


class CameraMotion(_Body):
    type: Literal["camera_motion"] = "camera_motion"
    active: bool
    zones: tuple[Label, ...] = ()
    area_pct: float = Field(default=0.0, ge=0.0, le=100.0)


class FallingObject(_Body):
    """High-altitude throw: a falling trajectory seen by an upward camera."""

    type: Literal["falling_object"] = "falling_object"
    event_id: Ident
    est_floor: int | None = Field(default=None, ge=0, le=200)
    snapshot: Ident | None = None


# ---- facility layer --------------------------------------------------------------------------------

class _Reading(_Body):
    channel: ClassVar[str] = "tele"


class SmokeState(_Body):
    type: Literal["smoke_state"] = "smoke_state"
    alarm: bool
    obscuration_pct_m: float | None = Field(default=None, ge=0.0, le=100.0)


class GasReading(_Reading):
    type: Literal["gas_reading"] = "gas_reading"
    lel_pct: float = Field(ge=0.0, le=100.0)


class WaterLeak(_Body):
    type: Literal["water_leak"] = "water_leak"
    wet: bool


class HydrantPressure(_Reading):
    type: Literal["hydrant_pressure"] = "hydrant_pressure"
    pressure_mpa: float = Field(ge=0.0, le=10.0)


class FireDoorState(_Body):
    type: Literal["fire_door_state"] = "fire_door_state"
    open: bool


class ManholeTilt(_Reading):
    type: Literal["manhole_tilt"] = "manhole_tilt"
    tilt_deg: float = Field(ge=0.0, le=180.0)


class ElevatorEbike(_Body):
    type: Literal["elevator_ebike"] = "elevator_ebike"
    floor: int = Field(ge=-10, le=200)
    detected: bool
    source: Literal["camera", "rfid"]


class ChargerReading(_Reading):
    type: Literal["charger_reading"] = "charger_reading"
    port: int = Field(ge=0, le=255)
    temp_c: float = Field(ge=-50.0, le=500.0)
    current_a: float = Field(ge=0.0, le=1000.0)


class ElectricalReading(_Reading):
    type: Literal["electrical_reading"] = "electrical_reading"
    residual_ma: float = Field(ge=0.0, le=10000.0)
    temp_c: float = Field(ge=-50.0, le=500.0)


class WaterMeter(_Reading):
    type: Literal["water_meter"] = "water_meter"
    total_l: float = Field(ge=0.0)
    flow_l: float = Field(ge=0.0)


class PanicPress(_Body):
    type: Literal["panic_press"] = "panic_press"


class PatrolScan(_Body):
    type: Literal["patrol_scan"] = "patrol_scan"
    checkpoint: Ident
    guard_ref: PersonRef
    method: Literal["qr", "nfc", "other"] | None = None


class ResidentReport(_Body):
    """A resident's report taken in at a terminal or by staff; its text and photo stay in SQL, off the wire."""

    type: Literal["resident_report"] = "resident_report"
    report_id: Ident
    category: Literal["safety", "fire", "noise", "facility", "welfare", "other"]
    place_grid: Ident
    place_building: Ident | None = None
    place_unit: Ident | None = None
    source: Literal["terminal", "staff"]
    has_photo: bool = False
    alert_id: int | None = Field(default=None, ge=0, description="The ticket the report opened.")


class DoorContact(_Body):
    """A plain door contact, e.g. on an opted-in elderly resident's front door."""

    type: Literal["door_contact"] = "door_contact"
    open: bool


class EnvReading(_Reading):
    """Room climate, e.g. replayed from the UCI occupancy recordings."""

    type: Literal["env_reading"] = "env_reading"
    temp_c: float = Field(ge=-50.0, le=100.0)
    humidity_pct: float | None = Field(default=None, ge=0.0, le=100.0)
    light_lux: float | None = Field(default=None, ge=0.0)
    co2_ppm: float | None = Field(default=None, ge=0.0)


# ---- every device --------------------------------------------------------------------------------

class Heartbeat(_Reading):
    type: Literal["heartbeat"] = "heartbeat"
    uptime_s: float = Field(default=0.0, ge=0.0)


class Birth(_Body):
    """Sent on every connect; `session` grows per connect, like Sparkplug's bdSeq."""

    channel: ClassVar[str] = "birth"
    type: Literal["birth"] = "birth"
    session: int = Field(ge=0)
    agent: Label
    version: str = Field(max_length=32)
    interval_s: float = Field(gt=0.0, le=86400.0)


class DeviceState(_Body):
    """Retained online/offline; the will publishes `offline` with the session it belongs to."""

    channel: ClassVar[str] = "state"
    type: Literal["state"] = "state"
    status: Literal["online", "offline"]
    session: int = Field(ge=0)
    clean: bool = Field(default=False, description="offline by a planned stop (not a will): nothing to alert.")


Body = Annotated[
    AccessGranted | AccessDenied | DoorOpened | DoorClosed | ExitRequest | Passage | Duress | Tamper
    | ReaderOffline | CameraObject | CameraLineCross | CameraCrowd | CameraMotion | FallingObject
    | SmokeState | GasReading | WaterLeak | HydrantPressure | FireDoorState | ManholeTilt | ElevatorEbike
    | ChargerReading | ElectricalReading | WaterMeter | PanicPress | PatrolScan | DoorContact | EnvReading
    | ResidentReport | Heartbeat | Birth | DeviceState,
    Field(discriminator="type"),
]


class Envelope(_Wire):
    """What every device publishes."""

    schema_: Literal[1] = Field(default=SCHEMA, alias="schema")
    device_id: Ident
    ts: AwareDatetime
    seq: int = Field(ge=0, lt=2**63)
    historical: bool = False
    body: Body

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, populate_by_name=True)

    @field_validator("ts", mode="after")
    @classmethod
    def _utc(cls, v: datetime) -> datetime:
        try:
            utc = v.astimezone(UTC)
        except OverflowError:
            raise ValueError("timestamp out of range") from None
        # InfluxDB stores nanoseconds since 1970 in an int64: nothing outside that range can be kept.
        if not _TS_MIN <= utc < _TS_MAX:
            raise ValueError(f"timestamp must be between {_TS_MIN:%Y-%m-%d} and {_TS_MAX:%Y-%m-%d}")
        return utc

    def to_json(self) -> bytes:
        """Serialize for the wire."""
        return self.model_dump_json(by_alias=True, exclude_defaults=False).encode()


_COMMON = ("heartbeat", "birth", "state", "tamper")


class DeviceKind(StrEnum):
    """Device kinds, the third level of a device topic."""

    DOOR_CONTROLLER = "door_controller"
    FACE_GATE = "face_gate"
    TURNSTILE = "turnstile"
    CAMERA = "camera"
    INTRUSION = "intrusion"
    SMOKE = "smoke"
    GAS = "gas"
    WATER_LEAK = "water_leak"
    HYDRANT = "hydrant"
    FIRE_DOOR = "fire_door"
    MANHOLE = "manhole"
    ELEVATOR = "elevator"
    CHARGER = "charger"
    ELECTRICAL = "electrical"
    WATER_METER = "water_meter"
    PANIC_BUTTON = "panic_button"
    DOOR_CONTACT = "door_contact"
    PATROL = "patrol"
    ENV = "env"
    REPORT_DESK = "report_desk"  # where residents' reports come in: a terminal, or the API on staff's behalf
    AGENT = "agent"  # the edge agent process itself: its state is the MQTT will (see edge_agents/base)


_ACCESS = ("access_granted", "access_denied", "door_opened", "door_closed", "exit_request", "passage",
           "duress", "reader_offline")
_CAMERA = ("camera_object", "camera_line_cross", "camera_crowd", "camera_motion", "falling_object")

KIND_BODIES: dict[DeviceKind, frozenset[str]] = {
    DeviceKind.DOOR_CONTROLLER: frozenset((*_ACCESS, *_COMMON)),
    DeviceKind.FACE_GATE: frozenset((*_ACCESS, *_COMMON)),
    DeviceKind.TURNSTILE: frozenset((*_ACCESS, *_COMMON)),
    DeviceKind.CAMERA: frozenset((*_CAMERA, "elevator_ebike", *_COMMON)),
    DeviceKind.INTRUSION: frozenset(("door_opened", "door_closed", *_COMMON)),
    DeviceKind.SMOKE: frozenset(("smoke_state", *_COMMON)),
    DeviceKind.GAS: frozenset(("gas_reading", *_COMMON)),
    DeviceKind.WATER_LEAK: frozenset(("water_leak", *_COMMON)),
    DeviceKind.HYDRANT: frozenset(("hydrant_pressure", *_COMMON)),
    DeviceKind.FIRE_DOOR: frozenset(("fire_door_state", *_COMMON)),
    DeviceKind.MANHOLE: frozenset(("manhole_tilt", *_COMMON)),
    DeviceKind.ELEVATOR: frozenset(("elevator_ebike", *_COMMON)),
    DeviceKind.CHARGER: frozenset(("charger_reading", *_COMMON)),
    DeviceKind.ELECTRICAL: frozenset(("electrical_reading", *_COMMON)),
    DeviceKind.WATER_METER: frozenset(("water_meter", *_COMMON)),
    DeviceKind.PANIC_BUTTON: frozenset(("panic_press", *_COMMON)),
    DeviceKind.DOOR_CONTACT: frozenset(("door_contact", *_COMMON)),
    DeviceKind.PATROL: frozenset(("patrol_scan", *_COMMON)),
    DeviceKind.ENV: frozenset(("env_reading", *_COMMON)),
    DeviceKind.REPORT_DESK: frozenset(("resident_report", "heartbeat", "birth", "state")),
    DeviceKind.AGENT: frozenset(("heartbeat", "birth", "state")),
}

KIND_LAYER: dict[DeviceKind, Layer] = {
    DeviceKind.DOOR_CONTROLLER: Layer.TECHNICAL,
    DeviceKind.FACE_GATE: Layer.TECHNICAL,
    DeviceKind.TURNSTILE: Layer.TECHNICAL,
    DeviceKind.CAMERA: Layer.TECHNICAL,
    DeviceKind.INTRUSION: Layer.TECHNICAL,
    DeviceKind.SMOKE: Layer.FACILITY,
    DeviceKind.GAS: Layer.FACILITY,
    DeviceKind.WATER_LEAK: Layer.FACILITY,
    DeviceKind.HYDRANT: Layer.FACILITY,
    DeviceKind.FIRE_DOOR: Layer.FACILITY,
    DeviceKind.MANHOLE: Layer.FACILITY,
    DeviceKind.ELEVATOR: Layer.FACILITY,
    DeviceKind.CHARGER: Layer.FACILITY,
    DeviceKind.ELECTRICAL: Layer.FACILITY,
    DeviceKind.WATER_METER: Layer.PEOPLE,
    DeviceKind.PANIC_BUTTON: Layer.PEOPLE,
    DeviceKind.DOOR_CONTACT: Layer.PEOPLE,
    DeviceKind.PATROL: Layer.PEOPLE,
    DeviceKind.ENV: Layer.FACILITY,
    DeviceKind.REPORT_DESK: Layer.PEOPLE,
    DeviceKind.AGENT: Layer.TECHNICAL,
}

BODY_TYPES: dict[str, type[_Body]] = {
    cls.model_fields["type"].default: cls
    for cls in (AccessGranted, AccessDenied, DoorOpened, DoorClosed, ExitRequest, Passage, Duress, Tamper,
                ReaderOffline, CameraObject, CameraLineCross, CameraCrowd, CameraMotion, FallingObject,
                SmokeState, GasReading, WaterLeak, HydrantPressure, FireDoorState, ManholeTilt, ElevatorEbike,
                ChargerReading, ElectricalReading, WaterMeter, PanicPress, PatrolScan, DoorContact, EnvReading,
                ResidentReport, Heartbeat, Birth, DeviceState)
}


_CHANNELS = {name: cls.channel for name, cls in BODY_TYPES.items()}  # ClassVar lookups on models are slow


def body_channel(body_type: str) -> str:
    """The channel a body type travels on."""
    return _CHANNELS[body_type]



_VALIDATE_ENVELOPE = Envelope.__pydantic_validator__.validate_json


def parse_envelope(payload: bytes | str) -> Envelope:
    """Validate a JSON payload; raises pydantic.ValidationError."""
    # The schema's own validator, as model_validate_json calls it, without that wrapper's per-call overhead.
    env: Envelope = _VALIDATE_ENVELOPE(payload)
    return env


# ---- messages the hub publishes -------------------------------------------------------------------

class DeadLetter(_Wire):
    """An invalid message, forwarded with the reason it was refused."""

    reason: Literal["topic", "json", "schema", "device_mismatch", "kind_body", "channel_body", "snapshot",
                    "site_mismatch", "kind_mismatch", "unknown_device", "unstorable"]
    detail: str = Field(max_length=2000)
    topic: str = Field(max_length=65535)
    payload_b64: str
    payload_bytes: int = Field(ge=0)
    received_at: AwareDatetime
    worker: str


Severity = Literal["critical", "high", "medium", "low"]
AlertState = Literal["open", "acknowledged", "escalated", "resolved", "closed", "false_alarm"]
Transition = Literal["opened", "reopened", "severity_raised", "escalated", "acknowledged", "resolved", "closed",
                     "false_alarm", "merged", "commented", "assigned", "delivered"]


class EventRef(_Wire):
    """One triggering event of an alert, with the snapshot it links to."""

    device_id: Ident
    seq: int = Field(ge=0)
    ts: AwareDatetime
    type: Label
    snapshot: Ident | None = None


class Recipient(_Wire):
    """Who an alert was routed to: a staff id, or an opaque household/contact ref."""

    role: Label
    id: str = Field(min_length=1, max_length=80)


class AlertRoute(_Wire):
    """The route chosen for an alert, and why."""

    tier: int = Field(ge=0)
    recipients: tuple[Recipient, ...] = ()
    reason: str = Field(max_length=1000)
    group: str = Field(default="", max_length=200)
    suppressed: str | None = Field(default=None, max_length=200, description="silence/maintenance/inhibit id")


class AlertNotice(_Wire):
    """One alert transition, as published on topics.alert(...) and the live feed."""

    notice_id: int = Field(ge=0, description="Unique per transition; consumers de-duplicate by it.")
    alert_id: int = Field(ge=0)
    rule: Label
    code: Label
    subject: str = Field(min_length=1, max_length=200)
    severity: Severity
    layer: Layer
    site: Ident
    grid: Ident
    building: Ident | None = None
    unit: Ident | None = None
    device_id: Ident | None = None
    state: AlertState
    transition: Transition
    by: str = Field(max_length=80, description="'system' or a staff id")
    note: str = Field(default="", max_length=1000)
    count: int = Field(ge=1, description="How many times the condition fired into this alert.")
    incident: str | None = Field(default=None, max_length=200)
    events: tuple[EventRef, ...] = ()
    thresholds: dict[str, float | int | str | bool] = Field(default_factory=dict)
    route: AlertRoute
    opened_at: AwareDatetime
    ts: AwareDatetime


def now_utc() -> datetime:
    """The current time, timezone-aware, in UTC."""
    return datetime.now(UTC)

