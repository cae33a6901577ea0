"""The hot path's shortcuts give exactly what the plain path gives, on the sample community's realistic feed."""

from __future__ import annotations

import gc
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from alerts_helpers import run_in_batches

from bench import feed as feeds
from commhub.config import Config, load
from hub.ingest.message import Accepted
from hub.ingest.validate import Validator
from hub.rules.engine import Engine
from hub.rules.event import Ctx, Event
from hub.rules.kinds.absence import Absence
from hub.rules.spec import load_rules
from hub.runtime import YOUNG_THRESHOLD, tune_gc
from hub.store.lineproto import line
from hub.store.points import UNASSIGNED, PointBuilder, to_us
from hub.worker import Worker

REPO = Path(__file__).resolve().parents[1]
END_AT = 1_790_000_000.0  # a fixed "now" for the feed: the same events on every run


@pytest.fixture(scope="module")
def cfg() -> Config:
    return load(REPO / "configs" / "commhub.yaml")


@pytest.fixture(scope="module")
def feed(cfg: Config) -> list[tuple[str, bytes]]:
    """5,000 messages of normal life with every access grant an entry (so anti-passback fires)."""
    return feeds.storm(feeds.simulate(cfg, 5000, end_at=END_AT)).messages


@pytest.fixture(scope="module")
def accepted(cfg: Config, feed: list[tuple[str, bytes]]) -> list[Accepted]:
    v = Validator(cfg.mqtt.root, cfg.community.device_index(), "w", cfg.community.site.id)
    out = [v.check(t, p, END_AT) for t, p in feed]
    assert all(isinstance(a, Accepted) for a in out)
    return out  # type: ignore[return-value]


def _reference_line(a: Accepted) -> str:
    """The point as the generic line() builder writes it from a dict (the path the cached one replaced)."""
    env, t, d = a.envelope, a.topic, a.device
    assert d is not None
    tags = {"site": t.site, "grid": d.grid, "building": d.building or UNASSIGNED, "layer": d.effective_layer.value,
            "device_kind": t.device_kind, "device_id": t.device_id}
    fields: dict[str, Any] = {"seq": env.seq, "historical": env.historical}
    for name, value in env.body.model_dump().items():
        if name == "type":
            continue
        if isinstance(value, dict):
            fields.update({f"{name}_{k}": v for k, v in value.items()})
        elif isinstance(value, tuple | list):
            fields[name] = ",".join(value)
        else:
            fields[name] = value
    return line(env.body.type, tags, fields, to_us(env.ts))


def test_cached_line_heads_write_what_the_generic_builder_writes(accepted: list[Accepted]) -> None:
    builder = PointBuilder()
    types = set()
    for a in accepted:
        assert builder.build(a) == _reference_line(a)
        types.add(a.envelope.body.type)
    assert len(types) >= 15  # the feed's mix, not one body type


def _events(cfg: Config, ctx: Ctx, accepted: list[Accepted]) -> list[Event]:
    return [Event.from_envelope(a.envelope, a.topic.device_kind, ctx.place(a.envelope.device_id), a.device)
            for a in accepted]


def test_skipping_events_a_rule_ignores_changes_no_signal_and_no_state(cfg: Config, accepted: list[Accepted]) -> None:
    pack = load_rules(REPO / "configs" / "rules.yaml")
    ctx = Ctx(cfg.community)
    events = _events(cfg, ctx, accepted)
    filtered = Engine(pack, ctx, cfg.alerts.state_write_back_s)
    plain = Engine(pack, ctx, cfg.alerts.state_write_back_s)
    for kind, body_type in {(ev.kind, ev.type) for ev in events}:  # every rule of the type, no filter at all
        plain._routes.setdefault(kind, {})[body_type] = tuple(
            (rule, False, bool(plain.write_back_s) and isinstance(rule, Absence))
            for rule in (*plain.by_type.get(body_type, ()), *plain.any_type))
    got, got_states, got_steps = run_in_batches(filtered, events)
    want, want_states, want_steps = run_in_batches(plain, events)
    assert got == want
    assert {k: (s.data, s.due) for k, s in got_states.states.items()} == \
        {k: (s.data, s.due) for k, s in want_states.states.items()}
    assert any(a == "fire" for a, *_ in got)  # the storm fires anti-passback: the comparison has teeth
    assert got_steps < want_steps  # and the filter really skipped steps


