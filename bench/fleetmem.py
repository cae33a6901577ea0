"""`python -m bench.fleetmem`: the hub's memory with 10,000 devices after 5,000 messages each, in-process.

A full run (50 million messages through MQTT) would take hours here, so this builds the hub worker as
`commhub hub` does (validator, de-duplication, line protocol, the alerting sink on SQLite with the default
rules and absence timers for every device), then:
- sends one real message per device through the worker's processing path (topic and tag caches, rule state,
  alert store), and
- feeds each device's 5,000 seqs to the de-duplicator (two of every hundred swapped, so devices hold
  out-of-order bits for a while), which is the only structure that grows with the message count.
It prints the process's peak RSS (VmHWM) as `hub_rss_mb_10k_devices`.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from bench.hubrun import peak_rss_mb
from commhub import topics
from commhub.community import Community, Device
from commhub.config import Config, load
from hub.alerting import AlertingSink
from hub.worker import Worker
from simulators.fleet import select

REPO = Path(__file__).resolve().parents[1]


def fleet_community(community: Community, fleet: list[Device]) -> Community:
    """The community with only these devices, validated: residents keep the watched devices still in it.

    model_copy would skip validation, and a fleet smaller than the sample left residents watching devices
    no longer registered (the resident absence rule's seed then failed with a KeyError).
    """
    ids = {d.id for d in fleet}
    residents = [r.model_copy(update={"devices": tuple(d for d in r.devices if d in ids)})
                 for r in community.residents]
    data = community.model_dump()
    data.update(devices=[d.model_dump() for d in fleet], residents=[r.model_dump() for r in residents])
    return Community.model_validate(data)


def measure(devices: int, per_device: int) -> dict[str, float]:
    """Build, fill and measure; returns the figures."""
    base = load(REPO / "configs" / "commhub.yaml")
    fleet = select(base.community.devices, devices)
    community = fleet_community(base.community, fleet)
    tmp = Path(tempfile.mkdtemp(prefix="bench-fleetmem-"))
    try:
        return _fill(base, community, fleet, tmp, per_device)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _fill(base: Config, community: Community, fleet: list[Device], tmp: Path, per_device: int) -> dict[str, float]:
    """Build the worker on tmp, send one message per device, fill the de-duplicator, measure."""
    hub = base.hub.model_copy(update={"spool": base.hub.spool.model_copy(update={"dir": tmp / "spool", "fsync": False}),
                                      "metrics": base.hub.metrics.model_copy(update={"port": 0})})
    alerts = base.alerts.model_copy(update={"enabled": True, "db_url": f"sqlite:///{tmp}/alerts.db"})
    cfg = base.model_copy(update={"community": community, "hub": hub, "alerts": alerts})
    sink = AlertingSink(cfg, mqtt=False)
    # Migrate and seed now (open()), without start()'s timer thread (the bench ticks itself);
    # handle() would otherwise do it inside the first measured batch.
    sink.open()
    try:
        worker = Worker(cfg, [sink])
        worker.spool.open()
        now = time.time()
        ts = datetime.now(UTC).isoformat().replace("+00:00", "Z")
        batch = []
        for d in fleet:
            topic = topics.device(cfg.mqtt.root, community.site.id, d.kind.value, d.id, "tele")
            payload = json.dumps({"schema": 1, "device_id": d.id, "ts": ts, "seq": per_device + 10,
                                  "body": {"type": "heartbeat", "uptime_s": 1.0}}).encode()
            batch.append((topic, payload))
            if len(batch) == 1000:
                worker.process_batch(batch, now)
                batch = []
        if batch:
            worker.process_batch(batch, now)
        ids = [d.id for d in fleet]
        dedup = worker.dedup
        t0 = time.perf_counter()
        swap = {50: 1, 51: -1}  # seqs 50 and 51 of every hundred arrive swapped
        for seq in range(per_device):
            s = seq + swap.get(seq % 100, 0)
            for dev in ids:
                dedup.first_time(dev, s)
        spooled = worker.metrics.registry.get_sample_value("commhub_points_spooled_total",
                                                           {"worker": cfg.hub.worker_id})
        return {"devices": len(fleet), "messages_per_device": per_device, "hot_path_points": int(spooled or 0),
                "dedup_fill_s": time.perf_counter() - t0,
                "dedup_bytes_per_device": dedup.approx_bytes() / len(dedup),
                "hub_rss_mb_10k_devices": peak_rss_mb(os.getpid())}
    finally:
        sink.db.dispose()


def main() -> int:
    """Print `name: value` lines."""
    parser = argparse.ArgumentParser(prog="python -m bench.fleetmem")
    parser.add_argument("--devices", type=int, default=10_000)
    parser.add_argument("--per-device", type=int, default=5_000)
    args = parser.parse_args()
    for k, v in measure(args.devices, args.per_device).items():
        print(f"{k}: {v:.1f}" if isinstance(v, float) else f"{k}: {v}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
