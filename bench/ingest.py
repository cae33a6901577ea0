"""`commhub bench ingest`: the hub as users run it (the whole community's mix, rules on) against raw paho QoS 1.

Realistic mode (the default): the sample community's normal life from the simulator (every modelled kind in
its proportions), queued in mosquitto for a persistent session by parallel `mosquitto_pub -l` processes (a C
client, so the publisher is not what we measure). The same backlog is drained by a raw paho QoS 1 subscriber
(the baseline), by the hub with its rules off, with the default rule pack on, and with the rules on during an
alert storm (every access grant an entry, so each credential re-use raises anti-passback). Then a steady live
rate is published to the running hub. "Done" means every message counted in InfluxDB's write and processed by
the rules (the alerting sink commits before the hub acknowledges); a final InfluxQL count must equal N.
CPU per message is the hub process's user+system time from /proc from the moment it is connected, over the
messages counted from then on; peak RSS is VmHWM.
The raw subscriber runs in its own process (bench/rawsub.py), so its CPU per message is read the same way and
printed beside the hub's: the part of the hub's cost that is paho and the broker's QoS 1 handshake alone.

`--simple` is the earlier single-type mode: 8 gas detectors' readings, rules off.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bench import feed as feeds
from bench import hubrun, rawsub
from bench.hubrun import DRAIN_TIMEOUT_S, HubProc, cpu_seconds, peak_rss_mb, wait_for
from commhub import mqtt
from commhub.config import MqttConfig, load
from commhub.hubproc import metrics_text, sample_sum
from commhub.services import Influxd, Mosquitto

REPO = Path(__file__).resolve().parents[1]
PUBLISHERS = 8
FILTER = "commhub/v1/#"
Queue = Callable[[], int]
After = Callable[[list[HubProc]], dict[str, float]]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options."""
    parser.add_argument("--messages", type=int, default=100_000, help="messages per backlog")
    parser.add_argument("--simple", action="store_true", help="the old single-type mode (gas readings, rules off)")
    parser.add_argument("--live-rate", type=float, default=2000.0, help="msg/s of the steady live phase (0 = skip)")
    parser.add_argument("--live-seconds", type=float, default=20.0, help="length of the live phase")
    parser.add_argument("--no-storm", action="store_true", help="skip the alert-storm run")
    parser.add_argument("--in-order", action="store_true",
                        help="queue each backlog in device-time order from one client (as a broker queues live "
                             "traffic while the hub is down) instead of per topic by parallel mosquitto_pub")
    parser.add_argument("--fleet-messages", type=int, default=5000,
                        help="messages per device for hub_rss_mb_10k_devices (0 = skip that line)")
    parser.add_argument("--in-process", action="store_true",
                        help="only the processing path in-process (no MQTT, no InfluxDB): CPU µs per message")
    parser.add_argument("--profile", action="store_true",
                        help="with --in-process: cProfile's top entries of one pass after a warm-up pass")
    parser.add_argument("--rounds", type=int, default=5, help="with --in-process: measured passes per setting")
    parser.add_argument("--warmup", type=int, default=1, help="with --in-process: unmeasured passes first")
    parser.add_argument("--batch", type=int, default=1000,
                        help="with --in-process: messages per batch (1,000: a backlog; a live 2,000 msg/s makes ~40)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")


# ---- the hub side ------------------------------------------------------------------------------------


