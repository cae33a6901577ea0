"""docker-compose.yml and its config, checked without a Docker engine: files, contexts, env, volumes, secrets."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from commhub import certs
from commhub.config import Config, load
from commhub.mqtt import API_ACCOUNT, HUB_ACCOUNT, agent_account
from commhub.provision import provision

REPO = Path(__file__).resolve().parents[1]
COMPOSE = REPO / "docker-compose.yml"
PUBLISHED = {"8883", "8000", "3000"}  # broker TLS, console, Grafana
_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)([^}]*)\}")


def _compose() -> dict[str, Any]:
    return dict(yaml.safe_load(COMPOSE.read_text()))


def _env_example() -> dict[str, str]:
    out = {}
    for line in (REPO / ".env.example").read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            out[key.strip()] = value.strip()
    return out


@pytest.fixture(scope="module")
def compose_cfg() -> Iterator[Config]:
    """deploy/compose.yaml loaded once, with the two values compose passes in from .env."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("COMMHUB_INFLUX_TOKEN", "t")
        mp.setenv("COMMHUB_ALERTS_DB_URL", "postgresql+psycopg://commhub:p@postgres:5432/commhub")
        yield load(REPO / "deploy" / "compose.yaml")


def _account(name: str, service: dict[str, Any], site: str) -> str | None:
    """The broker account a commhub service logs in with (None for other images)."""
    command = service.get("command") or []
    if not str(service.get("image", "")).startswith("commhub"):
        return None
    if command[0] == "hub":
        return HUB_ACCOUNT
    if command[0] == "api":
        return API_ACCOUNT
    if command[0] == "agent":
        return agent_account(site, command[1])
    if command[0] == "simulate":
        return agent_account(site, "sim")
    raise AssertionError(f"{name}: unknown commhub command {command}")


def test_compose_config_loads(compose_cfg: Config) -> None:
    cfg = compose_cfg
    assert cfg.influx.transport == "v2" and cfg.mqtt.host == "mosquitto"
    assert cfg.alerts.enabled
    assert cfg.mqtt.port == 8883 and cfg.mqtt.tls is not None and cfg.mqtt.password_file is not None


def test_compose_workers_are_distinct() -> None:
    services = _compose()["services"]
    hubs = {name: s for name, s in services.items() if s.get("command", [None])[0] == "hub"}
    assert len(hubs) >= 2
    ids = [s["command"][s["command"].index("--worker-id") + 1] for s in hubs.values()]
    assert len(set(ids)) == len(ids)
    volumes = [next(v for v in s["volumes"] if v.split(":")[1] == "/data") for s in hubs.values()]
    assert len(set(volumes)) == len(volumes), "workers must not share a spool volume"


def test_compose_secrets_come_only_from_env() -> None:
    text = COMPOSE.read_text()
    example = _env_example()
    refs = _VAR.findall(text)
    assert refs, "compose should take its secrets from .env"
    for name, rest in refs:
        assert name in example, f"${{{name}}} is not listed in .env.example"
        assert rest.startswith(":?"), f"${{{name}{rest}}}: compose must refuse to start when it is unset"
    for key, value in example.items():
        if re.search(r"PASSWORD|TOKEN|SECRET", key):
            assert value == "", f".env.example ships a value for the secret {key}"
    # No literal secret anywhere in the service definitions.
    for name, service in _compose()["services"].items():
        env = service.get("environment") or {}
        for key, value in env.items():
            if re.search(r"PASSWORD|TOKEN|SECRET", key):
                assert "${" in str(value), f"{name}: {key} has a literal value"
    assert "/.env" in (REPO / ".gitignore").read_text().splitlines()


