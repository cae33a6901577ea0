"""The publish path of the simulator: the edge agents' BaseAgent, so simulated devices look like real ones."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from commhub.community import Device
from commhub.config import Config
from commhub.wire import _Body

log = logging.getLogger(__name__)

AGENT_NAME = "sim"


class CountingPublisher:
    """Validates and counts envelopes without a broker (--dry-run, and the generator's cost in bench)."""

    def __init__(self) -> None:
        self.count = 0
        self.seqs: dict[str, int] = {}

    def publish(self, device_id: str, body: _Body, *, ts: datetime | None = None) -> int:
        """Count one message and return its per-device seq."""
        seq = self.seqs.get(device_id, -1) + 1
        self.seqs[device_id] = seq
        self.count += 1
        return seq


def agent_state_dir(cfg: Config, name: str = AGENT_NAME) -> Path:
    """Where the simulator's agent keeps its spool and counters."""
    base = cfg.agent.state_dir if cfg.agent.state_dir.is_absolute() else cfg.base_dir / cfg.agent.state_dir
    return base / name


def make_agent(cfg: Config, devices: Sequence[Device], name: str = AGENT_NAME,
               state_dir: Path | None = None) -> Any:
    """A BaseAgent for these devices, not yet started; models send their own heartbeats on simulated time."""
    from edge_agents.base import BaseAgent  # the one publish path shared with real agents

    # The agent's own heartbeats would carry wall-clock ts; the models send theirs on the simulated clock.
    settings = cfg.agent.model_copy(update={"heartbeats": False})
    agent = BaseAgent(cfg.mqtt, cfg.community.site.id, name, state_dir or agent_state_dir(cfg, name), settings)
    for d in devices:
        agent.add_device(d.id, d.kind, d.interval_s)
    return agent
