"""Build the wire AlertNotice from an alert row and one of its transitions."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from commhub.wire import AlertNotice

SEVERITY_RANK = {"low": 0, "medium": 1, "high": 2, "critical": 3}


def iso(t: float) -> str:
    """Epoch seconds as an ISO 8601 UTC string."""
    return datetime.fromtimestamp(t, UTC).isoformat()


def event_ref(ref: Mapping[str, Any]) -> dict[str, Any]:
    """A rule's event ref as the wire EventRef shape."""
    return {"device_id": ref["device_id"], "seq": int(ref["seq"]), "ts": iso(float(ref["t"])),
            "type": ref["type"], "snapshot": ref.get("snapshot")}


def build(row: Mapping[str, Any], notice_id: int, transition: str, by: str, note: str, now: float) -> AlertNotice:
    """The notice for one transition of an alert."""
    thresholds = {k: v for k, v in (row["thresholds"] or {}).items() if isinstance(v, (int, float, str, bool))}
    data = {
        "notice_id": notice_id, "alert_id": row["id"], "rule": row["rule"], "code": row["code"],
        "subject": row["subject"], "severity": row["severity"], "layer": row["layer"], "site": row["site"],
        "grid": row["grid"], "building": row["building"], "unit": row["unit"], "device_id": row["device_id"],
        "state": row["state"], "transition": transition, "by": by, "note": note[:1000], "count": row["count"],
        "incident": row["incident"], "events": row["events"] or [], "thresholds": thresholds,
        "route": row["route"], "opened_at": iso(row["opened_at"]), "ts": iso(now),
    }
    return AlertNotice.model_validate(data, strict=False)
