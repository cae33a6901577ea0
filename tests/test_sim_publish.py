"""`commhub simulate` on a real mosquitto: every simulated message arrives, on simulated time, in seq order."""

from __future__ import annotations

import argparse
from collections import defaultdict
from pathlib import Path

import pytest
from sim_helpers import MIDNIGHT, Collector, community, write_config

from commhub import topics
from commhub.services import Mosquitto
from commhub.wire import Envelope
from simulators import cli


def _args(cfg: Path, **kw: object) -> argparse.Namespace:
    ns = argparse.ArgumentParser()
    cli.add_arguments(ns)
    args = ns.parse_args(["--config", str(cfg), "--speed", "0", "--duration", "2h",
                          "--start", "2026-03-02T00:00:00+08:00", "--report-every", "60"])
    for k, v in kw.items():
        setattr(args, k, v)
    return args


@pytest.mark.broker
def test_simulate_publishes_every_message_through_the_agent(mosquitto: Mosquitto, tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    cfg = write_config(tmp_path, mosquitto.port)
    with Collector(mosquitto.port, topics.devices_filter("commhub")) as col:
        assert cli.run(_args(cfg)) == 0
        out = capsys.readouterr().out
        published = int(out.split("done: ")[1].split(" messages")[0].replace(",", ""))
        assert published > 1000
        got = col.wait_for(published)
    envs: dict[str, list[Envelope]] = defaultdict(list)
    births = 0
    for topic, payload in got:
        parts = topics.parse(topic)
        if parts.channel in ("birth", "state"):
            births += parts.channel == "birth"
            continue
        env = Envelope.model_validate_json(payload)
        assert env.device_id == parts.device_id
        envs[env.device_id].append(env)
    assert sum(len(v) for v in envs.values()) == published
    n_dev = len(community().devices)
    assert births >= n_dev  # one per simulated device (and the agent itself)
    for device_id, items in envs.items():
        seqs = [e.seq for e in items]
        assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs), device_id
        for e in items:
            assert MIDNIGHT <= e.ts.timestamp() < MIDNIGHT + 7200  # simulated time, not the wall clock
    assert f"from {n_dev} devices" in out and "msg/s" in out


@pytest.mark.broker
def test_simulate_same_seed_same_traffic(mosquitto: Mosquitto, tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    def once(sub: str) -> list[tuple[str, str, str]]:
        d = tmp_path / sub
        d.mkdir()
        cfg = write_config(d, mosquitto.port, extra="")
        # The whole device tree, as the hub subscribes (the agent holds what nobody subscribes to); events compared.
        with Collector(mosquitto.port, topics.devices_filter("commhub")) as col:
            assert cli.run(_args(cfg, duration="30m", seed=5)) == 0
            out = capsys.readouterr().out
            n = int(out.split("done: ")[1].split(" messages")[0].replace(",", ""))
            got = col.wait_for(n)  # every message of the run (births come on top)
        assert n > 0
        rows = []
        for topic, payload in got:
            if not topic.endswith("/evt"):
                continue
            env = Envelope.model_validate_json(payload)
            rows.append((topic, env.ts.isoformat(), env.body.model_dump_json()))
        return sorted(rows)
    first = once("a")
    assert first and first == once("b")