def test_compose_files_contexts_volumes_and_mounts_exist(tmp_path: Path, compose_cfg: Config) -> None:
    compose = _compose()
    cfg = compose_cfg
    # What deploy/init.sh generates: make it here and check every generated mount against it.
    generated = tmp_path / "generated"
    accounts = provision(cfg, generated / "mqtt", simulator=True)
    certs.init(generated / "certs", [a.name for a in accounts], ["mosquitto"])
    declared = set(compose.get("volumes") or {})
    site = cfg.community.site.id
    for name, service in compose["services"].items():
        build = service.get("build")
        if build:
            assert (REPO / build["context"]).is_dir(), f"{name}: build context"
            assert (REPO / build["context"] / build.get("dockerfile", "Dockerfile")).is_file(), f"{name}: Dockerfile"
        mounts: dict[str, str] = {}
        for v in service.get("volumes", []):
            src, target = v.split(":")[:2]
            mounts[target] = src
            if src.startswith("./deploy/generated/"):
                assert (generated / src.removeprefix("./deploy/generated/")).exists(), f"{name}: {src} is not made"
            elif src.startswith("./"):
                assert (REPO / src).exists(), f"{name}: {v}"
            elif not src.startswith("${"):
                assert src in declared, f"{name}: volume {src} is not declared"
        command = service.get("command") or []
        if "--config" in command:
            assert command[command.index("--config") + 1] in mounts, f"{name}: its --config is not mounted"
        account = _account(name, service, site)
        if account is not None:
            # Exactly this account's secret and key, where the config's {account} paths point.
            assert cfg.mqtt.password_file is not None and cfg.mqtt.tls is not None
            wanted = [cfg.mqtt.password_file, cfg.mqtt.tls.ca, cfg.mqtt.tls.cert, cfg.mqtt.tls.key]
            for path in wanted:
                assert str(path).replace("{account}", account) in mounts, f"{name}: {path} for {account}"
            secrets = [t for t in mounts if t.endswith((".secret", ".key"))]
            assert all(account in Path(t).name for t in secrets), f"{name} sees another account's secret"
            assert any(m == "/data" or m.startswith("/data/") for m in mounts), f"{name}: no volume for its data"
    for store in ("mosquitto", "influxdb", "postgres", "grafana", "prometheus"):
        mounted = [v.split(":")[0] for v in compose["services"][store]["volumes"]]
        assert any(m in declared for m in mounted), f"{store} has no volume"


def test_compose_is_hardened() -> None:
    compose = _compose()
    for name, service in compose["services"].items():
        assert "healthcheck" in service, f"{name}: no healthcheck"
        for dep, cond in (service.get("depends_on") or {}).items():
            assert cond == {"condition": "service_healthy"}, f"{name} -> {dep}: wait for health"
            assert "healthcheck" in compose["services"][dep]
        published = {str(p).split(":")[-2] if str(p).count(":") else str(p) for p in service.get("ports", [])}
        assert published <= PUBLISHED, f"{name} publishes {published - PUBLISHED}"
        # influxdb and postgres start as root and drop to their own user; everything else starts non-root.
        if name not in ("influxdb", "postgres"):
            assert str(service.get("user", "0")).split(":")[0] not in ("0", "root"), f"{name} runs as root"
    ports = {str(p).split(":")[0] for s in compose["services"].values() for p in s.get("ports", [])}
    assert ports == PUBLISHED
    hub_image = (REPO / "Dockerfile").read_text()
    agent_image = (REPO / "Dockerfile.agent").read_text()
    for text in (hub_image, agent_image):
        users = re.findall(r"^USER\s+(\S+)", text, re.M)
        assert users and users[-1].split(":")[0] not in ("0", "root")
    assert re.search(r"^ARG EXTRAS=postgres$", hub_image, re.M), "the hub image installs no camera or modbus extra"
    assert "camera" not in re.findall(r"pip install[^\n]*", hub_image)[0]
    assert "modbus" not in re.findall(r"pip install[^\n]*", hub_image)[0]
    assert "camera" in agent_image and "modbus" in agent_image
    for name, service in compose["services"].items():
        extras = str((service.get("build") or {}).get("args", {}).get("EXTRAS", ""))
        command = (service.get("command") or [""])[0]
        if command == "hub":
            assert service["build"]["dockerfile"] == "Dockerfile" and not extras, f"{name}: no OpenCV in the hub"
        if command == "api":
            assert "camera" in extras, f"{name}: the API blurs faces with OpenCV"
    pyproject = (REPO / "pyproject.toml").read_text()
    deps = pyproject.split("dependencies = [", 1)[1].split("]", 1)[0]
    assert "opencv" not in deps and "pymodbus" not in deps, "OpenCV and pymodbus are extras"


