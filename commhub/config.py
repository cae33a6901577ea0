"""The one configuration tree: loaded and validated once, then passed down.

YAML values may refer to the environment as `${NAME}` or `${NAME:-default}`. `community:` names a
second YAML file (relative to the first); errors name the file, the key path inside it and the reason.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from commhub.agent_config import AgentSettings
from commhub.community import Community
from edge_agents.camera.config import CamerasConfig


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class MqttTlsConfig(_Section):
    """TLS to the broker; `{account}` in cert and key is replaced by the component's account name."""

    ca: Path = Field(description="CA certificate the broker's certificate must chain to.")
    cert: Path | None = Field(default=None, description="Client certificate (e.g. certs/clients/{account}.crt).")
    key: Path | None = Field(default=None, description="Client private key (e.g. certs/clients/{account}.key).")
    identity: bool = Field(default=False,
                           description="The broker takes the certificate's CN as the username (mosquitto "
                                       "use_identity_as_username): send no username or password.")

    @model_validator(mode="after")
    def _pair(self) -> MqttTlsConfig:
        if (self.cert is None) != (self.key is None):
            raise ValueError("cert and key go together")
        if self.identity and self.cert is None:
            raise ValueError("identity needs a client cert and key: the certificate is the identity")
        return self


class MqttConfig(_Section):
    """How to reach the broker."""

    host: str = Field(default="127.0.0.1", description="Broker host.")
    port: int = Field(default=1883, ge=1, le=65535, description="Broker port (8883 for TLS).")
    root: str = Field(default="commhub", pattern=r"^[A-Za-z0-9_-]+$", description="First topic level.")
    username: str | None = Field(default=None,
                                 description="MQTT username; default: the component's account when "
                                             "password_file is set (hub, api, agent-<site>-<name>).")
    password: str | None = Field(default=None, description="MQTT password.")
    password_file: Path | None = Field(
        default=None, description="File holding the password, `{account}` replaced by the component's account "
                                  "(as `commhub mqtt provision` writes: mqtt/accounts/{account}.secret).")
    tls: MqttTlsConfig | None = Field(default=None, description="TLS settings; none = plain TCP.")
    keepalive_s: int = Field(default=30, ge=5, le=3600, description="MQTT keepalive.")


class InfluxConfig(_Section):
    """Where time series go."""

    url: str = Field(default="http://127.0.0.1:8086", pattern=r"^https?://", description="InfluxDB base URL.")
    transport: Literal["auto", "v1", "v2"] = Field(
        default="auto", description="v1: POST /write (InfluxDB < 1.8); v2: /api/v2/write; auto: ask /ping.")
    database: str = Field(default="commhub", min_length=1, description="v1 database; v2 bucket.")
    retention_policy: str = Field(default="", description="v1 retention policy ('' = the default).")
    org: str = Field(default="-", description="v2 organisation ('-' for InfluxDB 1.8+).")
    token: str = Field(default="", description="v2 token; for 1.8+ 'user:password'.")
    username: str = Field(default="", description="v1 user.")
    password: str = Field(default="", description="v1 password.")
    timeout_s: float = Field(default=10.0, gt=0, description="HTTP timeout per write.")
    create_database: bool = Field(default=True, description="v1: CREATE DATABASE at start.")


class SpoolConfig(_Section):
    """The durable on-disk spool in front of the InfluxDB writer."""

    dir: Path = Field(default=Path("run/hub/spool"), description="Spool directory (relative to the config).")
    fsync: bool = Field(default=True, description="fsync each batch before it is acknowledged.")
    max_points_per_write: int = Field(default=5000, ge=1, le=100000, description="Points per HTTP write.")
    write_linger_ms: float = Field(default=200.0, ge=0, le=5000,
                                   description="With fewer than max_points_per_write spooled, wait up to this long "
                                               "after the oldest for more before writing (one write, not one a batch).")
    retry_initial_s: float = Field(default=0.2, gt=0, description="First retry delay after a failed write.")
    retry_max_s: float = Field(default=10.0, gt=0, description="Longest retry delay.")
    max_bytes: int = Field(default=2_000_000_000, ge=0,
                           description="Disk the spool may use; at the limit the hub stops taking messages (0 = none).")
    alarm_fraction: float = Field(default=0.8, gt=0, le=1,
                                  description="Warn (log and commhub_spool_alarm) above this share of max_bytes.")