def measure_hub(broker: Mosquitto, influx: Influxd, workdir: Path, queue: Queue, workers: int = 1,
                db: str = "bench", rules: bool = False, after: After | None = None,
                alerts: dict[str, Any] | list[dict[str, Any]] | None = None,
                started: Callable[[list[HubProc]], None] | None = None, communities: int = 1,
                **hub: Any) -> dict[str, float]:
    """Drain the backlog queue() publishes with `workers` hub processes on one shared subscription.

    With `started`, the drain is timed from when the first hub is connected (no message is taken before), not
    from the hubs' start, and started(hubs) is called then: the hubs' start-up (imports, migrations, seeds) is
    then outside the time, except what a later hub's overlaps the drain.

    With `communities` > 1, each community (the sample community under its own site id: hubrun.community_site)
    has `workers` hubs of its own, its own InfluxDB database and alert store (`alerts`: a list, one a community),
    all on the same broker and servers, as a district runs them; queue() publishes every community's backlog.
    """
    stores = alerts if isinstance(alerts, list) else [alerts or {}] * communities
    dbs = [db if communities == 1 else f"{db}c{i}" for i in range(communities)]
    hubs: list[HubProc] = []
    for i, (site_db, store) in enumerate(zip(dbs, stores, strict=True)):
        cfg_path = hubrun.hub_config(broker, influx, workdir, site_db, rules, store, hubrun.community_site(i), **hub)
        hubs += [HubProc(cfg_path, f"bench-{site_db}-{k}", workdir / f"hub-{site_db}-{k}.log") for k in range(workers)]
    for h in hubs:  # the first start creates the persistent sessions, so the backlog queues for them
        h.start()
    for h in hubs:
        h.wait_connected()
    for h in hubs:
        h.stop()
    n = queue()
    t0 = time.perf_counter()
    for h in hubs:
        h.start()
    out: dict[str, float] = {}
    try:
        def total(name: str) -> float:
            return sum(h.metric(name) for h in hubs)
        if started is not None:
            wait_for(lambda: any(h.metric("commhub_mqtt_connected") == 1.0 for h in hubs), DRAIN_TIMEOUT_S,
                     f"hub {db}: a worker connected", 0.02)
            started(hubs)
            t0 = time.perf_counter()
        # CPU from the moment each measuring process is connected, per message counted from then on. It was
        # this process's total minus the *first* process's start-up: two start-ups differ by up to a second
        # of CPU under load, ±15 µs a message of a 30,000-message run (rules off read 15 to 51 µs).
        base_cpu, base_msgs = 0.0, 0.0
        for h in hubs:
            h.wait_connected()
            base_cpu += cpu_seconds(h.pid)
            base_msgs += h.metric("commhub_messages_in_total")
        def drained() -> bool:
            # One /metrics page per hub and poll, both counters read from it: a scrape costs the hub 1.4-1.8 ms
            # of CPU, and two per 0.1 s poll (as before) charged it 1.4-2.4 µs a message at 12-20k msg/s.
            pages = [metrics_text(h.port) or "" for h in hubs]
            return all(sum(sample_sum(p, name) or 0.0 for p in pages) >= n
                       for name in ("commhub_messages_in_total", "commhub_points_written_total"))

        # messages_in counts a batch after its sinks (the rules) committed and it was acknowledged.
        wait_for(drained, DRAIN_TIMEOUT_S, f"hub {db}: backlog of {n} stored and ruled", 0.1)
        # And the messages a backlog's disorder kept in the rules' hold gone through the rules: its settle (a
        # quiet moment) and the rules' work on them count as the drain's.
        waited = sum(hubrun.wait_rules_done(hubrun.alerts_url(workdir, d, store))
                     for d, store in zip(dbs, stores, strict=True)) if rules else 0.0
        elapsed = time.perf_counter() - t0
        cpu = sum(cpu_seconds(h.pid) for h in hubs) - base_cpu
        out = {"msgs_per_s": n / elapsed, "cpu_us_per_msg": cpu / max(1.0, n - base_msgs) * 1e6,
               "peak_rss_mb": max(peak_rss_mb(h.pid) for h in hubs),
               "invalid": total("commhub_messages_invalid_total"),
               "duplicates": total("commhub_messages_duplicate_total"),
               "rules_done_after_drain_s": waited}
        if after is not None:
            out.update(after(hubs))
            out["peak_rss_mb"] = max(peak_rss_mb(h.pid) for h in hubs)
    finally:
        for h in hubs:
            h.stop()
            hubrun.forget_session(broker, h.worker_id)
    out["points_in_influxdb"] = sum(hubrun.influx_count(influx.url, d) for d in dbs)
    out["messages"] = n + out.get("live_msgs", 0)
    return out


def live_phase(broker: Mosquitto, messages: Sequence[tuple[str, bytes]], rate: float) -> After:
    """A steady `rate` of live messages to the running hub: its CPU per message and how far it lags behind."""
    def run(hubs: list[HubProc]) -> dict[str, float]:
        h = hubs[0]
        base = h.metric("commhub_messages_in_total")
        cpu0 = cpu_seconds(h.pid)
        pub = mqtt.make_client("bench-live-pub", MqttConfig(host=broker.host, port=broker.port))
        connected = threading.Event()
        pub.on_connect = lambda *a: connected.set()
        mqtt.connect(pub, MqttConfig(host=broker.host, port=broker.port), asynchronous=True)
        pub.loop_start()
        try:
            if not connected.wait(120):
                raise RuntimeError("live publisher: no CONNACK")
            t0 = time.perf_counter()
            for i, (topic, payload) in enumerate(messages):
                due = t0 + i / rate
                if (pause := due - time.perf_counter()) > 0:
                    time.sleep(pause)
                pub.publish(topic, payload, qos=1)
            sent_at = time.perf_counter()
            n = len(messages)
            wait_for(lambda: h.metric("commhub_messages_in_total") >= base + n, DRAIN_TIMEOUT_S,
                     "hub: live phase processed", 0.05)
            done_at = time.perf_counter()
        finally:
            hubrun.close(pub)
        return {"live_offered_msgs_per_s": n / (sent_at - t0), "live_msgs": n,
                "live_cpu_us_per_msg": (cpu_seconds(h.pid) - cpu0) / n * 1e6, "live_lag_s": done_at - sent_at}
    return run


