"""Choosing an agent's devices from the community, and where its state lives."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from pathlib import Path

from commhub.community import Community, Device
from commhub.config import Config, ConfigError
from commhub.wire import DeviceKind


def select_devices(community: Community, kinds: Collection[DeviceKind], ids: Sequence[str] = (),
                   section: str = "agent") -> dict[str, Device]:
    """The community's devices of `kinds`, or exactly `ids` (each must exist and be of one of those kinds)."""
    index = community.device_index()
    if not ids:
        return {d.id: d for d in community.devices if d.kind in kinds}
    chosen: dict[str, Device] = {}
    for i, device_id in enumerate(ids):
        dev = index.get(device_id)
        if dev is None:
            raise ConfigError(f"{section}.devices[{i}]: {device_id!r} is not a device of the community")
        if dev.kind not in kinds:
            raise ConfigError(f"{section}.devices[{i}]: {device_id!r} is a {dev.kind.value}, "
                              f"not one of {sorted(k.value for k in kinds)}")
        chosen[dev.id] = dev
    return chosen


def agent_state_dir(config: Config, name: str, override: Path | None = None) -> Path:
    """The state directory of agent `name`: <agent.state_dir>/<name>, relative paths from the config file."""
    if override is not None:
        return override
    base = config.agent.state_dir
    if not base.is_absolute():
        base = config.base_dir / base
    return base / name