class MetricsConfig(_Section):
    """Prometheus exposition."""

    host: str = Field(default="127.0.0.1", description="Bind address of /metrics.")
    port: int = Field(default=9108, ge=0, le=65535, description="Port of /metrics (0 = off).")


class RetentionConfig(_Section):
    """How long data is kept; the hub sets InfluxDB up at start (1.x policies, 2.x buckets; downsampling) and purges."""

    enabled: bool = Field(default=False, description="Manage retention (InfluxDB 1.x: policies and queries; "
                                                     "2.x: buckets and tasks).")
    raw_days: float = Field(default=30.0, ge=1 / 24, description="Raw points (the default policy 'raw').")
    aggregate_days: float = Field(default=730.0, ge=1 / 24, description="Hourly aggregates (policy 'hourly').")
    events_days: float = Field(default=183.0, ge=1 / 24,
                               description="Access, alarm and camera events (policy 'events'); at least 6 months "
                                           "as the face-recognition and personal-information rules ask.")
    snapshots_days: float = Field(default=183.0, gt=0, description="Camera snapshots are deleted after this.")
    alerts_days: float = Field(default=183.0, gt=0,
                               description="Closed and false-alarm alerts (with their audit trail) are deleted "
                                           "this long after their last change.")
    lookback_h: float = Field(default=48.0, gt=0,
                              description="Each run re-aggregates and copies events this far back, so a backlog "
                                          "that arrives late is kept too.")
    interval_s: float = Field(default=3600.0, gt=0, description="How often the copy and the purge run.")


class HubConfig(_Section):
    """One hub worker."""

    worker_id: str = Field(default="hub-1", pattern=r"^[A-Za-z0-9_-]+$", description="MQTT client id, unique.")
    share_group: str = Field(default="hub", pattern=r"^[A-Za-z0-9_-]+$", description="Shared subscription group.")
    batch_max: int = Field(default=2000, ge=1, le=65535, description="Messages per processing batch.")
    batch_wait_ms: float = Field(default=20.0, ge=0,
                                 description="Longest a message waits for its batch while more keep arriving.")
    batch_gather_ms: float = Field(default=10.0, ge=0,
                                   description="In a steady stream (a message within this long of the last batch), "
                                               "a drained socket ends a batch only once its first message waited "
                                               "this long: fewer, larger batches; after a quiet spell, at once.")
    receive_maximum: int = Field(default=4000, ge=1, le=65535,
                                 description="MQTT 5 receive maximum: un-acked QoS 1 messages in flight.")
    buffered_reader: bool = Field(
        default=True, description="Parse QoS 0/1 PUBLISHes from one recv() (hub.ingest.mqttread); false hands every "
        "packet to paho's own reader (slower; a fallback should a broker send what the buffered reader mishandles).")
    dedup_window: int = Field(default=4096, ge=16,
                              description="Seqs below each device's highest one whose repeats are recognised.")
    session_expiry_s: int = Field(default=86400, ge=0, description="Broker keeps the session this long.")
    discovery: bool = Field(default=False, description="Accept devices missing from the community model (tagged "
                                                       "_unassigned) instead of refusing them as unknown_device.")
    metrics: MetricsConfig = MetricsConfig()
    spool: SpoolConfig = SpoolConfig()
    snapshots_dir: Path = Field(default=Path("run/hub/snapshots"),
                                description="Where camera snapshots are stored (relative to the config).")
    snapshot_max_bytes: int = Field(default=2_000_000, ge=1000, description="Largest snapshot accepted.")
    snapshots_max_total_bytes: int = Field(
        default=20_000_000_000, ge=0,
        description="Disk all snapshots may use; beyond it new ones are refused, old ones kept (0 = no limit).")
    snapshots_alarm_fraction: float = Field(default=0.8, gt=0, le=1,
                                            description="Warn above this share of snapshots_max_total_bytes.")
    retention: RetentionConfig = RetentionConfig()


