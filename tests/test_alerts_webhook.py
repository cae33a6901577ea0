"""Webhook notifier: retry with backoff from the outbox, and a failing receiver delays nothing else."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from alerts_helpers import T0, FakeClock, Rig

from commhub.config import WebhookConfig

pytestmark = pytest.mark.broker


class Receiver:
    """A local HTTP receiver that fails the first `fail` requests, or sleeps `delay` seconds on each."""

    def __init__(self, fail: int = 0, delay: float = 0.0) -> None:
        self.fail = fail
        self.delay = delay
        self.bodies: list[dict[str, Any]] = []
        self.requests = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["content-length"]))
                outer.requests += 1
                if outer.delay:
                    time.sleep(outer.delay)
                if outer.requests <= outer.fail:
                    self.send_response(503)
                else:
                    outer.bodies.append(json.loads(body))
                    self.send_response(204)
                self.end_headers()

            def log_message(self, *_a: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        """Stop serving."""
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receivers() -> Iterator[tuple[Receiver, Receiver]]:
    flaky, stuck = Receiver(fail=2), Receiver(delay=2.0)
    yield flaky, stuck
    flaky.close()
    stuck.close()


def test_webhook_retries_with_backoff_and_a_stuck_receiver_delays_nothing(
        tmp_path: Path, mosquitto: Any, unique_site: str, receivers: tuple[Receiver, Receiver]) -> None:
    flaky, stuck = receivers
    hooks = (WebhookConfig(name="pms", url=flaky.url, roles=("control_room",), backoff_initial_s=0.5),
             WebhookConfig(name="slow", url=stuck.url, timeout_s=0.3, backoff_initial_s=0.5),
             WebhookConfig(name="police", url=flaky.url, roles=("police_liaison",)))
    clock = FakeClock(T0)
    rig = Rig(tmp_path, mosquitto, unique_site, clock, webhooks=hooks).start()
    try:
        t0 = time.monotonic()
        rig.send("panic-b1", "panic_press")
        n = rig.wait_notice(lambda n: n.rule == "sos_button")
        mqtt_s = time.monotonic() - t0
        assert n is not None and mqtt_s < 1.0, f"MQTT notice took {mqtt_s:.2f}s"
        deadline = time.monotonic() + 15
        while not flaky.bodies and time.monotonic() < deadline:
            clock.advance(0.5)  # backoff is measured on the hub's clock
            time.sleep(0.1)
        store = rig.sink.store
        assert flaky.bodies, "the flaky receiver never got the notice"
        body = flaky.bodies[0]
        assert body["group"] == "code=sos_button|building=b1"
        assert [x["notice_id"] for x in body["notices"]] == [n.notice_id]
        assert flaky.requests == 3  # two refusals, then delivered; 'police' got nothing (not routed to it)
        assert store.pending("webhook:pms") == 0 and store.pending("webhook:police") == 0
        assert store.pending("webhook:slow") == 1  # still owed, never dropped
        assert stuck.requests >= 2  # and retried
    finally:
        rig.stop()
