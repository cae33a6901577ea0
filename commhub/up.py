"""`commhub up`: broker, InfluxDB, hub, API and a simulated community on loopback, with data under run/."""

from __future__ import annotations

import argparse
import importlib.util
import logging
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import FrameType
from typing import IO

import yaml

from commhub import topics
from commhub.config import Config, load
from commhub.mqtt import API_ACCOUNT, HUB_ACCOUNT
from commhub.ports import bindable, free_port
from commhub.provision import provision
from commhub.services import BrokerAuth, Influxd, Mosquitto
from edge_agents.camera.config import source_kind

log = logging.getLogger(__name__)
REPO = Path(__file__).resolve().parents[1]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `commhub up`."""
    parser.add_argument("--config", default=str(REPO / "configs" / "commhub.yaml"), help="base configuration")
    parser.add_argument("--run-dir", default=str(REPO / "run"), help="where data and logs go")
    parser.add_argument("--speed", type=float, default=60.0, help="simulated seconds per wall second")
    parser.add_argument("--seed", type=int, default=1, help="simulator seed")
    parser.add_argument("--duration", type=float, default=0.0, help="stop after this many wall seconds (0 = never)")
    parser.add_argument("--no-simulator", action="store_true", help="do not start the simulated community")


def _port(preferred: int) -> int:
    """The preferred port when nothing listens there, else a free one."""
    return preferred if bindable("127.0.0.1", preferred) else free_port()


class _Child:
    def __init__(self, name: str, cmd: list[str], logfile: Path) -> None:
        self.name, self.cmd, self.logfile = name, cmd, logfile
        self._out: IO[bytes] | None = None
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self._out = open(self.logfile, "ab")  # noqa: SIM115 - open for the child's lifetime
        self.proc = subprocess.Popen(self.cmd, stdout=self._out, stderr=subprocess.STDOUT, cwd=REPO)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self._out is not None:
            self._out.close()


def _write_config(base: Path, run_dir: Path, mqtt_port: int, influx_url: str, metrics_port: int) -> Path:
    data = yaml.safe_load(base.read_text())
    community = (base.parent / data["community"]).resolve()
    data["community"] = str(community)
    # Every component logs in with its own provisioned account (no anonymous client, on loopback too).
    data["mqtt"] = {**data.get("mqtt", {}), "host": "127.0.0.1", "port": mqtt_port,
                    "password_file": str(run_dir / "mqtt" / "accounts" / "{account}.secret")}
    data["influx"] = {**data.get("influx", {}), "url": influx_url}
    hub = data.setdefault("hub", {})
    hub["metrics"] = {**hub.get("metrics", {}), "port": metrics_port}
    hub["spool"] = {**hub.get("spool", {}), "dir": str(run_dir / "hub" / "spool")}
    hub["snapshots_dir"] = str(run_dir / "hub" / "snapshots")
    hub["worker_id"] = "hub-1"
    alerts = data.setdefault("alerts", {})
    alerts.setdefault("enabled", True)
    alerts["db_path"] = str(run_dir / "hub" / "alerts.db")
    data.setdefault("agent", {})["state_dir"] = str(run_dir / "agents")
    data.setdefault("api", {})["evidence_key"] = str(run_dir / "api" / "evidence_ed25519.pem")
    for cam in data.get("cameras", {}).get("devices", []):
        # file sources are relative to the base config; this copy lives elsewhere
        if source_kind(str(cam["source"])) == "file":
            cam["source"] = str((base.parent / str(cam["source"])).resolve())
    path = run_dir / "commhub.yaml"
    path.write_text("# Written by `commhub up` from " + str(base) + "\n" + yaml.safe_dump(data, allow_unicode=True))
    load(path)  # fail here, with the file named, rather than in a child process
    return path


def _wait_api(port: int, child: _Child, timeout: float = 180.0) -> None:
    """Until the API answers /healthz, so the URL printed next works (its start is slow on a loaded machine)."""
    import urllib.request
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if child.proc is not None and child.proc.poll() is not None:
            return  # it exited: the main loop reports it
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.3)
    log.warning("the API did not answer within %.0f s; see its log", timeout)


def _replayed_cameras(cfg: Config) -> list[str]:
    """Ids of the configured cameras, when every file source exists (live URLs always count)."""
    ids = []
    for cam in cfg.cameras.devices:
        if source_kind(cam.source) == "file" and not Path(cam.source).exists():
            return []
        ids.append(cam.id)
    return ids


def run(args: argparse.Namespace) -> int:
    """Start everything, print where to look, and wait."""
    run_dir = Path(args.run_dir).resolve()
    (run_dir / "logs").mkdir(parents=True, exist_ok=True)
    mqtt_dir = run_dir / "mqtt"
    provision(load(Path(args.config).resolve()), mqtt_dir, simulator=not args.no_simulator)
    broker = Mosquitto(run_dir / "mosquitto", port=_port(1883),
                       auth=BrokerAuth(mqtt_dir / "passwd", mqtt_dir / "acl"))
    influx = Influxd(run_dir / "influxdb", port=_port(8086))
    broker.start()
    influx.start()
    metrics_port = _port(9108)
    cfg_path = _write_config(Path(args.config).resolve(), run_dir, broker.port, influx.url, metrics_port)
    cfg = load(cfg_path)
    py = sys.executable
    children = [_Child("hub", [py, "-m", "commhub.cli", "hub", "--config", str(cfg_path)],
                       run_dir / "logs" / "hub.log")]
    api_port = None
    logins: list[tuple[str, str, str, str]] = []
    if importlib.util.find_spec("api.cli") is not None:
        from api.demo import demo_accounts  # the API's dependencies load only when it is part of the build

        logins = demo_accounts(cfg)
        api_port = _port(8000)
        children.append(_Child("api", [py, "-m", "commhub.cli", "api", "--config", str(cfg_path),
                                       "--port", str(api_port)], run_dir / "logs" / "api.log"))
    replay = _replayed_cameras(cfg)
    if replay:
        children.append(_Child("cameras", [py, "-m", "commhub.cli", "agent", "camera", "--config", str(cfg_path)],
                               run_dir / "logs" / "cameras.log"))
    if not args.no_simulator:
        children.append(_Child("simulator", [py, "-m", "commhub.cli", "simulate", "--config", str(cfg_path),
                                             "--speed", str(args.speed), "--seed", str(args.seed)],
                               run_dir / "logs" / "simulator.log"))
    stop = threading.Event()

    def on_signal(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        for child in children:
            child.start()
        if api_port:
            _wait_api(api_port, next(c for c in children if c.name == "api"))
        root = cfg.mqtt.root
        devices = len(cfg.community.devices)
        secrets = mqtt_dir / "accounts"
        login = {a: f"-u {a} -P \"$(cat {secrets / (a + '.secret')})\"" for a in (HUB_ACCOUNT, API_ACCOUNT)}
        lines = [
            "",
            f"commhub is up: community '{cfg.community.site.id}' with {devices} devices, data under {run_dir}",
            f"  MQTT broker     mqtt://127.0.0.1:{broker.port}   accounts, ACL and secrets in {mqtt_dir}",
            f"                  watch: mosquitto_sub -p {broker.port} {login[HUB_ACCOUNT]} "
            f"-t '{topics.site_filter(root, cfg.community.site.id)}' -v",
            f"  InfluxDB        {influx.url}  database '{cfg.influx.database}'",
            f"                  curl -sG {influx.url}/query --data-urlencode db={cfg.influx.database} "
            "--data-urlencode 'q=SHOW MEASUREMENTS'",
            f"  hub metrics     http://127.0.0.1:{metrics_port}/metrics",
            f"  dead letters    mosquitto_sub -p {broker.port} {login[HUB_ACCOUNT]} -t '{root}/hub/v1/deadletter' -v",
            f"  alerts          mosquitto_sub -p {broker.port} {login[API_ACCOUNT]} "
            f"-t '{topics.alerts_filter(root, cfg.community.site.id)}' -v",
        ]
        if replay:
            lines.append(f"  cameras         {', '.join(replay)} (OpenCV on recorded footage)")
        elif cfg.cameras.devices:
            lines.append("  cameras         not started: their footage is missing (see configs/commhub.yaml)")
        if api_port:
            lines.append(f"  API and console http://127.0.0.1:{api_port}/")
            lines.append(f"  API docs        http://127.0.0.1:{api_port}/docs   (OpenAPI: /openapi.json)")
            lines.append("  demo logins     (passwords shown once, stored hashed; new ones at every start)")
            lines += [f"    {u:<15} {p:<14} {r:<15} {note}" for u, r, p, note in logins]
        lines += [f"  logs            {run_dir / 'logs'}", "Press Ctrl-C to stop.", ""]
        print("\n".join(lines), flush=True)
        deadline = time.monotonic() + args.duration if args.duration else None
        while not stop.is_set():
            for child in children:
                if child.proc is not None and child.proc.poll() is not None:
                    print(f"{child.name} exited with {child.proc.returncode}; see {child.logfile}", file=sys.stderr)
                    stop.set()
            if deadline and time.monotonic() >= deadline:
                break
            stop.wait(0.5)
    finally:
        for child in reversed(children):
            child.stop()
        influx.stop()
        broker.stop()
    failed = [c.name for c in children if c.proc is not None and c.proc.returncode not in (0, -15)]
    return 1 if failed else 0
