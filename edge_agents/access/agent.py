"""The access-control agent: door controllers, face gates and turnstiles of the community, over one BaseAgent."""

from __future__ import annotations

import logging
from pathlib import Path

from commhub.config import Config
from commhub.wire import DeviceKind
from edge_agents.access.hashing import CredentialHasher
from edge_agents.access.http_push import HttpPushAdapter
from edge_agents.access.simulated import SimulatedAccessAdapter
from edge_agents.base import BaseAgent
from edge_agents.base.adapter import Adapter
from edge_agents.base.devices import agent_state_dir, select_devices

log = logging.getLogger(__name__)

ACCESS_KINDS = frozenset((DeviceKind.DOOR_CONTROLLER, DeviceKind.FACE_GATE, DeviceKind.TURNSTILE))


class AccessAgent:
    """Publishes access events from the push endpoint and/or the simulator through one BaseAgent."""

    def __init__(self, config: Config, name: str = "access", *, simulate: bool = False, http: bool | None = None,
                 state_dir: Path | None = None, seed: int | None = None) -> None:
        self.config = config
        self.name = name
        self.simulate = simulate
        self.http_enabled = config.agent.access.http.enabled if http is None else http
        self.state_dir = state_dir
        self.seed = seed
        self.base: BaseAgent | None = None
        self.http: HttpPushAdapter | None = None
        self.adapters: list[Adapter] = []

    def start(self) -> None:
        """Check the secret, start the base agent, then the adapters."""
        settings = self.config.agent.access
        hasher = CredentialHasher(settings.site_secret, settings.ref_hex_len)
        hasher.check()
        devices = select_devices(self.config.community, ACCESS_KINDS, settings.devices, "agent.access")
        if not devices:
            raise ValueError("no access devices (door_controller, face_gate, turnstile) in the community")
        if not (self.simulate or self.http_enabled):
            raise ValueError("nothing to run: enable agent.access.http or use the simulated adapter")
        base = BaseAgent(self.config.mqtt, self.config.community.site.id, self.name,
                         agent_state_dir(self.config, self.name, self.state_dir), self.config.agent)
        for dev in devices.values():
            base.add_device(dev.id, dev.kind, dev.interval_s)
        base.start()
        self.base = base
        kinds = {d.id: d.kind for d in devices.values()}
        if self.http_enabled:
            self.http = HttpPushAdapter(settings.http, hasher, kinds, sync=base.sync)
            self.adapters.append(self.http)
        if self.simulate:
            self.adapters.append(SimulatedAccessAdapter(kinds, hasher, settings.sim_events_per_device_s, self.seed))
        try:
            for adapter in self.adapters:
                adapter.start(base.publish)
        except Exception:
            self.stop()
            raise
        log.info("access agent %r serves %d devices", self.name, len(devices))

    def stop(self) -> None:
        """Stop the adapters first (no new events), then flush and stop the base agent."""
        for adapter in reversed(self.adapters):
            adapter.stop()
        self.adapters.clear()
        if self.base is not None:
            self.base.stop()
