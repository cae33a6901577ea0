"""The people layer through the API: patrol check-ins and residents' reports become events on MQTT.

A check-in is a `patrol_scan` from the checkpoint itself, so the hub stores it and the `patrol_missed`
absence rule sees it as from a scanner. A report opens a ticket (`AlertStore.open_report`, routed like any
other alert) and is published as a `resident_report` event of the `report_desk` device `api-reports`, which
the community model registers under `site.devices` like any device the hub accepts; its text stays in the
ticket (SQL), never on the wire, in InfluxDB or in a log. A guard is named on the wire only by an opaque hash.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import logging
import uuid
from datetime import UTC, datetime, timedelta
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from api.data.publish import Publisher
from api.data.scope import check_place
from api.services.errors import Invalid, NotFound, Unavailable
from api.services.scope import Principal
from commhub import topics
from commhub.community import Community
from commhub.wire import DeviceKind, Envelope, Ident, PatrolScan, ResidentReport
from hub.alerts.store import AlertStore
from hub.store.snapshots import SnapshotStore

log = logging.getLogger(__name__)

REPORT_DEVICE = "api-reports"
MAX_SCAN_AGE = timedelta(days=1)
MAX_SCAN_AHEAD = timedelta(seconds=60)
_HISTORICAL_AFTER = timedelta(seconds=30)


class CheckinCreate(BaseModel):
    """A scan at a patrol checkpoint."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    checkpoint: Ident = Field(description="The checkpoint's device id (its QR/NFC tag names it).")
    guard: Ident = Field(description="The guard's staff or badge id; only a hash of it leaves the API.")
    method: Literal["qr", "nfc", "other"] = "qr"
    at: float | None = Field(default=None, ge=0, le=9.2e9, description="Scan time, epoch s (default now).")


class CheckinPublic(BaseModel):
    """What was published."""

    checkpoint: str
    ts: float
    seq: int
    historical: bool


class ReportCreate(BaseModel):
    """A resident's report, posted by a resident terminal or entered by staff."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    category: Literal["safety", "fire", "noise", "facility", "welfare", "other"]
    grid: Ident
    building: Ident | None = None
    unit: Ident | None = None
    text: str = Field(min_length=1, max_length=1000, description="Kept in the ticket only.")
    photo_jpeg_b64: str | None = Field(default=None, max_length=2_800_000, description="Optional JPEG, base64.")


class ReportPublic(BaseModel):
    """The ticket a report opened."""

    report_id: str
    alert_id: int
    notice_id: int
    severity: str
    event_published: bool = Field(description="False when the broker did not acknowledge within the timeout.")


class PeopleService:
    """Check-ins and reports."""

    def __init__(self, community: Community, root: str, publisher: Publisher, store: AlertStore,
                 photos: SnapshotStore) -> None:
        self.community = community
        self.root = root
        self.publisher = publisher
        self.store = store
        self.photos = photos
        self.devices = community.device_index()
        desk = self.devices.get(REPORT_DEVICE)
        if desk is None or desk.kind is not DeviceKind.REPORT_DESK:
            # Tickets still open, but the hub dead-letters their events (unknown_device): say so once, at start.
            log.error("the community model registers no report desk %r (kind report_desk under site.devices): "
                      "residents' reports will open tickets, but the hub will refuse their events", REPORT_DEVICE)

    def guard_ref(self, guard: str) -> str:
        """An opaque ref for a guard (site-salted SHA-256), so no staff id reaches the wire or InfluxDB."""
        return hashlib.sha256(f"{self.community.site.id}:{guard}".encode()).hexdigest()[:16]

    def checkin(self, who: Principal, c: CheckinCreate, now: datetime) -> CheckinPublic:
        """Publish the scan as the checkpoint's own patrol_scan."""
        d = self.devices.get(c.checkpoint)
        if d is None or d.kind is not DeviceKind.PATROL or not who.covers(d.grid, d.building,
                                                                         d.effective_layer.value):
            raise NotFound(f"no checkpoint {c.checkpoint!r}")
        ts = datetime.fromtimestamp(c.at, UTC) if c.at is not None else now
        if ts < now - MAX_SCAN_AGE or ts > now + MAX_SCAN_AHEAD:
            raise Invalid("the scan time is more than a day old or in the future; check the scanner's clock")
        historical = now - ts > _HISTORICAL_AFTER
        env = Envelope(device_id=d.id, ts=ts, seq=self.publisher.next_seq(d.id), historical=historical,
                       body=PatrolScan(checkpoint=d.id, guard_ref=self.guard_ref(c.guard), method=c.method))
        if not self.publisher.publish(topics.event(self.root, self.community.site.id, d.kind.value, d.id), env):
            raise Unavailable("the broker did not take the check-in; it was not recorded, scan again")
        return CheckinPublic(checkpoint=d.id, ts=ts.timestamp(), seq=env.seq, historical=historical)

    def report(self, who: Principal, r: ReportCreate, now: datetime) -> ReportPublic:
        """Open the ticket, keep the photo, publish the event."""
        check_place(self.community, who, r.grid, r.building)
        if r.unit is not None and (r.building is None or r.unit not in next(
                (b.units for g in self.community.grids for b in g.buildings if b.id == r.building), ())):
            raise NotFound(f"no unit {r.unit!r}")
        photo: bytes | None = None
        if r.photo_jpeg_b64 is not None:
            try:
                photo = base64.b64decode(r.photo_jpeg_b64, validate=True)
            except (binascii.Error, ValueError):
                raise Invalid("photo_jpeg_b64 is not base64") from None
        report_id = "r" + uuid.uuid4().hex[:20]
        if photo is not None:
            parts = topics.TopicParts(self.root, self.community.site.id, "report_desk", REPORT_DEVICE,
                                      topics.Channel.SNAP, report_id)
            refused = self.photos.save(parts, photo)
            if refused:
                raise Invalid(f"photo refused: {refused}")
        n = self.store.open_report(r.category, r.grid, who.username, r.building, r.unit, r.text)
        env = Envelope(device_id=REPORT_DEVICE, ts=now, seq=self.publisher.next_seq(REPORT_DEVICE),
                       body=ResidentReport(report_id=report_id, category=r.category, place_grid=r.grid,
                                           place_building=r.building, place_unit=r.unit,
                                           source="terminal" if who.auth == "api_key" else "staff",
                                           has_photo=photo is not None, alert_id=n.alert_id))
        ok = self.publisher.publish(topics.event(self.root, self.community.site.id, "report_desk", REPORT_DEVICE),
                                    env)
        if not ok:
            log.warning("report %s: ticket %d opened, but the broker did not acknowledge its event", report_id,
                        n.alert_id)
        return ReportPublic(report_id=report_id, alert_id=n.alert_id, notice_id=n.notice_id, severity=n.severity,
                            event_published=ok)
