"""The base agent: MQTT session, will and births, on-disk spool, reconnect, per-device seq."""

from commhub.agent_config import AgentSettings
from edge_agents.base.agent import AgentStats, BaseAgent
from edge_agents.base.statedir import StateDirError

__all__ = ["AgentSettings", "AgentStats", "BaseAgent", "StateDirError"]
