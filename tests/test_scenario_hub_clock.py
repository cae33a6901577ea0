"""The scenario hub's event clock against messages in flight on several agents' connections (pure logic)."""

from __future__ import annotations

from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

from simulators.scenario.hub_harness import EventClock, InFlight


def _msg(device: str, seq: int, t: float) -> Any:
    env = SimpleNamespace(device_id=device, seq=seq, ts=datetime.fromtimestamp(t, UTC),
                          body=SimpleNamespace(type="heartbeat"))
    return SimpleNamespace(envelope=env)


def test_the_clock_never_passes_a_message_in_flight_on_another_agents_connection() -> None:
    inflight = InFlight()
    clock = EventClock(1000.0, 2000.0, inflight)
    # The main agent sends a camera's heartbeat at 1236; a crash agent's heartbeats at 1240..1290 overtake it.
    assert inflight.send("", lambda: 7, "cam-1", 1236.0) == 7
    for i, t in enumerate((1240.0, 1250.0, 1260.0, 1290.0)):
        inflight.send("crash", lambda i=i: i + 1, "cam-2", t)  # type: ignore[misc]
        clock.handle([_msg("cam-2", i + 1, t)])
    assert clock.now() < 1236.0  # not 1260: the camera's heartbeat is still on its way
    assert inflight.sent_at("cam-1", 7) == 1236.0  # received when sent, not at the newest stamp in hand
    clock.handle([_msg("cam-1", 7, 1236.0)])
    assert clock.now() == 1260.0 and inflight.floor() == float("inf") and inflight.sent_at("cam-1", 7) is None


def test_a_message_the_hub_dropped_stops_holding_time_once_a_later_one_of_its_agent_is_in() -> None:
    inflight = InFlight()
    clock = EventClock(1000.0, 2000.0, inflight)
    inflight.send("", lambda: 1, "dev-a", 1100.0)  # dead-lettered by the hub: never handled
    inflight.send("", lambda: 2, "dev-a", 1110.0)
    inflight.send("", lambda: 3, "dev-a", 1120.0)
    assert inflight.floor() == 1100.0
    clock.handle([_msg("dev-a", 2, 1110.0), _msg("dev-a", 3, 1120.0)])
    assert inflight.floor() == float("inf") and clock.now() == 1110.0
    # An agent that died takes what it had not delivered with it.
    inflight.send("crash", lambda: 9, "dev-b", 1130.0)
    inflight.forget("crash")
    assert inflight.floor() == float("inf")
