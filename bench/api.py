"""`commhub bench api`: the operator API under load, each figure next to a baseline from the same run.

A real mosquitto and the API in its own process (`commhub api`, uvicorn), on a SQLite store of --alerts
alerts of the sample community:
- alert list: GET /api/v1/alerts p50/p99 (page of 50, as the control room and as a grid worker, newest first
  and by severity, and deep pages through the cursor) against the same SELECT straight on SQL (ratio);
- SSE fan-out: --clients live streams; notices published on the hub's alert topic as a hub worker would;
  publish-to-client p99 against a plain MQTT subscriber of the same topic (ratio);
- event history (InfluxQL on a real influxd holding a day of events from --devices devices): GET /api/v1/events
  p50/p99 (newest page as the control room and as a grid worker, one device's day) against the same InfluxQL
  sent straight to /query (ratio).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import paho.mqtt.client as paho
import yaml
from sqlalchemy import Table, insert, select

from api.services.alerts import AlertFilter
from api.services.scope import Principal
from api.state import Services
from bench.stats import percentile
from commhub import topics
from commhub.config import load
from commhub.mqtt import connect, make_client
from commhub.ports import free_port
from commhub.services import Influxd, Mosquitto
from commhub.wire import AlertNotice
from hub.alerts.models import Alert

REPO = Path(__file__).resolve().parents[1]
ROOT = "benchapi"
PASSWORD = "bench-password-1"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options."""
    parser.add_argument("--alerts", type=int, default=100_000, help="alerts in the store")
    parser.add_argument("--requests", type=int, default=200, help="list requests timed per case")
    parser.add_argument("--clients", type=int, default=200, help="SSE clients")
    parser.add_argument("--notices", type=int, default=100, help="notices published for the fan-out")
    parser.add_argument("--rate", type=float, default=2.0, help="notices per second (a burst of alerts)")
    parser.add_argument("--devices", type=int, default=1000, help="devices with a day of events in InfluxDB")
    parser.add_argument("--event-requests", type=int, default=50, help="event-history requests timed per case")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")


def _config(tmp: Path, mqtt_port: int, api_port: int, influx_url: str) -> Path:
    data = {"community": str(REPO / "configs" / "community" / "sample.yaml"),
            "mqtt": {"host": "127.0.0.1", "port": mqtt_port, "root": ROOT},
            "influx": {"url": influx_url, "transport": "v1", "database": "benchapi"},
            "alerts": {"enabled": True, "db_path": str(tmp / "alerts.db")},
            "api": {"port": api_port, "sse_queue": 10_000}}
    path = tmp / "commhub.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _fill(s: Services, n: int) -> None:
    """n alerts over the sample community's cells and buildings, spread over 30 days, mixed states."""
    rng = random.Random(7)
    c = s.cfg.community
    places: list[tuple[str, str | None]] = [(g.id, b.id) for g in c.grids for b in g.buildings]
    rules = [(r.id, r.code, str(r.layer), str(r.severity)) for r in s.store.rules.values()]
    states = ["open"] * 2 + ["acknowledged"] * 2 + ["resolved"] * 3 + ["closed"] * 10 + ["false_alarm"]
    now = time.time()
    table: Table = Alert.__table__  # type: ignore[assignment]
    route = {"tier": 0, "recipients": [], "reason": "route 0 (bench)", "group": "", "suppressed": None}
    with s.store.engine.begin() as conn:
        for start in range(0, n, 5000):
            rows = []
            for i in range(start, min(n, start + 5000)):
                rule, code, layer, sev = rules[i % len(rules)]
                grid, building = places[rng.randrange(len(places))]
                state = states[rng.randrange(len(states))]
                t = now - rng.uniform(0, 30 * 86400)
                rows.append({"active_key": None if state in ("closed", "false_alarm") else f"{rule}|bench-{i}",
                             "rule": rule, "code": code, "subject": f"bench-{i}", "severity": sev, "layer": layer,
                             "site": c.site.id, "grid": grid, "building": building, "unit": None,
                             "device_id": None, "state": state, "condition_active": False,
                             "ack_requires_clear": False, "auto_resolve": True, "count": 1, "incident": None,
                             "events": [], "thresholds": {}, "route": route, "tier": 0, "escalate_at": None,
                             "opened_at": t, "updated_at": t, "last_fired_at": t, "acked_at": None,
                             "resolved_at": None, "closed_at": None, "assignee": None})
            conn.execute(insert(table), rows)


