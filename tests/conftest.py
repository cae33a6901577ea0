"""Shared fixtures: real mosquitto and influxd on free loopback ports, with temporary data directories."""

from __future__ import annotations

import json
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from commhub.services import Influxd, Mosquitto

SHARED = Path(__file__).resolve().parents[1].parent / "shared"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The ../shared/data folder of recordings and vectors."""
    path = SHARED / "data"
    assert path.is_dir(), f"{path} is missing: the tests read recordings from ../shared/data"
    return path


@pytest.fixture
def mosquitto_factory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., Mosquitto]]:
    """Start fresh brokers that a test may stop and start again; all are stopped at the end."""
    started: list[Mosquitto] = []

    def make(**kw: Any) -> Mosquitto:
        broker = Mosquitto(tmp_path_factory.mktemp("mosquitto"), **kw)
        broker.start()
        started.append(broker)
        return broker

    yield make
    for b in started:
        b.stop(kill=True)


@pytest.fixture
def own_mosquitto(mosquitto_factory: Callable[..., Mosquitto]) -> Mosquitto:
    """A broker for this test alone, for exact counts: no other test's retained messages or sessions."""
    return mosquitto_factory()


@pytest.fixture(scope="session")
def mosquitto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mosquitto]:
    """One broker for the session; tests keep apart by unique topics (see unique_site)."""
    broker = Mosquitto(tmp_path_factory.mktemp("mosquitto-session"))
    broker.start()
    yield broker
    broker.stop(kill=True)


@pytest.fixture
def influxd_factory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[[], Influxd]]:
    """Start fresh influxd servers that a test may stop and start again."""
    started: list[Influxd] = []

    def make() -> Influxd:
        server = Influxd(tmp_path_factory.mktemp("influxd"))
        server.start()
        started.append(server)
        return server

    yield make
    for s in started:
        s.stop(kill=True)


@pytest.fixture(scope="session")
def influxd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Influxd]:
    """One influxd for the session; tests keep apart by unique database names."""
    server = Influxd(tmp_path_factory.mktemp("influxd-session"))
    server.start()
    yield server
    server.stop(kill=True)


@pytest.fixture
def unique_site() -> str:
    """A site id no other test uses, so topics never collide (as aiomqtt's unique_topic)."""
    return "t" + uuid.uuid4().hex[:10]


def influx_query(url: str, db: str, q: str) -> list[dict[str, Any]]:
    """Run InfluxQL on /query and return the series of the first statement."""
    qs = urllib.parse.urlencode({"db": db, "q": q, "epoch": "u"})
    with urllib.request.urlopen(f"{url}/query?{qs}", timeout=10) as r:
        data = json.load(r)
    result = data["results"][0]
    if "error" in result:
        raise AssertionError(result["error"])
    return list(result.get("series", []))


def influx_count(url: str, db: str, measurement_regex: str = "/.*/", field: str = "seq") -> int:
    """Count points (by a field every point has) across matching measurements."""
    total = 0
    for s in influx_query(url, db, f'SELECT count("{field}") FROM {measurement_regex}'):
        total += int(s["values"][0][1])
    return total
