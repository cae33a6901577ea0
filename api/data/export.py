"""Collecting one incident's evidence (alert timeline, events, access log, original snapshots) for police."""

from __future__ import annotations

import logging
import re
from datetime import UTC, datetime, timedelta
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pydantic import BaseModel, ConfigDict, Field

from api.data.events import EventQuery, EventService
from api.data.evidence import Package, build_zip, key_id
from api.data.snapshots import SnapshotService
from api.services.errors import NotFound
from api.services.scope import Principal
from hub.alerts.store import AlertStore

log = logging.getLogger(__name__)

ACCESS_TYPES = ("access_granted", "access_denied", "door_opened", "door_closed", "exit_request", "passage",
                "duress")
_IDENT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]*$")


class ExportRequest(BaseModel):
    """Why the evidence is exported (kept in the chain-of-custody record)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    reason: str = Field(min_length=3, max_length=500, description="Case number or purpose of the export.")
    window_minutes: int = Field(default=30, ge=0, le=24 * 60,
                                description="Events this long before the alert opened and after it ended.")


class EvidenceService:
    """Builds signed evidence packages for alerts."""

    def __init__(self, alerts: AlertStore, events: EventService, snapshots: SnapshotService,
                 key: Ed25519PrivateKey) -> None:
        self.alerts = alerts
        self.events = events
        self.snapshots = snapshots
        self.key = key

    @property
    def key_id(self) -> str:
        """Fingerprint of the signing key."""
        return key_id(self.key.public_key())

    def alert(self, alert_id: int, who: Principal) -> dict[str, Any]:
        """The alert row, or NotFound when absent or outside the caller's reach."""
        row = self.alerts.get(alert_id)
        if row is None or not who.covers(row["grid"], row["building"], row["layer"]):
            raise NotFound(f"no alert {alert_id}")
        return row

    def export(self, alert_id: int, who: Principal, req: ExportRequest, custody: dict[str, Any],
               now: datetime | None = None) -> bytes:
        """The signed ZIP of one alert's evidence."""
        now = now or datetime.now(UTC)
        row = self.alert(alert_id, who)
        timeline = self.alerts.transitions(alert_id)
        margin = timedelta(minutes=req.window_minutes)
        opened = datetime.fromtimestamp(row["opened_at"], UTC)
        ended = row["resolved_at"] or row["closed_at"]
        start = opened - margin
        end = min(now, (datetime.fromtimestamp(ended, UTC) if ended else now) + margin)
        if end <= start:
            end = start + timedelta(seconds=1)
        place = {"grid": row["grid"], "building": row["building"]}
        events = self._events(who, place, start, end, None)
        access = [e for t in ACCESS_TYPES for e in self._events(who, place, start, end, t)]
        snaps: dict[str, bytes] = {}
        missing: list[str] = []
        refs = [(r.get("device_id"), r.get("snapshot")) for r in row.get("events") or []]
        refs += [(e.get("device_id"), e["fields"].get("snapshot")) for e in events]
        for device, snap in refs:
            if not (isinstance(device, str) and isinstance(snap, str) and _IDENT.match(device)
                    and _IDENT.match(snap)):
                continue
            name = f"{device}/{snap}.jpg"
            if name in snaps or name in missing:
                continue
            try:
                snaps[name] = self.snapshots.original(device, snap, who)
            except NotFound:
                missing.append(name)
        record = {**custody, "alert_id": alert_id, "reason": req.reason, "exported_at": now.isoformat(),
                  "window": {"start": start.isoformat(), "end": end.isoformat()}, "key_id": self.key_id}
        pkg = Package(custody=record, alert=row, timeline=timeline, events=events, access_log=access,
                      snapshots=snaps, missing_snapshots=missing)
        log.info("evidence export of alert %d: %d events, %d snapshots", alert_id, len(events), len(snaps))
        return build_zip(pkg, self.key, now)

    def _events(self, who: Principal, place: dict[str, Any], start: datetime, end: datetime,
                type_: str | None) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        cursor = None
        while True:
            q = EventQuery(grid=place["grid"], building=place["building"], start=start.timestamp(),
                           end=end.timestamp(), type=type_, limit=1000, cursor=cursor)
            page = self.events.history(q, who, end)
            out.extend(e.model_dump(mode="json") for e in page.events)
            cursor = page.next_cursor
            if cursor is None or len(out) >= 20_000:
                return out