# ---- the modes ---------------------------------------------------------------------------------------------


def _simple_messages(n: int) -> list[tuple[str, bytes]]:
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    community = load(REPO / "configs" / "commhub.yaml").community
    gas = [d.id for d in community.devices if d.kind.value == "gas"][:PUBLISHERS]  # registered: the hub refuses others
    out = []
    per = n // PUBLISHERS
    for dev in gas:
        topic = f"commhub/v1/{community.site.id}/gas/{dev}/tele"
        for i in range(per):
            ts = (t0 + timedelta(milliseconds=i)).isoformat().replace("+00:00", "Z")
            out.append((topic, json.dumps({"schema": 1, "device_id": dev, "ts": ts, "seq": i,
                                           "body": {"type": "gas_reading", "lel_pct": round((i % 500) / 10, 1)}})
                        .encode()))
    return out


def _queue(broker: Mosquitto, messages: Sequence[tuple[str, bytes]], workdir: Path, tag: str,
           in_order: bool = False) -> Queue:
    def go() -> int:
        feeds.queue_backlog(broker, messages, workdir, tag, in_order)
        return len(messages)
    return go


def _print_raw(raw: rawsub.RawResult) -> None:
    print(f"raw_paho_qos1_msgs_per_s: {raw.msgs_per_s:.0f}", flush=True)
    # The raw subscriber's own process: what paho's receive path (and the broker's QoS 1 acks) cost alone.
    print(f"raw_paho_qos1_cpu_us_per_msg: {raw.cpu_us_per_msg:.1f}", flush=True)


def _print_hub(prefix: str, r: dict[str, float], raw: rawsub.RawResult) -> None:
    for k in ("msgs_per_s", "cpu_us_per_msg", "peak_rss_mb"):
        print(f"{prefix}_{k}: {r[k]:.1f}" if k != "msgs_per_s" else f"{prefix}_{k}: {r[k]:.0f}")
    if r.get("rules_done_after_drain_s"):
        # Counted in the figures above: the backlog's held part waited for its settle, then went through the rules.
        print(f"{prefix}_rules_done_after_drain_s: {r['rules_done_after_drain_s']:.1f}")
    # Below 1: the hub spends less CPU on a message than a bare paho subscriber does on receiving it.
    print(f"{prefix}_cpu_ratio_to_raw_paho: {r['cpu_us_per_msg'] / raw.cpu_us_per_msg:.2f}")
    print(f"{prefix}_ratio_to_raw: {r['msgs_per_s'] / raw.msgs_per_s:.2f}")
    lost = int(r["messages"] - r["points_in_influxdb"])
    print(f"{prefix}_lost: {lost}")
    print(f"{prefix}_invalid: {int(r['invalid'])}")
    for k in ("live_offered_msgs_per_s", "live_cpu_us_per_msg", "live_lag_s"):
        if k in r:
            print(f"{prefix}_{k}: {r[k]:.1f}")


def run_simple(args: argparse.Namespace, broker: Mosquitto, influx: Influxd, workdir: Path) -> int:
    """The single-type mode."""
    n = args.messages - args.messages % PUBLISHERS
    msgs = _simple_messages(n)
    raw = rawsub.measure(broker, FILTER, _queue(broker, msgs, workdir, "raw"))
    hub = measure_hub(broker, influx, workdir, _queue(broker, msgs, workdir, "hub"), db="bench")
    print(f"messages: {n}")
    _print_raw(raw)
    _print_hub("hub", hub, raw)
    accounted = hub["points_in_influxdb"] == n and hub["invalid"] == 0
    print(f"all_accounted_for: {'yes' if accounted else 'NO'}")
    print(f"ratio: {hub['msgs_per_s'] / raw.msgs_per_s:.2f}")
    return 0 if accounted else 1


