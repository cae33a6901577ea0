"""`commhub bench scale --communities`: each community's backlog under its own site, each hub on its own copy."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

from bench import hubrun
from bench.scale import _resite
from commhub import topics
from commhub.config import load


def test_each_community_gets_the_backlog_under_a_site_of_its_own(tmp_path: Path) -> None:
    sample = topics.telemetry("commhub", hubrun.sample_site(), "gas", "gas-b01-u1-202")
    assert _resite(sample, 0) == sample
    sites = {topics.parse(_resite(sample, i)).site for i in range(3)}
    assert sites == {hubrun.community_site(i) for i in range(3)} and len(sites) == 3
    # Only the site level moves, even when a device id contains the site's name.
    odd = topics.event("commhub", hubrun.sample_site(), "panic_button", f"{hubrun.sample_site()}-panic")
    parts = topics.parse(_resite(odd, 2))
    assert (parts.site, parts.device_id) == (hubrun.community_site(2), f"{hubrun.sample_site()}-panic")


def test_a_communitys_hub_config_loads_with_its_own_site_and_the_samples_devices(tmp_path: Path) -> None:
    broker = SimpleNamespace(host="127.0.0.1", port=1883)
    influx = SimpleNamespace(url="http://127.0.0.1:8086")
    own = load(hubrun.hub_config(broker, influx, tmp_path, "c0", True))  # type: ignore[arg-type]
    other = load(hubrun.hub_config(broker, influx, tmp_path, "c1", True, None,  # type: ignore[arg-type]
                                   hubrun.community_site(1)))
    assert own.community.site.id == hubrun.sample_site()
    assert other.community.site.id == hubrun.community_site(1)
    assert [d.id for d in other.community.devices] == [d.id for d in own.community.devices]
    assert other.community.site.name == own.community.site.name  # the copy keeps the text (Chinese names)
    assert other.alerts.db_path != own.alerts.db_path
