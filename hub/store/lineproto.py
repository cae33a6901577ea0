"""InfluxDB line protocol, serialised by hand (about 4 µs a point against 18 µs for influxdb-client's Point).

Escaping follows the spec and InfluxData's corpus: measurement names escape ',' and ' '; tag keys, tag values
and field keys escape ',', '=' and ' '; a backslash is left as it is there. String field values escape
'\\' and '"' (and a newline as '\\n', as the reference encoder does).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any

FieldValue = bool | int | float | str

_MEAS = re.compile(r"([, ])")
_KEY = re.compile(r"([,= ])")
_MEAS_NEEDS = re.compile(r"[, \n]")
_KEY_NEEDS = re.compile(r"[,= \n]")
STR_TABLE = str.maketrans({"\\": "\\\\", '"': '\\"', "\n": "\\n"})


class LineProtocolError(ValueError):
    """A point cannot be written as line protocol (e.g. no fields, NaN, empty tag value)."""


def escape_measurement(name: str) -> str:
    """Escape a measurement name."""
    if not name:
        raise LineProtocolError("empty measurement name")
    if _MEAS_NEEDS.search(name) is None:
        return name
    if "\n" in name:
        raise LineProtocolError("newline in measurement name")
    return _MEAS.sub(r"\\\1", name)


def escape_key(text: str) -> str:
    """Escape a tag key, tag value or field key."""
    if _KEY_NEEDS.search(text) is None:
        return text
    if "\n" in text:
        raise LineProtocolError("newline in a key or tag value")
    return _KEY.sub(r"\\\1", text)


_KEYS: dict[str, str] = {}  # escaped field keys: a few dozen names from the wire models
_KEY_EQ: dict[str, str] = {}  # the same, with '=' appended
_MAX_KEYS = 4096
# A value whose type is a subclass of these is written as its base type (after bool, which is an int).
_BASES = (bool, int, float, str)


def field_key(key: str) -> str:
    """An escaped field key (cached: the keys are the wire models' field names)."""
    escaped = _KEYS.get(key)
    if escaped is None:
        escaped = escape_key(key)
        if len(_KEYS) < _MAX_KEYS:
            _KEYS[key] = escaped
    return escaped


def _key_eq(name: str) -> str:
    out = field_key(name) + "="
    if len(_KEY_EQ) < _MAX_KEYS:
        _KEY_EQ[name] = out
    return out


Expand = Callable[[str, Any], Iterable[tuple[str, Any]]]


def write_fields(items: Iterable[tuple[str, Any]], skip: str = "", expand: Expand | None = None) -> str:
    """',key=value' for each (key, value), None dropped: the one place a field value is formatted.

    skip: a string field left out (the body's type, which is the measurement). expand: turns a value of any
    other type into fields (the schema's nested boxes and lists); without it such a value is an error.
    One call per point with the exact types dispatched in place: a call per value costs a point about 1.3 µs.
    """
    out = ""
    keq = _KEY_EQ.get
    for name, value in items:
        kind = type(value)
        if kind is float:
            if value - value != 0.0:  # inf - inf and nan - nan are nan: one subtraction, not isnan and isinf
                raise LineProtocolError(f"float {value} cannot be stored")
            out += f",{keq(name) or _key_eq(name)}{value!r}"
        elif kind is str:
            if name != skip:
                out += f",{keq(name) or _key_eq(name)}\"{value.translate(STR_TABLE)}\""
        elif value is None:
            continue
        elif kind is int:
            if not -(2**63) <= value < 2**63:
                raise LineProtocolError(f"integer {value} does not fit in int64")
            out += f",{keq(name) or _key_eq(name)}{value}i"
        elif kind is bool:
            out += f",{keq(name) or _key_eq(name)}{'true' if value else 'false'}"
        elif isinstance(value, _BASES):  # a subclass (an IntEnum, a str enum): as its base type's value
            base = next(b for b in _BASES if isinstance(value, b))
            out += write_fields(((name, str.__str__(value) if base is str else base(value)),), skip)
        elif expand is not None:
            out += write_fields(expand(name, value))
        else:
            raise LineProtocolError(f"unsupported field type {kind.__name__}")
    return out


def format_value(value: FieldValue) -> str:
    """One field value as written (write_fields' formatting)."""
    return write_fields((("v", value),))[3:]  # after ",v="


def tag_set(tags: Iterable[tuple[str, str]]) -> str:
    """The ',k=v' tag part, sorted by key (InfluxDB's preferred order)."""
    parts = []
    for k, v in sorted(tags):
        if not k or not v:
            raise LineProtocolError(f"invalid tag {k}={v!r}: keys and values must not be empty")
        parts.append(f",{escape_key(k)}={escape_key(v)}")
    return "".join(parts)


def field_set(fields: Mapping[str, FieldValue | None]) -> str:
    """The 'k=v,...' field part; None values are dropped."""
    out = write_fields(fields.items())
    if not out:
        raise LineProtocolError("a point needs at least one field")
    return out[1:]


def line(measurement: str, tags: Mapping[str, str], fields: Mapping[str, FieldValue | None],
         timestamp: int | None = None) -> str:
    """One point as a line (no trailing newline)."""
    head = escape_measurement(measurement) + tag_set(tags.items())
    ts = "" if timestamp is None else f" {int(timestamp)}"
    return f"{head} {field_set(fields)}{ts}"
