"""Controller events as pushed to the agent (the accepted JSON format), and their mapping to wire bodies.

One event is a JSON object:

    {"device": "dc-b01-u1",          community device id of the controller, face gate or turnstile (required)
     "event": "granted",             see EVENT_ALIASES (required)
     "door": "main",                 door / reader / lane on that controller (default "main")
     "ts": "2026-05-01T08:00:00+08:00" or 1777593600.25 (unix seconds); default: when it arrived
     "card": "0012345678" | "person": "emp-42" | "face": "<gate face id>" | "pin": "1234" | "qr": "..."
                                     at most one credential; it is hashed with the site secret, never sent
     "method": "card"|"face"|"pin"|"qr"|"remote"   default: the credential field's name ("person" -> "face")
     "registered": true,             face gates: false for an unregistered (stranger) face
     "reason": "unknown_card",       denials, see REASON_ALIASES (default "other")
     "direction": "in"|"out",        default "in"
     "count": 1,                     passages: people through the lane
     "tamper": "enclosure",          tamper kind (default "reader"); "active": false when it clears
    }

A request body is one event, a JSON list of events, or {"events": [...]}.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from commhub.wire import (
    AccessDenied,
    AccessGranted,
    DoorClosed,
    DoorOpened,
    Duress,
    ExitRequest,
    Ident,
    Passage,
    ReaderOffline,
    Tamper,
)
from edge_agents.access.hashing import CredentialHasher

EVENT_ALIASES: dict[str, str] = {
    **{k: "access_granted" for k in ("access_granted", "granted", "grant", "valid_card", "access")},
    **{k: "access_denied" for k in ("access_denied", "denied", "deny", "invalid_card", "rejected")},
    **{k: "door_opened" for k in ("door_opened", "door_open", "opened", "open")},
    **{k: "door_closed" for k in ("door_closed", "door_close", "closed", "close")},
    **{k: "exit_request" for k in ("exit_request", "rex", "request_to_exit", "exit_button")},
    **{k: "passage" for k in ("passage", "pass", "passed")},
    **{k: "duress" for k in ("duress", "duress_code")},
    **{k: "tamper" for k in ("tamper", "tampered")},
    **{k: "reader_offline" for k in ("reader_offline", "offline", "reader_lost")},
}

REASON_ALIASES: dict[str, str] = {
    **{k: "unknown_credential" for k in ("unknown_credential", "unknown_card", "unknown", "not_found",
                                         "stranger", "unregistered")},
    **{k: "expired" for k in ("expired", "card_expired")},
    **{k: "out_of_schedule" for k in ("out_of_schedule", "schedule", "time_zone", "timezone", "out_of_time")},
    **{k: "anti_passback" for k in ("anti_passback", "antipassback", "apb")},
    **{k: "blacklisted" for k in ("blacklisted", "blacklist", "blocked", "lost_card")},
    **{k: "face_mismatch" for k in ("face_mismatch", "mismatch", "liveness_failed")},
    "other": "other",
}

_CREDENTIALS = ("card", "person", "face", "pin", "qr")
Method = Literal["card", "face", "pin", "qr", "remote"]
_METHOD_OF: dict[str, Method] = {"card": "card", "person": "face", "face": "face", "pin": "pin", "qr": "qr"}


class PushedEvent(BaseModel):
    """One event as a controller pushes it (input model: lenient types, unknown keys refused)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    device: Ident
    event: str
    door: Ident = "main"
    ts: datetime | float | None = None
    card: str | int | None = None
    person: str | int | None = None
    face: str | int | None = None
    pin: str | int | None = None
    qr: str | None = None
    method: Method | None = None
    registered: bool = True
    reason: str = "other"
    direction: Literal["in", "out"] = "in"
    count: int = Field(default=1, ge=1, le=100)
    tamper: Literal["enclosure", "reader", "wiring", "other"] = "reader"
    active: bool = True

    @field_validator("event")
    @classmethod
    def _event(cls, v: str) -> str:
        key = v.strip().lower()
        if key not in EVENT_ALIASES:
            raise ValueError(f"unknown event {v[:40]!r}; one of {sorted(set(EVENT_ALIASES.values()))} or an alias")
        return EVENT_ALIASES[key]

    @field_validator("reason")
    @classmethod
    def _reason(cls, v: str) -> str:
        key = v.strip().lower()
        if key not in REASON_ALIASES:
            raise ValueError(f"unknown reason {v[:40]!r}; one of {sorted(set(REASON_ALIASES.values()))}")
        return REASON_ALIASES[key]


