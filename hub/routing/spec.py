"""The routing YAML: routes with recipient tiers, deadlines, grouping, inhibition, silences, maintenance."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from commhub.community import Shift

LABELS = ("code", "rule", "layer", "severity", "site", "grid", "building", "unit", "device")
ROLES = ("grid_worker", "property", "police_liaison", "control_room", "security_supervisor", "maintenance",
         "fire_maintenance", "gas_company", "municipal", "street_office", "household", "emergency_contact")


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _check_matchers(v: dict[str, Any]) -> dict[str, Any]:
    for k, val in v.items():
        if k not in LABELS:
            raise ValueError(f"unknown label {k!r}; use one of {', '.join(LABELS)}")
        if not isinstance(val, (str, list)):
            raise ValueError(f"{k}: expected a value or a list of values")
    return v


class Route(_Spec):
    """Alerts matching `match` go to tiers[0]; each missed deadline escalates to the next tier."""

    match: dict[str, Any] = Field(default_factory=dict, description="label: value or [values]; {} = all.")
    tiers: tuple[tuple[str, ...], ...] = Field(min_length=1, description="Recipient roles per escalation tier.")
    deadline_s: float | None = Field(default=None, gt=0, description="Override the severity deadline.")

    @field_validator("match")
    @classmethod
    def _match(cls, v: dict[str, Any]) -> dict[str, Any]:
        return _check_matchers(v)

    @field_validator("tiers")
    @classmethod
    def _roles(cls, v: tuple[tuple[str, ...], ...]) -> tuple[tuple[str, ...], ...]:
        for tier in v:
            for role in tier:
                if role not in ROLES:
                    raise ValueError(f"unknown role {role!r}; use one of {', '.join(ROLES)}")
        return v


class Inhibit(_Spec):
    """While an active alert matches `source`, alerts matching `target` with equal labels stay quiet."""

    source: dict[str, Any]
    target: dict[str, Any]
    equal: tuple[str, ...] = ()

    @field_validator("source", "target")
    @classmethod
    def _match(cls, v: dict[str, Any]) -> dict[str, Any]:
        return _check_matchers(v)


class Window(_Spec):
    """A silence (absolute times, epoch seconds) or a recurring maintenance window (weekly shifts)."""

    id: str = Field(pattern=r"^[A-Za-z0-9_-]+$")
    matchers: dict[str, Any]
    starts_at: float | None = None
    ends_at: float | None = None
    weekly: tuple[Shift, ...] = ()
    comment: str = ""

    @field_validator("matchers")
    @classmethod
    def _match(cls, v: dict[str, Any]) -> dict[str, Any]:
        return _check_matchers(v)


class WorkingDay(_Spec):
    """What 'one working day' means for low-severity deadlines."""

    days: tuple[str, ...] = ("mon", "tue", "wed", "thu", "fri")


class RoutingSpec(_Spec):
    """The whole routing file."""

    deadlines_s: dict[str, float] = Field(default_factory=lambda: {"critical": 120.0, "high": 900.0, "medium": 3600.0})
    working_day: WorkingDay = WorkingDay()
    group_by: tuple[str, ...] = ("code", "building")
    routes: tuple[Route, ...] = Field(min_length=1)
    inhibit: tuple[Inhibit, ...] = ()
    silences: tuple[Window, ...] = ()
    maintenance: tuple[Window, ...] = ()


class RoutingError(Exception):
    """The routing file is unreadable or invalid; the message names file, path and reason."""


def load_routing(file: Path) -> RoutingSpec:
    """Load and validate the routing file."""
    try:
        data = yaml.safe_load(file.read_text(encoding="utf-8"))
    except OSError as e:
        raise RoutingError(f"{file}: cannot read: {e.strerror}") from None
    except yaml.YAMLError as e:
        raise RoutingError(f"{file}: not valid YAML: {e}") from None
    try:
        return RoutingSpec.model_validate(data)
    except ValidationError as e:
        lines = [f"{file}: {'.'.join(str(p) for p in err['loc']) or '<root>'}: {err['msg']}" for err in e.errors()]
        raise RoutingError("\n".join(lines)) from None