def run_realistic(args: argparse.Namespace, broker: Mosquitto, influx: Influxd, workdir: Path) -> int:
    """The realistic mode."""
    cfg = load(REPO / "configs" / "commhub.yaml")
    n_live = int(args.live_rate * args.live_seconds)
    t = time.perf_counter()
    feed = feeds.simulate(cfg, args.messages + n_live)
    backlog, live = feed.messages[:args.messages], feed.messages[args.messages:]
    n = len(backlog)
    print(f"messages: {n}", flush=True)
    print(f"devices: {len({t.split('/')[4] for t, _ in backlog})}", flush=True)
    print(f"body_types: {len(feed.by_type)}", flush=True)
    print(f"feed_build_s: {time.perf_counter() - t:.1f}", flush=True)
    order = args.in_order
    print(f"backlog_order: {feeds.backlog_order(order)}", flush=True)
    raw = rawsub.measure(broker, FILTER, _queue(broker, backlog, workdir, "raw", order))
    _print_raw(raw)
    off = measure_hub(broker, influx, workdir, _queue(broker, backlog, workdir, "off", order), db="rules_off")
    _print_hub("hub_rules_off", off, raw)
    after = live_phase(broker, live, args.live_rate) if n_live else None
    on = measure_hub(broker, influx, workdir, _queue(broker, backlog, workdir, "on", order), db="rules_on", rules=True,
                     after=after)
    _print_hub("hub_rules_on", on, raw)
    runs = [off, on]
    if not args.no_storm:
        stormy = feeds.storm(feeds.Feed(list(backlog)))
        storm = measure_hub(broker, influx, workdir, _queue(broker, stormy.messages, workdir, "storm", order),
                            db="rules_storm", rules=True)
        _print_hub("hub_rules_storm", storm, raw)
        print(f"storm_cost_ratio: {storm['cpu_us_per_msg'] / on['cpu_us_per_msg']:.2f}")
        runs.append(storm)
    ok = all(r["points_in_influxdb"] == r["messages"] and r["invalid"] == 0 for r in runs)
    print(f"all_accounted_for: {'yes' if ok else 'NO'}", flush=True)
    if args.fleet_messages:
        # Its own process, so its peak RSS is the hub's structures alone (see bench/fleetmem.py for how).
        fleet = subprocess.run([sys.executable, "-m", "bench.fleetmem", "--per-device", str(args.fleet_messages)],
                               cwd=REPO, capture_output=True, text=True, timeout=3600)
        lines = [ln for ln in fleet.stdout.splitlines() if ln.startswith(("hub_rss_mb_10k_devices:",
                                                                          "dedup_bytes_per_device:"))]
        if fleet.returncode != 0 or not lines:
            print(f"hub_rss_mb_10k_devices: failed ({fleet.stderr.strip()[-300:]})")
            ok = False
        for ln in lines:
            print(ln)
    print(f"ratio: {on['msgs_per_s'] / raw.msgs_per_s:.2f}")
    return 0 if ok else 1


def run_in_process(args: argparse.Namespace) -> int:
    """The processing path alone, rules off, on, and during an alert storm: rounds after a warm-up round."""
    from bench import hotpath
    cfg = load(REPO / "configs" / "commhub.yaml")
    backlog = feeds.simulate(cfg, args.messages).messages
    print(f"messages: {len(backlog)}", flush=True)
    settings = {"rules_off": (backlog, False), "rules_on": (backlog, True)}
    if not args.no_storm:
        settings["rules_storm"] = (feeds.storm(feeds.Feed(list(backlog))).messages, True)
    if args.profile:
        for name, (msgs, rules) in settings.items():
            print(f"profile of {name} (one pass after a warm-up pass):", flush=True)
            print(hotpath.profile(cfg, msgs, rules, batch=args.batch), flush=True)
        return 0
    print(f"rounds: {args.rounds} after {args.warmup} warm-up", flush=True)
    print(f"batch: {args.batch}", flush=True)
    cost = hotpath.measure_rounds(cfg, settings, args.rounds, args.warmup, batch=args.batch)
    for name, r in cost.items():
        print(f"inproc_{name}_rounds_us_per_msg: {' '.join(f'{x:.1f}' for x in r.rounds)}")
        # The median round is the figure to compare; min and floor show how far load inflated it.
        print(f"inproc_{name}_cpu_us_per_msg: {r.median:.1f}")
        print(f"inproc_{name}_cpu_us_per_msg_min: {r.least:.1f}")
        print(f"inproc_{name}_cpu_us_per_msg_floor: {r.floor:.1f}", flush=True)
        if r.sink_rounds:
            # The alerting sink alone (batches and timer passes), median round: steadier than the whole path.
            print(f"inproc_{name}_sink_cpu_us_per_msg: {statistics.median(r.sink_rounds):.1f}", flush=True)
    if "rules_storm" in cost:
        print(f"storm_cost_ratio: {cost['rules_storm'].median / cost['rules_on'].median:.2f}")
    # rules off against rules on, both of this run: the share of the path that is ingest.
    print(f"ratio: {cost['rules_off'].median / cost['rules_on'].median:.2f}")
    return 0


def run(args: argparse.Namespace) -> int:
    """Measure and print."""
    if args.in_process:
        return run_in_process(args)
    workdir = Path(tempfile.mkdtemp(prefix="commhub-bench-ingest-"))
    broker = Mosquitto(workdir / "mosquitto")
    influx = Influxd(workdir / "influxd")
    broker.start()
    influx.start()
    try:
        return (run_simple if args.simple else run_realistic)(args, broker, influx, workdir)
    finally:
        broker.stop()
        influx.stop()
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)


