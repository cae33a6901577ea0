"""The data services of one API process: InfluxQL reader, events, devices, snapshots, evidence (opened in lifespan)."""

from __future__ import annotations

import logging
import os

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from api.data.devices import DeviceService
from api.data.events import EventService
from api.data.evidence import key_id, load_or_create_key
from api.data.export import EvidenceService
from api.data.influx import InfluxReader
from api.data.people import PeopleService
from api.data.publish import Publisher
from api.data.snapshots import SnapshotService
from commhub.config import Config
from hub.alerts.store import AlertStore
from hub.store.snapshots import SnapshotStore

log = logging.getLogger(__name__)


class DataServices:
    """Constructed without I/O; start() loads (or generates) the signing key and opens the InfluxDB pool."""

    def __init__(self, cfg: Config, store: AlertStore) -> None:
        self.cfg = cfg
        self.reader = InfluxReader(cfg.influx)
        self.events = EventService(self.reader, cfg.community)
        snaps = SnapshotStore(cfg.hub.snapshots_dir, cfg.hub.snapshot_max_bytes)
        self.snapshots = SnapshotService(snaps, cfg.community, self.reader)
        self.publisher = Publisher(cfg.mqtt, f"api-pub-{os.getpid()}-{id(self):x}")
        self.people = PeopleService(cfg.community, cfg.mqtt.root, self.publisher, store, snaps)
        self.devices = DeviceService(self.reader, cfg.community, store.engine)
        self.store = store
        self._evidence: EvidenceService | None = None

    def start(self) -> None:
        """Open the pool, start connecting to the broker and make sure the evidence key exists."""
        self.reader.start()
        self.publisher.start()
        key = load_or_create_key(self.cfg.api.evidence_key)
        log.info("evidence signing key %s at %s", key_id(key.public_key()), self.cfg.api.evidence_key)
        self._evidence = EvidenceService(self.store, self.events, self.snapshots, key)

    @property
    def key(self) -> Ed25519PrivateKey:
        """The evidence signing key (after start)."""
        return self.evidence.key

    @property
    def evidence(self) -> EvidenceService:
        """The evidence exporter (after start)."""
        if self._evidence is None:
            raise RuntimeError("DataServices.start() was not called")
        return self._evidence

    def stop(self) -> None:
        """Close the pool and the broker connection."""
        self.publisher.stop()
        self.reader.stop()
