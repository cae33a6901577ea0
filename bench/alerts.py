"""`commhub bench alerts`: publish -> alert latency, on the MQTT alert topic and on the live feed.

A real mosquitto, InfluxDB and hub worker (in this process, so the live feed can be read) with the alerting
sink and the sample community. Each sample presses a panic button, times the notice on both channels, then
marks the alert a false alarm so the next press opens a new one. Measured at rest and under background
telemetry at --rate msg/s (normal readings that fire nothing).
"""

from __future__ import annotations

import argparse
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho

from bench.stats import percentile
from commhub import topics
from commhub.config import (
    AlertsConfig,
    Config,
    HubConfig,
    InfluxConfig,
    MetricsConfig,
    MqttConfig,
    SpoolConfig,
    load_community,
)
from commhub.mqtt import connect, make_client
from commhub.services import Influxd, Mosquitto
from commhub.wire import AlertNotice, Envelope, GasReading, HydrantPressure, PanicPress, body_channel

REPO = Path(__file__).resolve().parents[1]
ROOT = "benchalerts"
TARGET_P99_MS = 50.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options."""
    parser.add_argument("--samples", type=int, default=200, help="alerts timed per condition")
    parser.add_argument("--rate", type=float, default=1000.0, help="background telemetry, msg/s")
    parser.add_argument("--batch-wait-ms", type=float, default=None,
                        help="hub.batch_wait_ms (default: the hub's); a lone message waits this long for company")
    parser.add_argument("--batch-gather-ms", type=float, default=None,
                        help="hub.batch_gather_ms (default: the hub's); in a steady stream a batch gathers this long")
    parser.add_argument("--no-influx", action="store_true", help="run without InfluxDB (the spool just grows)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")


def _background(host: str, port: int, rate: float) -> int:
    """Child process: normal gas and hydrant readings at a steady rate until SIGTERM; prints 'sent elapsed'."""
    import signal
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    community = load_community(REPO / "configs" / "community" / "sample.yaml")
    mqtt = MqttConfig(host=host, port=port, root=ROOT)
    devs = [d for d in community.devices if d.kind in ("gas", "hydrant")]
    client = make_client("bench-background", mqtt)
    connect(client, mqtt)
    client.loop_start()
    rng = random.Random(1)
    seq = int(time.time() * 1000) * 1000
    sent = 0
    start = time.perf_counter()
    while not stop.is_set():
        for _ in range(max(1, int(rate / 100))):
            d = devs[sent % len(devs)]
            seq += 1
            body: Any = (GasReading(lel_pct=round(rng.uniform(0, 5), 1)) if d.kind == "gas"
                         else HydrantPressure(pressure_mpa=round(rng.uniform(0.28, 0.32), 3)))
            env = Envelope(device_id=d.id, ts=datetime.now(UTC), seq=seq, body=body)
            topic = topics.device(ROOT, community.site.id, str(d.kind), d.id, body_channel(body.type))
            client.publish(topic, env.to_json(), qos=1)
            sent += 1
        time.sleep(max(0.0, start + sent / rate - time.perf_counter()))
    elapsed = time.perf_counter() - start
    client.disconnect()
    client.loop_stop()
    print(sent, elapsed, flush=True)
    return 0


def _measure(cfg: Config, sink: Any, samples: int, label: str) -> dict[str, list[float]]:
    """Press panic buttons one after another and time both channels."""
    panic = [d for d in cfg.community.devices if d.kind == "panic_button"]
    mqtt_at: dict[tuple[str, int], float] = {}
    live_at: dict[tuple[str, int], float] = {}
    got = threading.Condition()

    def key(n: AlertNotice) -> tuple[str, int] | None:
        return (n.events[-1].device_id, n.events[-1].seq) if n.events and n.rule == "sos_button" else None

    def on_message(_c: Any, _u: Any, m: paho.MQTTMessage) -> None:
        t = time.time()
        k = key(AlertNotice.model_validate_json(m.payload))
        if k:
            with got:
                mqtt_at.setdefault(k, t)
                got.notify_all()

    listener = make_client(f"bench-listen-{label}", cfg.mqtt)
    listener.on_message = on_message
    connect(listener, cfg.mqtt)
    listener.subscribe(topics.alerts_filter(ROOT), qos=1)
    listener.loop_start()
    feed = sink.live.subscribe(maxsize=100_000)
    stop = threading.Event()

    def read_live() -> None:
        while not stop.is_set():
            n = feed.get(timeout=0.1)
            if n is not None and (k := key(n)):
                with got:
                    live_at.setdefault(k, time.time())
                    got.notify_all()

    reader = threading.Thread(target=read_live, daemon=True)
    reader.start()
    pub = make_client(f"bench-pub-{label}", cfg.mqtt)
    connect(pub, cfg.mqtt)
    pub.loop_start()
    time.sleep(0.3)
    out: dict[str, list[float]] = {"mqtt": [], "live": []}
    seq = int(time.time() * 1000) * 1000  # unique across runs: the hub drops repeated (device, seq)
    for i in range(samples):
        d = panic[i % len(panic)]
        seq += 1
        env = Envelope(device_id=d.id, ts=datetime.now(UTC), seq=seq, body=PanicPress())
        topic = topics.event(ROOT, cfg.community.site.id, "panic_button", d.id)
        k = (d.id, seq)
        t0 = time.time()
        pub.publish(topic, env.to_json(), qos=1)
        with got:
            got.wait_for(lambda k=k: k in mqtt_at and k in live_at, timeout=5)  # type: ignore[misc]
        if k in mqtt_at:
            out["mqtt"].append((mqtt_at[k] - t0) * 1000)
        if k in live_at:
            out["live"].append((live_at[k] - t0) * 1000)
        for a in sink.store.alerts(rule="sos_button", device_id=d.id):
            if a["state"] == "open":
                sink.store.act(a["id"], "false_alarm", "bench", "latency probe")
        time.sleep(0.02)
    stop.set()
    reader.join()
    feed.close()
    for c in (pub, listener):
        c.disconnect()
        c.loop_stop()
    return out


def run(args: argparse.Namespace) -> int:
    """Measure and print `name: value` lines."""
    from hub.alerting import AlertingSink
    from hub.worker import Worker
    tmp = Path(tempfile.mkdtemp(prefix="bench-alerts-"))
    broker = Mosquitto(tmp / "mosquitto")
    influx = None if args.no_influx else Influxd(tmp / "influxd")
    broker.start()
    if influx is not None:
        influx.start()
    community = load_community(REPO / "configs" / "community" / "sample.yaml")
    cfg = Config(mqtt=MqttConfig(host=broker.host, port=broker.port, root=ROOT),
                 influx=InfluxConfig(url=influx.url if influx else "http://127.0.0.1:9", transport="v1",
                                     database="benchalerts"),
                 hub=HubConfig(worker_id="bench-alerts", metrics=MetricsConfig(port=0),
                               spool=SpoolConfig(dir=tmp / "spool"), snapshots_dir=tmp / "snapshots",
                               **({} if args.batch_wait_ms is None else {"batch_wait_ms": args.batch_wait_ms}),
                               **({} if args.batch_gather_ms is None else {"batch_gather_ms": args.batch_gather_ms})),
                 alerts=AlertsConfig(enabled=True, db_url=f"sqlite:///{tmp}/alerts.db"), community=community)
    sink = AlertingSink(cfg)
    worker = Worker(cfg, sinks=[sink])
    results: dict[str, dict[str, list[float]]] = {}
    bg: subprocess.Popen[str] | None = None
    try:
        worker.start()
        if not worker.wait_connected(15):
            print("error: the hub did not connect")
            return 1
        results["rest"] = _measure(cfg, sink, args.samples, "rest")
        # The background publisher is its own process, as devices are: it must not share the hub's GIL.
        bg = subprocess.Popen([sys.executable, "-m", "bench.alerts", "background", broker.host, str(broker.port),
                               str(args.rate)], cwd=REPO, stdout=subprocess.PIPE, text=True)
        time.sleep(1.5)
        results["load"] = _measure(cfg, sink, args.samples, "load")
    finally:
        bg_sent, bg_elapsed = 0, 0.0
        if bg is not None:
            bg.terminate()
            out, _ = bg.communicate(timeout=30)
            if out.split():
                bg_sent, bg_elapsed = int(out.split()[0]), float(out.split()[1])
        worker.stop(flush_timeout=5)
        broker.stop()
        if influx is not None:
            influx.stop()
    print(f"samples: {args.samples}")
    print(f"hub_batch_wait_ms: {cfg.hub.batch_wait_ms:g}")
    print(f"hub_batch_gather_ms: {cfg.hub.batch_gather_ms:g}")
    print(f"background_msgs_per_s: {bg_sent / bg_elapsed if bg_elapsed else 0:.0f}")
    ok = True
    for cond, chans in results.items():
        for chan, xs in chans.items():
            print(f"{chan}_{cond}_received: {len(xs)}")
            print(f"{chan}_{cond}_p50_ms: {percentile(xs, 50):.2f}")
            print(f"{chan}_{cond}_p99_ms: {percentile(xs, 99):.2f}")
            print(f"{chan}_{cond}_max_ms: {max(xs) if xs else float('nan'):.2f}")
            print(f"{chan}_{cond}_mean_ms: {statistics.fmean(xs) if xs else float('nan'):.2f}")
            ok = ok and len(xs) == args.samples and percentile(xs, 99) < TARGET_P99_MS
    print(f"target_p99_ms: {TARGET_P99_MS:.0f}")
    print(f"target_met: {'yes' if ok else 'NO'}")
    if not args.keep:
        import shutil
        shutil.rmtree(tmp, ignore_errors=True)
    else:
        print(f"kept: {tmp}")
    return 0 if ok else 1


if __name__ == "__main__" and len(sys.argv) == 5 and sys.argv[1] == "background":
    sys.exit(_background(sys.argv[2], int(sys.argv[3]), float(sys.argv[4])))