def _wait_up(url: str, proc: subprocess.Popen[bytes], timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the API exited with {proc.returncode}")
        try:
            if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError("the API did not start")


def _alert_list(url: str, s: Services, tokens: dict[str, str], n: int) -> list[tuple[str, float, float, float]]:
    """(case, API p50 ms, API p99 ms, bare SQL p50 ms) per case."""
    gw = next(st for st in s.cfg.community.staff if st.role == "grid_worker")
    cases: list[tuple[str, str, dict[str, Any], Principal]] = [
             ("control_room_newest", "sec", {"limit": 50}, Principal("sec", "security_staff", None, None)),
             ("grid_worker_newest", "gw", {"limit": 50}, Principal("gw", "grid_worker", frozenset(gw.grids), None)),
             ("open_by_severity", "sec", {"limit": 50, "sort": "-severity", "state": ["open", "acknowledged"]},
              Principal("sec", "security_staff", None, None))]
    out = []
    with httpx.Client(base_url=url, timeout=60) as client:
        for name, user, params, who in cases:
            headers = {"Authorization": f"Bearer {tokens[user]}"}
            api_ms, sql_ms = [], []
            for _ in range(5):  # warm up both paths
                client.get("/api/v1/alerts", params=params, headers=headers).raise_for_status()
            for i in range(n):
                t0 = time.perf_counter()
                r = client.get("/api/v1/alerts", params=params, headers=headers)
                api_ms.append((time.perf_counter() - t0) * 1000)
                assert r.status_code == 200 and len(r.json()["items"]) == 50, r.text[:200]
                if i % 3 == 0:  # the baseline: the same page straight from SQL in this process
                    f = AlertFilter(state=params.get("state", ()))
                    sort = str(params.get("sort", "-id"))
                    t0 = time.perf_counter()
                    s.alerts.search(who, f, sort.lstrip("-"), True, 50)
                    sql_ms.append((time.perf_counter() - t0) * 1000)
            out.append((name, percentile(api_ms, 50), percentile(api_ms, 99), percentile(sql_ms, 50)))
        # deep paging: follow the cursor 40 pages down
        headers = {"Authorization": f"Bearer {tokens['sec']}"}
        deep: list[float] = []
        cursor = None
        for _ in range(40):
            page: dict[str, Any] = {"limit": 50, "sort": "-opened_at"}
            if cursor:
                page["cursor"] = cursor
            t0 = time.perf_counter()
            r = client.get("/api/v1/alerts", params=page, headers=headers)
            deep.append((time.perf_counter() - t0) * 1000)
            cursor = r.json()["next_cursor"]
        out.append(("cursor_pages_1_to_40", percentile(deep, 50), percentile(deep, 99), float("nan")))
    # the bare SELECT alone, without the service layer (what SQLite itself costs)
    table: Table = Alert.__table__  # type: ignore[assignment]
    bare = []
    with s.store.engine.connect() as conn:
        for _ in range(100):
            t0 = time.perf_counter()
            conn.execute(select(table).order_by(table.c.id.desc()).limit(51)).all()
            bare.append((time.perf_counter() - t0) * 1000)
    out.append(("bare_select_newest", percentile(bare, 50), percentile(bare, 99), float("nan")))
    return out


def _notice(i: int, site: str, grid: str) -> AlertNotice:
    now = datetime.now(UTC)
    return AlertNotice.model_validate({
        "notice_id": 10**12 + i, "alert_id": 10**12 + i, "rule": "sos_button", "code": "sos_button",
        "subject": f"bench-fanout-{i}", "severity": "critical", "layer": "people", "site": site, "grid": grid,
        "state": "open", "transition": "opened", "by": "system", "count": 1,
        "route": {"tier": 0, "reason": "route 0 (bench)"}, "opened_at": now, "ts": now}, strict=False)


async def _streams(port: int, token: str, n: int, expect: int, ready: Any, done_by: float) -> list[float]:
    """n SSE clients on raw asyncio sockets (an HTTP client library would be the bottleneck, not the API);
    the publish-to-receive ms of every bench notice each client gets."""
    got: list[float] = []
    connected = 0

    async def one() -> None:
        nonlocal connected
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(f"GET /api/v1/alerts/stream HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n"
                     f"Authorization: Bearer {token}\r\n\r\n".encode())
        await writer.drain()
        status = await reader.readline()
        assert b" 200 " in status, status
        connected += 1
        if connected == n:
            ready.set()
        seen = 0
        try:
            while seen < expect and time.time() < done_by:
                line = await asyncio.wait_for(reader.readline(), max(0.1, done_by - time.time()))
                if line.startswith(b"data: "):
                    got.append((time.time() - datetime.fromisoformat(json.loads(line[6:])["ts"]).timestamp()) * 1000)
                    seen += 1
        except TimeoutError:
            pass
        finally:
            writer.close()

    await asyncio.gather(*(one() for _ in range(n)), return_exceptions=True)
    return got


def _client_proc(port: int, token: str, n: int, expect: int, ready: Any, done_by: float, out: Any) -> None:
    """One process of SSE clients; puts its latencies on `out`."""
    out.put(asyncio.run(_streams(port, token, n, expect, ready, done_by)))


def _fanout(port: int, cfg: Any, token: str, clients: int, notices: int, rate: float) -> dict[str, float]:
    import multiprocessing as mp
    grid = cfg.community.grids[0].id
    mqtt_ms: list[float] = []

    def on_message(_c: Any, _u: Any, m: paho.MQTTMessage) -> None:
        n = AlertNotice.model_validate_json(m.payload)
        mqtt_ms.append((time.time() - n.ts.timestamp()) * 1000)

    listener = make_client("bench-api-listen", cfg.mqtt)
    listener.on_message = on_message
    connect(listener, cfg.mqtt)
    listener.subscribe(topics.alerts_filter(ROOT), qos=1)
    listener.loop_start()
    pub = make_client("bench-api-pub", cfg.mqtt)
    connect(pub, cfg.mqtt)
    pub.loop_start()
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    procs_n = max(1, min(4, clients // 25))
    done_by = time.time() + 90 + notices / rate * 3
    readies, procs = [], []
    for i in range(procs_n):
        share = clients // procs_n + (1 if i < clients % procs_n else 0)
        ready = ctx.Event()
        p = ctx.Process(target=_client_proc, args=(port, token, share, notices, ready, done_by, out), daemon=True)
        p.start()
        readies.append(ready)
        procs.append(p)
    for r in readies:
        r.wait(120)
    time.sleep(1.0)  # let the last streams' subscriptions settle
    start = time.perf_counter()
    for i in range(notices):
        n = _notice(i, cfg.community.site.id, grid)
        pub.publish(topics.alert(ROOT, n.site, n.grid, n.severity), n.model_dump_json(), qos=1)
        time.sleep(max(0.0, start + (i + 1) / rate - time.perf_counter()))
    got: list[float] = []
    for _ in procs:
        got += out.get(timeout=max(5.0, done_by - time.time() + 30))
    for p in procs:
        p.join(10)
    for c in (pub, listener):
        c.disconnect()
        c.loop_stop()
    return {"sse_clients": clients, "sse_deliveries": len(got), "sse_deliveries_expected": clients * notices,
            "sse_p50_ms": percentile(got, 50), "sse_p99_ms": percentile(got, 99),
            "mqtt_baseline_p50_ms": percentile(mqtt_ms, 50), "mqtt_baseline_p99_ms": percentile(mqtt_ms, 99)}


def _fill_events(cfg: Any, devices: int) -> tuple[float, float, int]:
    """A day of door events (one every 10 min per device, staggered) from `devices` devices; (start, end, points)."""
    from hub.store.lineproto import line

    c = cfg.community
    places = [(g.id, b.id) for g in c.grids for b in g.buildings]
    httpx.post(f"{cfg.influx.url}/query", params={"q": 'CREATE DATABASE "benchapi"'}, timeout=60).raise_for_status()
    end = time.time()
    start = end - 86400
    batch: list[str] = []
    total = 0
    for d in range(devices):
        grid, building = places[d % len(places)]
        tags = {"site": c.site.id, "grid": grid, "building": building, "layer": "technical",
                "device_kind": "door_controller", "device_id": f"bench-door-{d:04d}"}
        for k in range(144):
            t_us = int((start + k * 600 + (d * 0.6) % 600) * 1e6)
            kind = ("door_opened", "door_closed", "access_granted")[k % 3]
            fields: dict[str, Any] = {"door": "main", "seq": k, "historical": False}
            if kind == "access_granted":
                fields.update({"credential_ref": f"{d:016x}", "method": "card", "direction": "in",
                               "registered": True})
            batch.append(line(kind, tags, fields, t_us))
        if len(batch) >= 20_000 or d == devices - 1:
            r = httpx.post(f"{cfg.influx.url}/write", params={"db": "benchapi", "precision": "u"},
                           content="\n".join(batch).encode(), timeout=120)
            r.raise_for_status()
            total += len(batch)
            batch = []
    return start, end, total


def _events(url: str, tokens: dict[str, str], cfg: Any, n: int,
            devices: int) -> list[tuple[str, float, float, float, float]]:
    """(case, API p50, API p99, bare p50, bare p99) in ms: GET /api/v1/events against the same InfluxQL on /query."""
    from api.data import influxql
    from api.data.events import EVENT_TYPES, EventQuery, EventService
    from api.data.influx import InfluxReader

    t0 = time.perf_counter()
    start, end, points = _fill_events(cfg, devices)
    print(f"event_points: {points}  ({devices} devices, one day)")
    print(f"event_fill_s: {time.perf_counter() - t0:.1f}")
    gw = next(st for st in cfg.community.staff if st.role == "grid_worker")
    who = {"sec": Principal("sec", "security_staff", None, None),
           "gw": Principal("gw", "grid_worker", frozenset(gw.grids), None)}
    svc = EventService(InfluxReader(cfg.influx), cfg.community)
    cases = [("newest_control_room", "sec", {"limit": 100}),
             ("newest_grid_worker", "gw", {"limit": 100}),
             ("one_building_access_day", "sec", {"limit": 1000, "type": "access_granted",
                                                 "building": cfg.community.grids[0].buildings[0].id})]
    out = []
    with httpx.Client(timeout=120) as http:
        for name, user, params in cases:
            params = {**params, "start": start, "end": end + 1}
            q = EventQuery.model_validate(params)
            s0, e0 = q.window(datetime.now(UTC))
            types = [q.type] if q.type else sorted(EVENT_TYPES)
            # exactly what the API sends for this request (same conditions, same LIMIT)
            sql = influxql.select_events(types, svc.conditions(q, who[user], s0, e0), q.limit + 1)
            api_ms, bare_ms = [], []
            headers = {"Authorization": f"Bearer {tokens[user]}"}
            for i in range(n + 5):
                t = time.perf_counter()
                r = http.get(f"{url}/api/v1/events", params=params, headers=headers)
                dt = (time.perf_counter() - t) * 1000
                assert r.status_code == 200, r.text
                t = time.perf_counter()
                b = http.get(f"{cfg.influx.url}/query", params={"db": "benchapi", "q": sql, "epoch": "ns"})
                b.json()
                db = (time.perf_counter() - t) * 1000
                assert b.status_code == 200, b.text
                if i >= 5:  # warm-up
                    api_ms.append(dt)
                    bare_ms.append(db)
            got = len(r.json()["events"])
            print(f"events_{name}_rows: {got}")
            out.append((name, percentile(api_ms, 50), percentile(api_ms, 99), percentile(bare_ms, 50),
                        percentile(bare_ms, 99)))
    return out


def run(args: argparse.Namespace) -> int:
    """Set up, measure, print `name: value` lines."""
    tmp = Path(tempfile.mkdtemp(prefix="commhub-bench-api-"))
    broker = Mosquitto(tmp / "mosquitto")
    broker.start()
    influx = Influxd(tmp / "influxd")
    influx.start()
    port = free_port()
    cfg_path = _config(tmp, broker.port, port, influx.url)
    cfg = load(cfg_path)
    s = Services(cfg, live=False)
    s.store.start()
    t0 = time.perf_counter()
    _fill(s, args.alerts)
    print(f"alerts_in_store: {args.alerts}")
    print(f"fill_s: {time.perf_counter() - t0:.1f}")
    gw = next(st for st in cfg.community.staff if st.role == "grid_worker")
    s.accounts.add("sec", "security_staff", PASSWORD)
    s.accounts.add("gw", "grid_worker", PASSWORD, gw.id)
    url = f"http://127.0.0.1:{port}"
    log = open(tmp / "api.log", "wb")  # noqa: SIM115 - the child's output for its lifetime
    proc = subprocess.Popen([sys.executable, "-m", "commhub.cli", "--log-level", "WARNING", "api", "--config",
                             str(cfg_path)], stdout=log, stderr=subprocess.STDOUT, cwd=REPO)
    try:
        _wait_up(url, proc)
        tokens = {u: httpx.post(f"{url}/api/v1/auth/token", data={"username": u, "password": PASSWORD},
                                timeout=60).json()["access_token"] for u in ("sec", "gw")}
        rows = _alert_list(url, s, tokens, args.requests)
        for name, p50, p99, sql in rows:
            print(f"list_{name}_p50_ms: {p50:.2f}")
            print(f"list_{name}_p99_ms: {p99:.2f}")
            if sql == sql:  # not NaN: a same-page baseline through the service layer in this process
                print(f"list_{name}_service_layer_p50_ms: {sql:.2f}")
        bare = next(r for r in rows if r[0] == "bare_select_newest")
        newest = rows[0]
        print(f"ratio: {newest[1] / bare[1]:.1f}  (API p50 / bare SELECT p50, newest page, control room)")
        for name, p50, p99, b50, b99 in _events(url, tokens, cfg, args.event_requests, args.devices):
            print(f"events_{name}_p50_ms: {p50:.2f}")
            print(f"events_{name}_p99_ms: {p99:.2f}")
            print(f"events_{name}_bare_influxql_p50_ms: {b50:.2f}")
            print(f"events_{name}_bare_influxql_p99_ms: {b99:.2f}")
            print(f"ratio: {p50 / b50:.1f}  (API p50 / bare InfluxQL p50, {name})")
        f = _fanout(port, cfg, tokens["sec"], args.clients, args.notices, args.rate)
        for k, v in f.items():
            print(f"{k}: {v:.2f}" if isinstance(v, float) else f"{k}: {v}")
        ratio = f["sse_p99_ms"] / f["mqtt_baseline_p99_ms"] if f["mqtt_baseline_p99_ms"] else float("nan")
        print(f"ratio: {ratio:.1f}  (SSE p99 over {args.clients} clients / MQTT subscriber p99)")
        print(f"audit_rows: {s.audit.count()}")
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
        s.stop()
        broker.stop()
        influx.stop()
        if not args.keep:
            import shutil
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            print(f"kept: {tmp}")
    return 0
