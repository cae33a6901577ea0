"""A reference line-protocol parser for tests, so encodings are compared by meaning, not by string."""

from __future__ import annotations

from typing import Any

Point = tuple[str, dict[str, str], dict[str, Any], int | None]


def _take(s: str, i: int, stops: str, escapable: str) -> tuple[str, int]:
    out = []
    while i < len(s) and s[i] not in stops:
        if s[i] == "\\" and i + 1 < len(s) and s[i + 1] in escapable:
            out.append(s[i + 1])
            i += 2
            continue
        out.append(s[i])
        i += 1
    return "".join(out), i


def _value(raw: str) -> Any:
    if raw in ("t", "T", "true", "True", "TRUE"):
        return True
    if raw in ("f", "F", "false", "False", "FALSE"):
        return False
    if raw.endswith("i"):
        return ("int", int(raw[:-1]))
    if raw.endswith("u"):
        return ("uint", int(raw[:-1]))
    return float(raw)


def parse(line: str) -> Point:
    """Parse one line into (measurement, tags, fields, timestamp); raise ValueError if malformed."""
    name, i = _take(line, 0, ", ", ", ")
    if not name:
        raise ValueError("no measurement")
    tags: dict[str, str] = {}
    while i < len(line) and line[i] == ",":
        key, i = _take(line, i + 1, "=", ",= ")
        if i >= len(line):
            raise ValueError("tag without '='")
        val, i = _take(line, i + 1, ", ", ",= ")
        if not key or not val:
            raise ValueError("empty tag key or value")
        tags[key] = val
    if i >= len(line) or line[i] != " ":
        raise ValueError("no field set")
    fields: dict[str, Any] = {}
    i += 1
    while True:
        key, i = _take(line, i, "=", ",= ")
        if i >= len(line) or not key:
            raise ValueError("field without '='")
        i += 1
        if i < len(line) and line[i] == '"':
            out = []
            i += 1
            while i < len(line) and line[i] != '"':
                if line[i] == "\\" and i + 1 < len(line) and line[i + 1] in '"\\n':
                    out.append({'"': '"', "\\": "\\", "n": "\n"}[line[i + 1]])
                    i += 2
                    continue
                out.append(line[i])
                i += 1
            if i >= len(line):
                raise ValueError("unterminated string")
            fields[key] = "".join(out)
            i += 1
        else:
            raw, i = _take(line, i, ", ", "")
            fields[key] = _value(raw)
        if i < len(line) and line[i] == ",":
            i += 1
            continue
        break
    ts: int | None = None
    if i < len(line):
        if line[i] != " ":
            raise ValueError("garbage after fields")
        ts = int(line[i + 1:])
    return name, tags, fields, ts


def from_corpus_point(point: dict[str, Any]) -> Point:
    """Turn an encode case's input point into the parsed form."""
    tags = {t["key"]: t["value"] for t in point["tags"]}
    fields: dict[str, Any] = {}
    for f in point["fields"]:
        (kind, v), = f["value"].items()
        fields[f["key"]] = ((kind, int(v)) if kind in ("int", "uint") else
                            {"float": float, "bool": bool, "string": str}[kind](v))
    return point["name"], tags, fields, point["time"]
