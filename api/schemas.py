"""Request and response models of the API: XCreate (input), X (stored), XPublic (output), as in the FastAPI template."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

Role = Literal["security_staff", "grid_worker", "property", "police_liaison", "admin"]
ROLES: tuple[str, ...] = ("security_staff", "grid_worker", "property", "police_liaison", "admin")
Name = Field(pattern=r"^[A-Za-z0-9_.@-]{1,64}$")
Severity = Literal["low", "medium", "high", "critical"]
AlertStateName = Literal["open", "acknowledged", "escalated", "resolved", "closed", "false_alarm"]
LayerName = Literal["people", "technical", "facility"]


class Strict(BaseModel):
    """Input models refuse unknown fields, so a typo is a 422 that names it."""

    model_config = ConfigDict(extra="forbid")


class Out(BaseModel):
    """Output models."""

    model_config = ConfigDict(from_attributes=True)


class ErrorPublic(Out):
    """Every 4xx body: what was wrong."""

    detail: Any = Field(description="A sentence, or the list of validation errors (422).")


def errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` for these error statuses, all with the ErrorPublic body."""
    return {c: {"model": ErrorPublic} for c in codes}


# ---- auth -----------------------------------------------------------------------------------------


class TokenPublic(Out):
    """OAuth2 token response."""

    access_token: str
    token_type: Literal["bearer"] = "bearer"
    expires_in: int
    refresh_token: str


class RefreshRequest(Strict):
    """Renew an access token."""

    refresh_token: str = Field(min_length=10, max_length=200)


class PrincipalPublic(Out):
    """Who the caller is and what they may see."""

    username: str
    role: Role
    auth: Literal["user", "api_key"]
    grids: list[str] | None = Field(description="Cells in scope; null = every cell.")
    buildings: list[str] | None = Field(description="Buildings in scope; null = every building.")
    layers: list[str] | None = Field(description="Layers in scope; null = every layer.")
    can_act: bool
    sees_unblurred: bool


# ---- users and API keys ---------------------------------------------------------------------------


class UserCreate(Strict):
    """A new account."""

    username: str = Name
    role: Role
    password: str = Field(min_length=8, max_length=200)
    staff_id: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_-]{1,64}$",
                                 description="Roster id (grid workers: their cells come from the roster).")
    buildings: list[str] | None = Field(default=None, max_length=500,
                                        description="Property: the buildings they manage (null = all).")


class UserUpdate(Strict):
    """Change an account: disable or enable it, or set a new password."""

    disabled: bool | None = None
    password: str | None = Field(default=None, min_length=8, max_length=200)


class UserPublic(Out):
    """An account, without its password hash."""

    username: str
    role: Role
    staff_id: str | None
    buildings: list[str] | None
    disabled: bool
    created_at: float


class ApiKeyCreate(Strict):
    """A new machine key for an account."""

    name: str = Field(min_length=1, max_length=80)


class ApiKeyPublic(Out):
    """A machine key; `key` is only in the response that created it."""

    id: str
    username: str
    name: str
    created_at: float
    revoked_at: float | None = None
    key: str | None = None


# ---- alerts ---------------------------------------------------------------------------------------


class EventRefPublic(Out):
    """A triggering event."""

    device_id: str
    seq: int
    ts: str
    type: str
    snapshot: str | None = None


class AlertPublic(Out):
    """An alert in a list."""

    id: int
    rule: str
    code: str
    subject: str
    severity: Severity
    layer: LayerName
    site: str
    grid: str
    building: str | None
    unit: str | None
    device_id: str | None
    state: AlertStateName
    condition_active: bool
    ack_requires_clear: bool
    count: int
    incident: str | None
    assignee: str | None
    tier: int
    opened_at: float
    updated_at: float
    acked_at: float | None
    resolved_at: float | None
    closed_at: float | None


class AlertsPage(Out):
    """One page of alerts; pass `next_cursor` as `cursor` for the next."""

    items: list[AlertPublic]
    next_cursor: str | None


class TransitionPublic(Out):
    """One step of an alert's timeline."""

    id: int
    transition: str
    from_state: str | None
    to_state: str
    by: str
    note: str
    at: float


class AlertDetailPublic(AlertPublic):
    """An alert with its timeline, triggering events, thresholds and route with the reason."""

    events: list[EventRefPublic]
    thresholds: dict[str, Any]
    route: dict[str, Any]
    timeline: list[TransitionPublic]


AlertAction = Literal["acknowledge", "assign", "comment", "resolve", "false_alarm", "escalate"]


class AlertActionCreate(Strict):
    """A person's action on an alert."""

    note: str = Field(default="", max_length=1000)
    assignee: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_.@-]{1,64}$",
                                 description="For assign: the username or roster id.")


class ActionResultPublic(Out):
    """What an action did: the notice id of the new transition and the alert's state."""

    alert_id: int
    notice_id: int
    transition: str
    state: str


# ---- silences -------------------------------------------------------------------------------------


class SilenceCreate(Strict):
    """A silence: notices for alerts whose labels match are suppressed between starts_at and ends_at."""

    matchers: dict[str, str] = Field(min_length=1, max_length=20,
                                     description="Label -> value (code, rule, layer, severity, grid, building, ...).")
    starts_at: float | None = Field(default=None, ge=0, le=1e11, description="Epoch seconds; default now.")
    ends_at: float = Field(ge=0, le=1e11, description="Epoch seconds.")
    comment: str = Field(default="", max_length=1000)
    kind: Literal["silence", "maintenance"] = "silence"


class SilencePublic(Out):
    """A silence or maintenance window."""

    id: int
    kind: str
    matchers: dict[str, Any]
    starts_at: float
    ends_at: float
    created_by: str
    comment: str
    active: bool


# ---- audit ----------------------------------------------------------------------------------------


class AuditPublic(Out):
    """One audit row."""

    seq: int
    at: float
    actor: str
    role: str
    action: str
    target: str
    result: str
    address: str
    prev_hash: str
    hash: str


class AuditPage(Out):
    """Audit rows, newest first; pass `next_before` as `before` for older ones."""

    items: list[AuditPublic]
    next_before: int | None


class AuditVerifyPublic(Out):
    """The result of checking the hash chain."""

    ok: bool
    rows: int
    problems: list[str]


# ---- health ---------------------------------------------------------------------------------------


class ReadyPublic(Out):
    """Readiness of the parts the API needs."""

    ready: bool
    checks: dict[str, str]