class PushError(ValueError):
    """A pushed request is invalid; `details` lists (index, field, reason) without echoing values."""

    def __init__(self, message: str, details: list[dict[str, Any]] | None = None) -> None:
        super().__init__(message)
        self.details = details or []


_MIN_UNIX = 0.0
_MAX_UNIX = 253_402_300_799.0  # 9999-12-31T23:59:59Z, the last second datetime can hold


def _timestamp(ts: datetime | float | None, now: datetime) -> datetime:
    if ts is None:
        return now
    if isinstance(ts, int | float):
        # 1e20, inf or nan would raise OverflowError (not a ValueError) deep in datetime: refuse them here.
        if not _MIN_UNIX <= float(ts) <= _MAX_UNIX:
            raise ValueError(f"ts must be unix seconds between {_MIN_UNIX:.0f} and {_MAX_UNIX:.0f} (1970..9999)")
        return datetime.fromtimestamp(float(ts), UTC)
    if ts.tzinfo is None:
        raise ValueError("ts needs a UTC offset (e.g. 2026-05-01T08:00:00+08:00) or unix seconds")
    return ts


def to_body(ev: PushedEvent, hasher: CredentialHasher) -> Any:
    """The wire body for one pushed event; credentials become HMAC refs here."""
    given = [(name, getattr(ev, name)) for name in _CREDENTIALS if getattr(ev, name) not in (None, "")]
    if len(given) > 1:
        raise ValueError(f"at most one credential field, got {[n for n, _ in given]}")
    ref = hasher.ref(given[0][0], str(given[0][1])) if given else None
    method: Method = ev.method or (_METHOD_OF[given[0][0]] if given else "remote")
    match ev.event:
        case "access_granted":
            if ref is None and method != "remote":
                raise ValueError("a grant needs a credential (card, person, face, pin or qr) or method 'remote'")
            # A remote opening (guard button, app) has no credential: its ref says so, hashed like any other.
            return AccessGranted(door=ev.door, credential_ref=ref or hasher.ref("person", "remote"), method=method,
                                 direction=ev.direction, registered=ev.registered)
        case "access_denied":
            return AccessDenied(door=ev.door, credential_ref=ref, method=method, reason=ev.reason,  # type: ignore[arg-type]
                                direction=ev.direction)
        case "door_opened":
            return DoorOpened(door=ev.door)
        case "door_closed":
            return DoorClosed(door=ev.door)
        case "exit_request":
            return ExitRequest(door=ev.door)
        case "passage":
            return Passage(door=ev.door, count=ev.count, direction=ev.direction)
        case "duress":
            return Duress(door=ev.door)
        case "tamper":
            return Tamper(kind=ev.tamper, active=ev.active)
        case "reader_offline":
            return ReaderOffline(door=ev.door)
    raise ValueError(f"unmapped event {ev.event!r}")  # unreachable: the validator knows every event


def parse_request(data: Any, hasher: CredentialHasher, now: datetime | None = None
                  ) -> list[tuple[str, Any, datetime]]:
    """Validate a whole request (all or nothing) into (device_id, body, ts) triples, or raise PushError."""
    now = now or datetime.now(UTC)
    if isinstance(data, dict) and set(data) == {"events"}:
        data = data["events"]
    items = data if isinstance(data, list) else [data]
    if not items:
        raise PushError("no events in the request")
    out: list[tuple[str, Any, datetime]] = []
    details: list[dict[str, Any]] = []
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            details.append({"index": i, "field": "", "reason": "an event must be a JSON object"})
            continue
        try:
            ev = PushedEvent.model_validate(item)
            out.append((ev.device, to_body(ev, hasher), _timestamp(ev.ts, now)))
        except ValidationError as e:
            # Only locations and messages: the input may hold a card number, which must not be echoed or logged.
            for err in e.errors(include_input=False, include_url=False):
                field = ".".join(str(p) for p in err["loc"])
                details.append({"index": i, "field": field, "reason": err["msg"]})
        except (ValueError, OverflowError) as e:
            details.append({"index": i, "field": "", "reason": str(e)})
    if details:
        raise PushError(f"{len(details)} problem(s) in {len(items)} event(s); nothing was accepted", details)
    return out
