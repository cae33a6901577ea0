"""An agent made of one BaseAgent and the adapters that feed it: start the base, then the adapters."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from commhub.community import Device
from commhub.config import Config
from edge_agents.base.adapter import Adapter
from edge_agents.base.agent import BaseAgent
from edge_agents.base.devices import agent_state_dir


class AdapterHost:
    """Owns a BaseAgent for a set of devices and the adapters that publish through it."""

    def __init__(self, config: Config, name: str, state_dir: Path | None) -> None:
        self.config = config
        self.name = name
        self.state_dir = state_dir
        self.base: BaseAgent | None = None
        self.adapters: list[Adapter] = []

    def _start_base(self, devices: Mapping[str, Device]) -> BaseAgent:
        """Start the base agent with these devices registered."""
        base = BaseAgent(self.config.mqtt, self.config.community.site.id, self.name,
                         agent_state_dir(self.config, self.name, self.state_dir), self.config.agent)
        for dev in devices.values():
            base.add_device(dev.id, dev.kind, dev.interval_s)
        base.start()
        self.base = base
        return base

    def _start_adapters(self, base: BaseAgent) -> None:
        """Start every adapter; if one fails, stop everything started so far and re-raise."""
        try:
            for adapter in self.adapters:
                adapter.start(base.publish)
        except Exception:
            self.stop()
            raise

    def stop(self) -> None:
        """Stop the adapters first (no new events), then flush and stop the base agent."""
        for adapter in reversed(self.adapters):
            adapter.stop()
        self.adapters.clear()
        if self.base is not None:
            self.base.stop()
