"""The YAML rule pack: one validated model per rule kind, discriminated by `kind`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from commhub.wire import Label, Layer, Severity

Op = Literal[">", ">=", "<", "<=", "==", "!="]
KeyBy = Literal["device", "door", "zone", "port", "ref", "building", "grid", "resident", "event"]


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Match(_Spec):
    """Which events a rule looks at: body types, device kinds, and conditions on body fields."""

    type: tuple[Label, ...] = Field(min_length=1, description="Body types, e.g. [door_opened].")
    kinds: tuple[Label, ...] = Field(default=(), description="Device kinds (empty = any).")
    where: dict[str, Any] = Field(default_factory=dict, description="field: value, or field: {op: value}.")

    @model_validator(mode="after")
    def _ops(self) -> Match:
        for name, cond in self.where.items():
            if isinstance(cond, dict):
                for op in cond:
                    if op not in (">", ">=", "<", "<=", "==", "!=", "contains", "in"):
                        raise ValueError(f"where.{name}: unknown operator {op!r}")
        return self


class Hours(_Spec):
    """A daily window in the site's timezone; start > end spans midnight."""

    start: int = Field(ge=0, le=23)
    end: int = Field(ge=0, le=24)


class _Rule(_Spec):
    id: Label
    code: Label = Field(description="Catalogue event code, e.g. door_forced_open.")
    severity: Severity
    layer: Layer
    enabled: bool = True
    key: KeyBy = Field(default="device", description="What one alert is about (its subject).")
    hours: Hours | None = Field(default=None, description="Only fire inside this daily window.")
    residents_only: bool = Field(default=False, description="Only devices of opted-in residents.")
    auto_resolve: bool = Field(default=True, description="Resolve the alert when the condition clears.")
    ack_requires_clear: bool = Field(default=False, description="Refuse acknowledgement while still active.")
    description: str = ""


class InstantRule(_Rule):
    """Fire on every matching event; optionally clear on another."""

    kind: Literal["instant"]
    when: tuple[Match, ...] = Field(min_length=1)
    clear_when: tuple[Match, ...] = ()


class ThresholdRule(_Rule):
    """A numeric or boolean field crosses a value for hold_s; clears past `clear` for clear_hold_s."""

    kind: Literal["threshold"]
    when: tuple[Match, ...] = Field(min_length=1)
    field: str
    op: Op
    value: float | bool
    clear: float | bool | None = Field(default=None, description="Hysteresis: cleared only past this value.")
    hold_s: float = Field(default=0.0, ge=0)
    clear_hold_s: float = Field(default=0.0, ge=0)


class SeverityStep(_Spec):
    """Raise the severity once the condition has lasted this long."""

    after_s: float = Field(gt=0)
    severity: Severity


class SequenceRule(_Rule):
    """A door/credential state machine: see hub.rules.kinds.sequence for the patterns."""

    kind: Literal["sequence"]
    pattern: Literal["unauthorized_open", "held_open", "repeat_without", "count_per_grant"]
    window_s: float = Field(default=5.0, gt=0, description="How long a grant or exit request authorizes.")
    hold_s: float = Field(default=30.0, ge=0, description="held_open: fire when still open this long.")
    steps: tuple[SeverityStep, ...] = ()
    kinds: tuple[Label, ...] = Field(default=(), description="Device kinds (empty = any).")
    max_count: int = Field(default=1, ge=1, description="count_per_grant: passages allowed per grant.")
    debounce_s: float = Field(default=0.0, ge=0, description=(
        "repeat_without: a second read of the same credential at the same reader this soon is one read."))
    settle_s: float = Field(default=0.0, ge=0, le=60, description=(
        "unauthorized_open, count_per_grant: wait this long (engine clock) for a grant older than the opening "
        "or passage before firing; held_open: for a grant or a closing older than the hold's end (each "
        "threshold is raised this much later, at its own time); repeat_without: for an exit between two "
        "entries. "
        "0 fires at once, right when one worker sees each door's messages in order; several workers on a "
        "round-robin shared subscription may get a door's grant after its opening."))


class AbsenceRule(_Rule):
    """Fire when a subject shows no matching activity for a timeout; clears on the next activity."""

    kind: Literal["absence"]
    when: tuple[Match, ...] = Field(default=(), description="What counts as activity (empty = any message).")
    kinds: tuple[Label, ...] = Field(default=(), description="Devices watched (empty = all registered).")
    timeout_s: float | None = Field(default=None, gt=0, description="Fixed timeout.")
    intervals: float | None = Field(default=None, gt=0, description="Timeout as reporting intervals.")
    offline_state: bool = Field(default=False, description="A will/state 'offline' fires (after will_grace_s).")
    will_grace_s: float = Field(default=0.0, ge=0, description=(
        "A will fires this long after it arrives unless a newer session of the same agent or device comes "
        "online first (a broker restart publishes every connected client's will)."))

    @model_validator(mode="after")
    def _timeout(self) -> AbsenceRule:
        if (self.timeout_s is None) == (self.intervals is None):
            raise ValueError("give exactly one of timeout_s or intervals")
        return self