def test_process_batch_keeps_a_poison_value_to_its_own_message(tmp_path: Path, cfg: Config,
                                                               feed: list[tuple[str, bytes]]) -> None:
    hub = cfg.hub.model_copy(update={"spool": cfg.hub.spool.model_copy(update={"dir": tmp_path / "spool"}),
                                     "metrics": cfg.hub.metrics.model_copy(update={"port": 0})})
    worker = Worker(cfg.model_copy(update={"hub": hub}))
    worker.spool.open()
    good = feed[:200]
    meter = next((t, p) for t, p in feed[200:] if b'"water_meter"' in p)
    doc = json.loads(meter[1])
    doc["body"]["total_l"] = "1e999"  # a JSON number no float holds: refused by the schema (not finite)
    inf = (meter[0], json.dumps(doc).replace('"1e999"', "1e999").encode())
    doc["body"]["total_l"], doc["seq"] = 1.0, 2**70
    huge_seq = (meter[0], json.dumps(doc).encode())
    doc["seq"], doc["body"]["extra"] = 5, 1
    unknown_field = (meter[0], json.dumps(doc).encode())
    batch = [*good[:100], inf, huge_seq, unknown_field, *good[100:]]
    assert worker.process_batch(batch, END_AT)
    segments = worker.spool.take(max_points=10_000, timeout=0)
    lines = [ln for seg in segments for ln in seg.path.read_text().splitlines()]
    assert len([ln for ln in lines if not ln.startswith("hub_dead_letter,")]) == len(good)
    dead = [ln for ln in lines if ln.startswith("hub_dead_letter,")]
    assert sorted(ln.split(",reason=")[1].split(",")[0] for ln in dead) == ["schema", "schema", "schema"]
    # the refused message's seq is not taken as seen: a corrected resend is stored
    fixed = json.loads(meter[1])
    fixed["body"]["total_l"] = 2.0
    assert worker.process_batch([(meter[0], json.dumps(fixed).encode())], END_AT)
    assert worker.spool.depth[1] == len(lines) + 1


@pytest.fixture
def restore_gc() -> Iterator[None]:
    thresholds = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*thresholds)


def test_tune_gc_freezes_start_up_objects_and_collects_young_objects_less_often(restore_gc: None) -> None:
    gc.unfreeze()
    tune_gc()
    assert gc.get_freeze_count() > 10_000  # this interpreter's modules, pydantic's schemas...
    assert gc.get_threshold()[0] == YOUNG_THRESHOLD
    made = [[i] for i in range(YOUNG_THRESHOLD // 2)]  # fewer new containers than the threshold...
    # ...are still counted as young: no collection ran (at CPython's 700, one would have; the margin is for
    # objects another thread frees meanwhile, which lower the count)
    assert gc.get_count()[0] >= len(made) // 2


def test_bench_rounds_report_the_median_round_and_each_batch_s_least_cpu() -> None:
    from bench.hotpath import Rounds
    r = Rounds(messages=2000)
    r.add([0.010, 0.030])  # 20 µs a message
    r.add([0.020, 0.020])  # 20
    r.add([0.050, 0.040])  # 45: a burst of load
    assert r.rounds == pytest.approx([20.0, 20.0, 45.0])
    assert r.median == pytest.approx(20.0) and r.least == pytest.approx(20.0)
    assert r.floor == pytest.approx(15.0)  # batch 1 at its least (0.010) plus batch 2 at its least (0.020)