class WebhookConfig(_Section):
    """One webhook receiver of alert notifications."""

    name: str = Field(pattern=r"^[A-Za-z0-9_-]+$", description="Receiver name, unique.")
    url: str = Field(pattern=r"^https?://", description="URL notices are POSTed to as JSON.")
    roles: tuple[str, ...] = Field(default=(), description="Only notices routed to these roles (empty = all).")
    timeout_s: float = Field(default=5.0, gt=0, description="HTTP timeout per attempt.")
    max_attempts: int = Field(default=20, ge=1, description="Attempts before a notice is given up (kept in SQL).")
    backoff_initial_s: float = Field(default=0.5, gt=0, description="First retry delay.")
    backoff_max_s: float = Field(default=300.0, gt=0, description="Longest retry delay.")


class AlertsConfig(_Section):
    """Rules, alerts, routing and notifiers (the hub's alerting sink)."""

    enabled: bool = Field(default=False, description="Run the rules -> alerts -> routing -> notifiers chain.")
    db_url: str = Field(default="", description="SQLAlchemy URL; empty = SQLite at db_path.")
    db_path: Path = Field(default=Path("run/hub/alerts.db"), description="SQLite file when db_url is empty.")
    rules_file: Path | None = Field(default=None, description="Rule pack YAML (default: the shipped rules.yaml).")
    routing_file: Path | None = Field(default=None, description="Routing YAML (default: the shipped routing.yaml).")
    tick_s: float = Field(default=0.25, gt=0, le=60, description="Timer period: hold times, absence, escalation.")
    auto_close_s: float = Field(default=86400.0, gt=0, description="A resolved alert is closed after this long.")
    outbox_lease_s: float = Field(default=30.0, gt=0, description="How long a worker owns a notice it is sending.")
    live_feed_size: int = Field(default=1000, ge=1, description="Notices the live feed keeps for late readers.")
    restart_grace_s: float = Field(default=120.0, ge=0,
                                   description="After a start, absence deadlines wait this long for the backlog.")
    max_clock_skew_s: float = Field(default=30.0, gt=0,
                                    description="A device clock off by less than this is not corrected; "
                                                "beyond it the rules use the device's learned offset "
                                                "(hub/rules/clock.py: a backlog keeps its own stamps).")
    mqtt_qos: int = Field(default=1, ge=0, le=2, description="QoS of alert notices on MQTT.")
    state_write_back_s: float = Field(default=5.0, ge=0, le=60,
                                      description="Activity that only pushes a far absence deadline back is kept "
                                                  "in memory and written this often (0 = every message).")
    webhooks: tuple[WebhookConfig, ...] = ()


class ApiConfig(_Section):
    """The operator API (`commhub api`)."""

    host: str = Field(default="127.0.0.1", description="Bind address.")
    port: int = Field(default=8000, ge=0, le=65535, description="HTTP port.")
    access_ttl_s: float = Field(default=900.0, gt=0, le=86400, description="Lifetime of an access token.")
    refresh_ttl_s: float = Field(default=12 * 3600.0, gt=0, description="Lifetime of a login (refresh token).")
    login_max_failures: int = Field(default=5, ge=1, description="Failed logins per username or address ...")
    login_window_s: float = Field(default=300.0, gt=0, description="... within this window before 429.")
    argon2_time_cost: int = Field(default=3, ge=1, le=20, description="argon2id passes per password hash.")
    argon2_memory_kib: int = Field(default=65536, ge=8, le=4_194_304, description="argon2id memory per hash.")
    sse_heartbeat_s: float = Field(default=15.0, gt=0, description="Comment line on idle SSE streams.")
    sse_queue: int = Field(default=1000, ge=10, description="Notices buffered per SSE client before it is cut.")
    evidence_key: Path = Field(default=Path("run/api/evidence_ed25519.pem"),
                               description="Ed25519 key that signs evidence exports; generated (mode 600) at "
                                           "first start (relative to the config).")


