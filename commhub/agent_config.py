"""The `agent:` config section: the base agent (session, spool, reconnect) and the access and facility agents."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from commhub.wire import Ident


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class AccessHttpSettings(_Section):
    """The HTTP endpoint door controllers and face gates push their events to."""

    enabled: bool = Field(default=True, description="Serve the push endpoint.")
    host: str = Field(default="127.0.0.1", description="Bind address (0.0.0.0 to accept controllers on the LAN).")
    port: int = Field(default=8088, ge=0, le=65535, description="TCP port (0 = any free port).")
    token: str = Field(default="", description="Requests need 'Authorization: Bearer <token>'.")
    require_token: bool = Field(default=True,
                                description="Refuse to serve without a token; false only on a closed network.")
    max_body_bytes: int = Field(default=1_048_576, ge=1024, description="Largest accepted request body.")
    timeout_s: float = Field(default=10.0, gt=0, le=300,
                             description="Time a client has to send a whole request, and the longest idle pause.")
    max_connections: int = Field(default=32, ge=1, le=1024,
                                 description="Connections served at once (one thread each); more get 503.")
    sync_timeout_s: float = Field(default=2.0, ge=0, description="Wait this long for events to reach disk.")


class AccessSettings(_Section):
    """The access-control agent (door controllers, face gates, turnstiles)."""

    site_secret: str = Field(default="", description="HMAC key for credential refs; keep it secret, same site-wide.")
    ref_hex_len: int = Field(default=32, ge=16, le=64, description="Hex digits kept of the HMAC-SHA256.")
    devices: tuple[Ident, ...] = Field(default=(), description="Device ids served (empty = every access device).")
    http: AccessHttpSettings = AccessHttpSettings()
    sim_events_per_device_s: float = Field(default=0.05, gt=0, description="Simulated adapter: events/s/device.")


ModbusType = Literal["uint16", "int16", "uint32", "int32", "float32", "bool"]


class ModbusPoint(_Section):
    """One body field read from holding registers: value = raw * scale + offset."""

    address: int = Field(ge=0, le=65535, description="Holding register address (0-based).")
    type: ModbusType = Field(default="uint16", description="How the register(s) are decoded.")
    scale: float = Field(default=1.0, description="Multiplier applied to the raw value.")
    offset: float = Field(default=0.0, description="Added after scaling.")
    word_order: Literal["big", "little"] = Field(default="big", description="Word order of 32-bit types.")


class ModbusDeviceMap(_Section):
    """How one community device's body is read from a Modbus server."""

    device: Ident = Field(description="Community device id.")
    fields: dict[str, ModbusPoint] = Field(min_length=1, description="Body field -> register.")
    constants: dict[str, str | int | float | bool] = Field(default_factory=dict,
                                                           description="Body fields with fixed values.")


class ModbusServer(_Section):
    """One Modbus TCP server (a fire panel, a pressure transmitter gateway) and what to read from it."""

    name: Ident
    host: str
    port: int = Field(default=502, ge=1, le=65535)
    unit: int = Field(default=1, ge=0, le=255, description="Modbus unit / slave id.")
    poll_s: float = Field(default=5.0, gt=0, description="Polling period.")
    timeout_s: float = Field(default=2.0, gt=0, description="Request timeout.")
    devices: tuple[ModbusDeviceMap, ...] = Field(min_length=1)


class FacilitySettings(_Section):
    """The facility agent (smoke, gas, leak, hydrant, fire door, manhole, elevator, charger, meter, panic)."""

    devices: tuple[Ident, ...] = Field(default=(), description="Device ids served (empty = every facility device).")
    modbus: tuple[ModbusServer, ...] = Field(default=(), description="Modbus TCP servers to poll.")
    sim_speed: float = Field(default=1.0, gt=0, description="Simulated adapter: time multiplier for readings.")
    sim_incidents_per_hour: float = Field(default=0.2, ge=0, description="Simulated adapter: incidents/device/h.")


class AgentSettings(_Section):
    """Every edge agent: MQTT session, on-disk spool, reconnect backoff."""

    state_dir: Path = Field(default=Path("run/agent"),
                            description="Spool, seq and session counters (per agent name, relative to the config).")
    spool_max_bytes: int = Field(default=256 * 1024 * 1024, ge=4096,
                                 description="Oldest messages are dropped (and counted) beyond this size.")
    spool_max_age_s: float = Field(default=7 * 86400.0, gt=0,
                                   description="Messages older than this are dropped (and counted).")
    spool_fsync: bool = Field(default=True, description="fsync each spool commit (survives power loss).")
    commit_interval_ms: float = Field(default=20.0, ge=0, le=5000,
                                      description="Least time between spool commits: the durability window.")
    max_inflight: int = Field(default=1000, ge=1, le=65535, description="Un-acknowledged QoS 1 messages in flight.")
    backoff_initial_s: float = Field(default=0.5, gt=0, description="First reconnect delay.")
    backoff_max_s: float = Field(default=30.0, gt=0, description="Longest reconnect delay.")
    backoff_jitter: float = Field(default=0.5, ge=0, le=1, description="Fraction of each delay that is random.")
    connect_timeout_s: float = Field(default=5.0, gt=0, description="Wait this long for CONNACK.")
    heartbeats: bool = Field(default=True, description="Send a heartbeat for a device silent for its interval.")
    hold_on_no_subscribers: bool = Field(
        default=True, description="A PUBACK of 0x10 No matching subscribers (the hub's subscription is missing, e.g. "
                                  "after a broker restart) keeps the message spooled until delivered; off only "
                                  "for benchmarks that run without a hub.")
    stop_timeout_s: float = Field(default=5.0, ge=0, description="stop() waits this long for acknowledgements.")
    access: AccessSettings = AccessSettings()
    facility: FacilitySettings = FacilitySettings()

    @model_validator(mode="after")
    def _check(self) -> AgentSettings:
        if self.backoff_max_s < self.backoff_initial_s:
            raise ValueError("backoff_max_s must be >= backoff_initial_s")
        return self
