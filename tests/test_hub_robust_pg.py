"""Issue 13 item 2 on real PostgreSQL: while the alert database is down a batch is held unacknowledged, never
acked with only a counter; the alert appears once the database is back, live or after a hub restart."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from alerts_helpers import T0, FakeClock, Postgres, Rig, SinkDriver, accepted, env, make_config
from hub_helpers import wait_for
from robust_helpers import TcpProxy, metric
from sqlalchemy import text
from sqlalchemy.exc import OperationalError

from hub.alerts.db import make_engine
from hub.rules.reorder import SETTLE_S

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


def _count(url: str, sql: str) -> int:
    engine = make_engine(url)
    try:
        with engine.connect() as c:
            return int(c.execute(text(sql)).scalar_one())
    finally:
        engine.dispose()


def test_a_held_replay_whose_let_go_meets_the_database_down_is_let_go_once_it_is_back(tmp_path: Path,
                                                                                        pg: Postgres) -> None:
    # A replay held for order (a credential's two entries at one gate, out of order: a real pass-back), then the
    # database goes away just as the hold is let go. The let-go's transaction rolls back whole: nothing of the
    # hold is lost or half-fed, and the next timer pass after the database is back lets it go, firing once.
    proxy = TcpProxy(pg.port).up()
    cfg = make_config(tmp_path, db_url=pg.url.replace(f":{pg.port}/", f":{proxy.port}/"), tick_s=60)
    clock = FakeClock(T0)
    d = SinkDriver(cfg, clock).start()
    try:
        grant = {"door": "d1", "credential_ref": "00000000000000aa", "method": "card", "direction": "in"}
        d.sink.handle([accepted(cfg, env("gate-g1", "heartbeat", T0, uptime_s=1.0))])
        clock.t = T0 + 3600
        d.sink.handle([accepted(cfg, env("gate-g1", "access_granted", T0 + 300, seq=203, **grant)),
                       accepted(cfg, env("gate-g1", "access_granted", T0 + 100, seq=201, **grant))])
        assert _count(pg.url, "SELECT count(*) FROM rule_held") == 1  # one run, in one part
        clock.t += 3 * SETTLE_S
        real = d.sink.engine.run

        def cut(work: Any, store: Any) -> Any:  # the link dies once the let-go has read the hold, mid-feed
            proxy.down()
            return real(work, store)

        d.sink.engine.run = cut  # type: ignore[method-assign]
        with pytest.raises(OperationalError):
            d.sink.tick()
        d.sink.engine.run = real  # type: ignore[method-assign]
        assert _count(pg.url, "SELECT count(*) FROM rule_held") == 1
        assert _count(pg.url, "SELECT count(*) FROM rule_state WHERE rule = '_hold'") == 1
        assert _count(pg.url, "SELECT count(*) FROM alerts") == 0
        proxy.up()
        clock.t += 1.0
        d.sink.tick()
        assert _count(pg.url, "SELECT count(*) FROM rule_held") == 0
        assert _count(pg.url, "SELECT count(*) FROM rule_state WHERE rule = '_hold'") == 0
        d.wait(30)  # the rule judges a repeated entry a few seconds after it
        assert [(a["device_id"], a["count"]) for a in d.alerts(rule="anti_passback")] == [("gate-g1", 1)]
    finally:
        d.stop()
        proxy.down()
