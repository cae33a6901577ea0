"""Facility device kinds: which wire body each sends, how raw values become that body, and when to report.

Three report modes:
- reading: sent every `interval_s` of the device, and at once on a significant change (a gas reading that
  jumps by 5 %LEL must not wait an hour);
- state: sent when one of its key fields changes (and once at start, so the hub knows the state);
- edge: sent on the rising edge of a `pressed` input (a panic button).
"""

from __future__ import annotations

import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel

from commhub.wire import (
    ChargerReading,
    DeviceKind,
    DoorContact,
    ElectricalReading,
    ElevatorEbike,
    EnvReading,
    FireDoorState,
    GasReading,
    HydrantPressure,
    ManholeTilt,
    PanicPress,
    SmokeState,
    WaterLeak,
    WaterMeter,
)

PRESSED = "pressed"  # the input of an edge-mode device (it is not a body field)


@dataclass(frozen=True)
class KindSpec:
    """How one facility device kind reports."""

    body: type[BaseModel]
    mode: Literal["reading", "state", "edge"]
    keys: tuple[str, ...] = ()
    deltas: Mapping[str, float] = field(default_factory=dict)
    while_active: tuple[str, ...] = ()  # state: also reported when these change while keys[0] is true


SPECS: dict[DeviceKind, KindSpec] = {
    DeviceKind.SMOKE: KindSpec(SmokeState, "state", ("alarm",)),
    DeviceKind.GAS: KindSpec(GasReading, "reading", deltas={"lel_pct": 5.0}),
    DeviceKind.WATER_LEAK: KindSpec(WaterLeak, "state", ("wet",)),
    DeviceKind.HYDRANT: KindSpec(HydrantPressure, "reading", deltas={"pressure_mpa": 0.02}),
    DeviceKind.FIRE_DOOR: KindSpec(FireDoorState, "state", ("open",)),
    DeviceKind.MANHOLE: KindSpec(ManholeTilt, "reading", deltas={"tilt_deg": 5.0}),
    # The car moves all day: its floor matters only while an e-bike is detected.
    DeviceKind.ELEVATOR: KindSpec(ElevatorEbike, "state", ("detected",), while_active=("floor",)),
    DeviceKind.CHARGER: KindSpec(ChargerReading, "reading", deltas={"temp_c": 5.0, "current_a": 2.0}),
    DeviceKind.ELECTRICAL: KindSpec(ElectricalReading, "reading", deltas={"residual_ma": 10.0, "temp_c": 5.0}),
    DeviceKind.WATER_METER: KindSpec(WaterMeter, "reading"),
    DeviceKind.PANIC_BUTTON: KindSpec(PanicPress, "edge"),
    DeviceKind.DOOR_CONTACT: KindSpec(DoorContact, "state", ("open",)),
    DeviceKind.ENV: KindSpec(EnvReading, "reading", deltas={"temp_c": 2.0}),
}

FACILITY_KINDS = frozenset(SPECS)


def input_fields(kind: DeviceKind) -> dict[str, Any]:
    """The inputs a device of `kind` takes: body field -> annotation (edge kinds: `pressed` -> bool)."""
    spec = SPECS[kind]
    if spec.mode == "edge":
        return {PRESSED: bool}
    return {n: f.annotation for n, f in spec.body.model_fields.items() if n != "type"}


def required_fields(kind: DeviceKind) -> set[str]:
    """Inputs without a default."""
    spec = SPECS[kind]
    if spec.mode == "edge":
        return {PRESSED}
    return {n for n, f in spec.body.model_fields.items() if n != "type" and f.is_required()}


def _coerce(annotation: Any, value: Any) -> Any:
    # Registers and simulators give numbers; strict wire models want the exact type.
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        inner = [a for a in typing.get_args(annotation) if a is not type(None)]
        return None if value is None else _coerce(inner[0], value)
    if annotation is bool:
        return bool(value)
    if annotation is int:
        return round(value) if isinstance(value, float) else int(value)
    if annotation is float:
        return float(value)
    return value  # Literals (e.g. elevator source) pass through and the model checks them


def build_body(kind: DeviceKind, values: Mapping[str, Any]) -> BaseModel:
    """The wire body for one set of input values; raises ValueError (pydantic's) when a value is out of range."""
    spec = SPECS[kind]
    if spec.mode == "edge":
        return spec.body()
    fields = input_fields(kind)
    unknown = set(values) - set(fields)
    if unknown:
        raise ValueError(f"{kind.value} has no fields {sorted(unknown)}")
    return spec.body(**{k: _coerce(fields[k], v) for k, v in values.items()})


class Reporter:
    """Decides, per device, whether a new set of values is worth a message."""

    def __init__(self, kind: DeviceKind, interval_s: float) -> None:
        self.kind = kind
        self.spec = SPECS[kind]
        self.interval_s = interval_s
        self._last: BaseModel | None = None
        self._last_at = float("-inf")
        self._pressed = False

    def update(self, values: Mapping[str, Any], now: float) -> BaseModel | None:
        """The body to send for these values at monotonic time `now`, or None."""
        if self.spec.mode == "edge":
            pressed = bool(values.get(PRESSED, False))
            rising = pressed and not self._pressed
            self._pressed = pressed
            return self.spec.body() if rising else None
        body = build_body(self.kind, values)
        last = self._last
        if self.spec.mode == "state":
            keys = self.spec.keys
            if self.spec.while_active and getattr(body, keys[0]):
                keys = keys + self.spec.while_active
            send = last is None or any(getattr(body, k) != getattr(last, k) for k in keys)
        else:
            due = now - self._last_at >= self.interval_s
            jump = last is not None and any(abs(getattr(body, k) - getattr(last, k)) >= d
                                            for k, d in self.spec.deltas.items())
            send = last is None or due or jump
        if send:
            self._last, self._last_at = body, now
            return body
        return None