def test_shipped_broker_config_has_no_anonymous_access_and_persists() -> None:
    conf = [line.split("#")[0].split() for line in (REPO / "deploy" / "mosquitto.conf").read_text().splitlines()]
    conf = [c for c in conf if c]
    opts = {c[0]: c[1:] for c in conf}
    listeners = [c[1:] for c in conf if c[0] == "listener"]
    assert opts["allow_anonymous"] == ["false"] and "password_file" in opts and "acl_file" in opts
    assert ["1883", "127.0.0.1"] in listeners, "the plain listener must be bound to loopback"
    assert ["8883"] in listeners and opts["require_certificate"] == ["true"]
    assert opts["persistence"] == ["true"] and int(opts["autosave_interval"][0]) <= 30
    assert int(opts["max_queued_messages"][0]) >= 1_000_000


def test_grafana_provisioning_and_dashboard() -> None:
    ds = yaml.safe_load((REPO / "deploy" / "grafana" / "provisioning" / "datasources" / "commhub.yaml").read_text())
    uids = {d["uid"] for d in ds["datasources"]}
    for d in ds["datasources"]:
        for value in (d.get("secureJsonData") or {}).values():
            assert str(value).startswith("$"), f"{d['name']}: a literal secret"
    dash = json.loads((REPO / "deploy" / "grafana" / "dashboards" / "community.json").read_text())
    titles = " ".join(p["title"].lower() for p in dash["panels"])
    for topic in ("alerts per grid", "door traffic", "hydrant", "ingest rate", "spool depth"):
        assert topic in titles, topic
    for p in dash["panels"]:
        assert p["datasource"]["uid"] in uids, p["title"]


def _compose_cli() -> list[str]:
    """The compose command here: the `docker compose` plugin when present, else Debian's `docker-compose` 1.29."""
    if shutil.which("docker") and subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0:
        return ["docker", "compose"]
    standalone = shutil.which("docker-compose")
    assert standalone, "neither `docker compose` nor `docker-compose` is installed: run ./scripts/setup.sh"
    return [standalone]


def test_docker_compose_config(tmp_path: Path) -> None:
    cli = _compose_cli()
    # Only the env file may supply the secrets: a value left in the caller's environment would hide a refusal.
    env = {k: v for k, v in os.environ.items() if k not in _env_example() and not k.startswith("COMPOSE_")}
    full = tmp_path / "full.env"
    full.write_text("".join(f"{k}={v or 'x'}\n" for k, v in _env_example().items()))

    def config(env_file: Path, *extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*cli, "--env-file", str(env_file), "-f", str(COMPOSE), *extra, "config"],
                              capture_output=True, text=True, cwd=REPO, env=env, timeout=120)

    ok = config(full, "--profile", "simulator")
    assert ok.returncode == 0, ok.stderr
    resolved = yaml.safe_load(ok.stdout)
    assert set(resolved["services"]) == set(_compose()["services"]), "compose dropped or added a service"
    for name, service in resolved["services"].items():
        for key, value in (service.get("environment") or {}).items():
            assert "${" not in str(value), f"{name}: {key} was not interpolated"
    # Each ${VAR} carrying :? is checked above; here compose itself refuses when the secrets are unset.
    empty = tmp_path / "empty.env"
    empty.write_text("")
    refused = config(empty)
    assert refused.returncode != 0, "compose must refuse to start with a secret unset"
    assert "set it in .env" in refused.stderr, refused.stderr