class Config(_Section):
    """The whole tree."""

    mqtt: MqttConfig = MqttConfig()
    influx: InfluxConfig = InfluxConfig()
    hub: HubConfig = HubConfig()
    agent: AgentSettings = AgentSettings()
    alerts: AlertsConfig = AlertsConfig()
    api: ApiConfig = ApiConfig()
    cameras: CamerasConfig = CamerasConfig()
    community: Community
    base_dir: Path = Field(default=Path("."), description="Directory relative paths are resolved from.")

    @model_validator(mode="after")
    def _resolve_paths(self) -> Config:
        object.__setattr__(self, "mqtt", _resolve_mqtt(self.mqtt, self.base_dir))
        if not self.hub.spool.dir.is_absolute():
            spool = self.hub.spool.model_copy(update={"dir": self.base_dir / self.hub.spool.dir})
            object.__setattr__(self, "hub", self.hub.model_copy(update={"spool": spool}))
        if not self.hub.snapshots_dir.is_absolute():
            snaps = self.base_dir / self.hub.snapshots_dir
            object.__setattr__(self, "hub", self.hub.model_copy(update={"snapshots_dir": snaps}))
        if not self.api.evidence_key.is_absolute():
            key = self.base_dir / self.api.evidence_key
            object.__setattr__(self, "api", self.api.model_copy(update={"evidence_key": key}))
        paths = {k: self.base_dir / v for k in ("db_path", "rules_file", "routing_file")
                 if (v := getattr(self.alerts, k)) is not None and not v.is_absolute()}
        if paths:
            object.__setattr__(self, "alerts", self.alerts.model_copy(update=paths))
        return self


def _resolve_mqtt(mqtt: MqttConfig, base: Path) -> MqttConfig:
    """The MQTT section with its file paths made absolute from the config's directory."""
    def absolute(p: Path | None) -> Path | None:
        return p if p is None or p.is_absolute() else base / p

    update: dict[str, Any] = {"password_file": absolute(mqtt.password_file)}
    if mqtt.tls is not None:
        update["tls"] = mqtt.tls.model_copy(update={"ca": absolute(mqtt.tls.ca), "cert": absolute(mqtt.tls.cert),
                                                    "key": absolute(mqtt.tls.key)})
    return mqtt.model_copy(update=update)


class ConfigError(Exception):
    """A configuration file is missing, unreadable or invalid; the message says where and why."""


_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def _expand(value: Any, file: Path, path: str) -> Any:
    if isinstance(value, str):
        def sub(m: re.Match[str]) -> str:
            name, default = m.group(1), m.group(2)
            value = os.environ.get(name)
            if value is not None and (value or default is None):
                return value
            if default is not None:  # as in the shell, ${NAME:-x} also replaces an empty value
                return default
            raise ConfigError(f"{file}: {path or '<root>'}: environment variable {name} is not set")
        return _ENV.sub(sub, value)
    if isinstance(value, dict):
        return {k: _expand(v, file, f"{path}.{k}" if path else str(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [_expand(v, file, f"{path}[{i}]") for i, v in enumerate(value)]
    return value


# libyaml's loader parses the community file about five times faster than the pure-Python one, which was most of
# every command's start-up; the same documents give the same data. Without libyaml, the pure-Python one.
_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _read_yaml(file: Path) -> dict[str, Any]:
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError(f"{file}: cannot read: {e.strerror}") from None
    try:
        data = yaml.load(text, Loader=_YAML_LOADER)  # a safe loader (C or Python): no arbitrary objects
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{file}:{where}: not valid YAML: {getattr(e, 'problem', e)}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{file}: <root>: expected a mapping, got {type(data).__name__}")
    return _expand(data, file, "")


def _format(file: Path, err: ValidationError, prefix: tuple[str | int, ...] = ()) -> str:
    lines = []
    for e in err.errors():
        loc = e["loc"][len(prefix):] if e["loc"][: len(prefix)] == prefix else e["loc"]
        path = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc).lstrip(".") or "<root>"
        lines.append(f"{file}: {path}: {e['msg']}")
    return "\n".join(lines)


def load_community(file: Path) -> Community:
    """Load and validate a community file."""
    data = _read_yaml(file)
    try:
        return Community.model_validate(data)
    except ValidationError as e:
        raise ConfigError(_format(file, e)) from None


def load(file: str | Path) -> Config:
    """Load the configuration tree from a YAML file, or raise ConfigError naming file, key and reason."""
    file = Path(file).resolve()
    data = _read_yaml(file)
    community_ref = data.pop("community", None)
    if not isinstance(community_ref, str) or not community_ref:
        raise ConfigError(f"{file}: community: expected the path of a community file")
    community = load_community((file.parent / community_ref).resolve())
    data["base_dir"] = file.parent
    try:
        return Config.model_validate({**data, "community": community})
    except ValidationError as e:
        raise ConfigError(_format(file, e)) from None