class RateRule(_Rule):
    """An aggregate over a sliding window: count, distinct nights, increase or drop of a field."""

    kind: Literal["rate"]
    when: tuple[Match, ...] = Field(min_length=1)
    window_s: float = Field(gt=0)
    aggregate: Literal["count", "distinct_nights", "increase", "drop"] = "count"
    field: str | None = None
    op: Op = ">="
    value: float
    night: Hours | None = Field(default=None, description="distinct_nights: which hours count as night.")
    report_slack: float = Field(default=0.25, ge=0, le=1, description=(
        "drop: look back one reporting interval times (1 + this) when that is longer than the window, so two "
        "readings at, just under or just over the interval (with jitter) still make one drop."))

    @model_validator(mode="after")
    def _field(self) -> RateRule:
        if self.aggregate in ("increase", "drop") and not self.field:
            raise ValueError(f"aggregate {self.aggregate} needs a field")
        if self.aggregate == "distinct_nights" and self.night is None:
            raise ValueError("distinct_nights needs night hours")
        return self


class CorrelationRule(_Rule):
    """Signals of member rules from several devices in one place and window make one incident."""

    kind: Literal["correlation"]
    members: tuple[Label, ...] = Field(min_length=1, description="Rule ids whose firing counts.")
    also: tuple[Match, ...] = Field(default=(), description="Raw events that count too, e.g. camera person.")
    window_s: float = Field(gt=0)
    min_devices: int = Field(default=2, ge=2)
    key: KeyBy = "building"


class ReportRule(_Rule):
    """Resident reports (from the API) become tickets; severity by category."""

    kind: Literal["report"]
    categories: dict[Label, Severity] = Field(default_factory=dict)
    key: KeyBy = "event"


RuleSpec = Annotated[InstantRule | ThresholdRule | SequenceRule | AbsenceRule | RateRule | CorrelationRule
                     | ReportRule, Field(discriminator="kind")]


class RulePack(_Spec):
    """The whole rule file."""

    rules: tuple[RuleSpec, ...]

    @model_validator(mode="after")
    def _unique(self) -> RulePack:
        ids = [r.id for r in self.rules]
        dup = {i for i in ids if ids.count(i) > 1}
        if dup:
            raise ValueError(f"duplicate rule ids: {sorted(dup)}")
        for r in self.rules:
            if isinstance(r, CorrelationRule):
                missing = [m for m in r.members if m not in ids]
                if missing:
                    raise ValueError(f"rule {r.id}: unknown member rules {missing}")
        return self

    def enabled(self) -> list[Any]:
        """The enabled rules."""
        return [r for r in self.rules if r.enabled]


class RulesError(Exception):
    """The rule file is unreadable or invalid; the message names file, path and reason."""


def load_rules(file: Path, overrides: dict[str, dict[str, Any]] | None = None) -> RulePack:
    """Load and validate a rule pack; `overrides` patches rules by id (tests shorten hold times)."""
    try:
        data = yaml.safe_load(file.read_text(encoding="utf-8"))
    except OSError as e:
        raise RulesError(f"{file}: cannot read: {e.strerror}") from None
    except yaml.YAMLError as e:
        raise RulesError(f"{file}: not valid YAML: {e}") from None
    if not isinstance(data, dict) or not isinstance(data.get("rules"), list):
        raise RulesError(f"{file}: <root>: expected a mapping with a 'rules' list")
    if overrides:
        unknown = set(overrides) - {r.get("id") for r in data["rules"] if isinstance(r, dict)}
        if unknown:
            raise RulesError(f"{file}: overrides name unknown rules {sorted(unknown)}")
        data["rules"] = [{**r, **overrides.get(str(r.get("id")), {})} if isinstance(r, dict) else r
                         for r in data["rules"]]
    try:
        return RulePack.model_validate(data)
    except ValidationError as e:
        lines = []
        for err in e.errors():
            loc = list(err["loc"])
            if len(loc) >= 2 and loc[0] == "rules" and isinstance(loc[1], int):
                rid = data["rules"][loc[1]].get("id", "?") if isinstance(data["rules"][loc[1]], dict) else "?"
                loc[1] = f"{loc[1]}]({rid})"
                path = f"rules[{loc[1]}" + "".join(f".{p}" for p in loc[2:] if not _is_kind_tag(p, data))
            else:
                path = ".".join(str(p) for p in loc) or "<root>"
            lines.append(f"{file}: {path}: {err['msg']}")
        raise RulesError("\n".join(lines)) from None


def _is_kind_tag(part: Any, data: dict[str, Any]) -> bool:
    # pydantic puts the discriminator value in the error location; it is not a path the user wrote.
    return part in ("instant", "threshold", "sequence", "absence", "rate", "correlation", "report")
