"""Issue 13 item 2 on real PostgreSQL: while the alert database is down a batch is held unacknowledged, never
acked with only a counter; the alert appears once the database is back, live or after a hub restart."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from alerts_helpers import T0, FakeClock, Postgres, Rig, env
from hub_helpers import wait_for
from robust_helpers import TcpProxy, metric
from sqlalchemy import text

from hub.alerts.db import make_engine

pytestmark = [pytest.mark.postgres, pytest.mark.broker]


@pytest.fixture
def pg(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Postgres]:
    server = Postgres(tmp_path_factory.mktemp("postgres"))
    if not server.available:
        pytest.fail("PostgreSQL server binaries are not installed (Debian: apt-get install postgresql)")
    server.start()
    yield server
    server.stop()


def _alerts(url: str, device: str) -> int:
    engine = make_engine(url)
    try:
        with engine.connect() as c:
            return int(c.execute(text("SELECT count(*) FROM alerts WHERE rule = 'sos_button' AND device_id = :d"),
                                 {"d": device}).scalar_one())
    finally:
        engine.dispose()


def test_alerts_are_held_not_lost_while_the_alert_database_is_down(tmp_path: Path, pg: Postgres, mosquitto: Any,
                                                                   unique_site: str) -> None:
    proxy = TcpProxy(pg.port).up()  # the hub reaches PostgreSQL through a link we can cut
    url = pg.url.replace(f":{pg.port}/", f":{proxy.port}/")
    rig = Rig(tmp_path, mosquitto, unique_site, FakeClock(T0), db_url=url).start()
    try:
        worker = rig.workers[0]
        # Down, live: the press is held unacknowledged and ingest pauses; it lands when the database is back.
        proxy.down()
        rig.publish(env("panic-b1", "panic_press", rig.clock()), wait=False)
        assert wait_for(lambda: metric(worker, "commhub_sink_failing") == 1, 60), "the sink failure was not held"
        assert metric(worker, "commhub_ingest_held") == 1 and metric(worker, "commhub_messages_in_total") == 0
        proxy.up()
        assert wait_for(lambda: metric(worker, "commhub_sink_failing") == 0, 60)
        assert _alerts(pg.url, "panic-b1") == 1
        assert metric(worker, "commhub_messages_in_total") == 1
        # Down, and the hub restarts before the database returns: the broker still has the unacked press.
        proxy.down()
        rig.publish(env("panic-b2", "panic_press", rig.clock()), wait=False)
        assert wait_for(lambda: metric(worker, "commhub_sink_failing") == 1, 60)
        rig.stop_workers()
        proxy.up()
        rig.start_workers()
        assert wait_for(lambda: _alerts(pg.url, "panic-b2") == 1, 60), "the press was acked and lost"
        assert _alerts(pg.url, "panic-b1") == 1  # nothing twice
    finally:
        rig.stop()
        proxy.down()
