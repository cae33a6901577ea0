"""Serving snapshots from the hub's snapshot store: originals to police, blurred to every other role."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from api.data import influxql
from api.data.blur import Blurrer, Rect
from api.data.influx import InfluxReader, InfluxUnavailable
from api.services.errors import NotFound
from api.services.scope import Principal
from commhub.community import Community
from commhub.wire import DeviceKind
from hub.store.snapshots import SnapshotStore

log = logging.getLogger(__name__)


class SnapshotService:
    """Finds a snapshot by (device, id) inside the caller's jurisdiction and blurs it unless the role is police."""

    def __init__(self, store: SnapshotStore, community: Community, reader: InfluxReader | None,
                 blurrer: Blurrer | None = None) -> None:
        self.store = store
        self.community = community
        self.devices = community.device_index()
        self.reader = reader
        self._blurrer = blurrer

    @property
    def blurrer(self) -> Blurrer:
        """Loaded on first use: the cascades and HOG take a moment."""
        if self._blurrer is None:
            self._blurrer = Blurrer()
        return self._blurrer

    def original(self, device_id: str, snapshot_id: str, who: Principal) -> bytes:
        """The stored JPEG; NotFound when absent or outside the caller's reach (ids are validated Idents)."""
        d = self.devices.get(device_id)
        if d is None or d.kind is not DeviceKind.CAMERA or not who.covers(d.grid, d.building, d.effective_layer.value):
            raise NotFound("no such snapshot")
        path = self.store.path(self.community.site.id, device_id, snapshot_id)
        # The ids are validated identifiers, but check the resolved path stays in the store anyway.
        root = self.store.directory.resolve()
        if root not in path.resolve().parents:
            raise NotFound("no such snapshot")
        try:
            return path.read_bytes()
        except OSError:
            raise NotFound("no such snapshot") from None

    def read(self, device_id: str, snapshot_id: str, who: Principal) -> tuple[bytes, bool]:
        """(JPEG, blurred?) for the caller: only police get the original."""
        data = self.original(device_id, snapshot_id, who)
        if who.sees_unblurred:
            return data, False
        return self.blurrer.blur(data, self.event_boxes(device_id, snapshot_id)), True

    def event_boxes(self, device_id: str, snapshot_id: str) -> Sequence[Rect]:
        """Person boxes of the camera events that reference this snapshot (the HOG detector adds its own)."""
        if self.reader is None:
            return []
        q = (f"SELECT {influxql.ident('box_x')}, {influxql.ident('box_y')}, {influxql.ident('box_w')}, "
             f"{influxql.ident('box_h')} FROM {influxql.ident('camera_object')} WHERE "
             f"{influxql.eq('device_id', device_id)} AND {influxql.ident('snapshot')} = "
             f"{influxql.string(snapshot_id)} AND {influxql.ident('label')} = 'person'")
        try:
            series = self.reader.query(q)
        except InfluxUnavailable:
            log.warning("InfluxDB unavailable: blurring snapshot by face and HOG detection only")
            return []
        boxes = []
        for s in series:
            for _, x, y, w, h in s.get("values", []):
                if None not in (x, y, w, h):
                    boxes.append((int(x), int(y), int(w), int(h)))
        return boxes
