"""The access-control agent: door controllers, face gates and turnstiles of the community, over one BaseAgent."""

from __future__ import annotations

import logging
from pathlib import Path

from commhub.config import Config
from commhub.wire import DeviceKind
from edge_agents.access.hashing import CredentialHasher
from edge_agents.access.http_push import HttpPushAdapter
from edge_agents.access.simulated import SimulatedAccessAdapter
from edge_agents.base.devices import select_devices
from edge_agents.base.host import AdapterHost

log = logging.getLogger(__name__)

ACCESS_KINDS = frozenset((DeviceKind.DOOR_CONTROLLER, DeviceKind.FACE_GATE, DeviceKind.TURNSTILE))


class AccessAgent(AdapterHost):
    """Publishes access events from the push endpoint and/or the simulator through one BaseAgent."""

    def __init__(self, config: Config, name: str = "access", *, simulate: bool = False, http: bool | None = None,
                 state_dir: Path | None = None, seed: int | None = None) -> None:
        super().__init__(config, name, state_dir)
        self.simulate = simulate
        self.http_enabled = config.agent.access.http.enabled if http is None else http
        self.seed = seed
        self.http: HttpPushAdapter | None = None

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
        base = self._start_base(devices)
        kinds = {d.id: d.kind for d in devices.values()}
        if self.http_enabled:
            self.http = HttpPushAdapter(settings.http, hasher, kinds, sync=base.sync)
            self.adapters.append(self.http)
        if self.simulate:
            self.adapters.append(SimulatedAccessAdapter(kinds, hasher, settings.sim_events_per_device_s, self.seed))
        self._start_adapters(base)
        log.info("access agent %r serves %d devices", self.name, len(devices))
