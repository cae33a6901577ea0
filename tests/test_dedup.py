"""De-duplication: high-water mark plus missing-seq bitmap (pure logic, no services)."""

from __future__ import annotations

import random

from hub.ingest.dedup import Deduplicator


def test_in_order_then_repeats_are_dropped() -> None:
    d = Deduplicator(window=64)
    assert all(d.first_time("a", s) for s in range(100))
    assert not any(d.first_time("a", s) for s in range(40, 100))  # every seq within the window is known


def test_out_of_order_within_the_window_is_accepted_once() -> None:
    d = Deduplicator(window=64)
    order = list(range(200))
    random.Random(7).shuffle(order[50:150])  # local reordering, as a replay interleaved with live sends makes
    seen = [s for s in order if d.first_time("a", s)]
    assert sorted(seen) == list(range(200))
    assert not any(d.first_time("a", s) for s in range(150, 200))


def test_a_gap_filled_late_is_accepted_and_then_known() -> None:
    d = Deduplicator(window=128)
    for s in (*range(10), *range(50, 60)):  # 10..49 lost for now (an agent still replaying its spool)
        assert d.first_time("a", s)
    assert [s for s in range(10, 50) if d.first_time("a", s)] == list(range(10, 50))
    assert not any(d.first_time("a", s) for s in range(0, 60))


def test_a_new_device_mid_stream_keeps_its_earlier_seqs() -> None:
    d = Deduplicator(window=4096)
    assert d.first_time("a", 500)  # the hub started (or evicted it) while the device was at 500
    assert all(d.first_time("a", s) for s in range(400, 500))  # a replay of what it sent before
    assert not d.first_time("a", 500)


def test_seqs_older_than_the_window_are_accepted_not_lost() -> None:
    d = Deduplicator(window=16)
    assert d.first_time("a", 1000)
    assert d.first_time("a", 10)  # far behind: cannot be proven a repeat, so it is kept
    assert d.first_time("a", 999)  # from before the hub knew the device: never seen by us


def test_a_gap_wider_than_the_window_forgets_only_what_falls_out() -> None:
    d = Deduplicator(window=32)
    assert d.first_time("a", 0)
    assert d.first_time("a", 10_000)
    assert d.first_time("a", 9_990) and not d.first_time("a", 9_990)
    assert d.first_time("a", 5)  # out of the window: accepted


def test_a_reboot_with_a_birth_restarts_the_numbering() -> None:
    d = Deduplicator(window=4096)
    for s in range(3000):
        d.first_time("a", s)
    assert d.first_time("a", 0, restart=True)  # the birth after a reboot that lost the counter
    assert all(d.first_time("a", s) for s in range(1, 500))
    assert not any(d.first_time("a", s) for s in range(0, 500))


def test_a_redelivered_recent_birth_does_not_reset() -> None:
    d = Deduplicator(window=4096)
    for s in range(3000):
        d.first_time("a", s)
    assert not d.first_time("a", 2990, restart=True)
    assert not d.first_time("a", 2000)


def test_a_reboot_without_a_birth_is_not_dropped_forever() -> None:
    d = Deduplicator(window=64)
    for s in range(1000):
        d.first_time("a", s)
    # Restarted from 0 with no birth: the first `window` seqs below the old mark look like repeats, but
    # from there on everything is accepted again (not until seq 1000).
    accepted = [s for s in range(0, 1000) if d.first_time("a", s)]
    assert accepted == list(range(0, 1000 - 64))


def test_forget_lets_a_redelivery_in() -> None:
    d = Deduplicator(window=64)
    for s in range(10):
        d.first_time("a", s)
    d.forget("a", 9)
    d.forget("a", 4)
    assert d.first_time("a", 9) and d.first_time("a", 4)
    assert not d.first_time("a", 9)


def test_devices_are_independent() -> None:
    d = Deduplicator(window=64)
    assert d.first_time("a", 5) and d.first_time("b", 5)
    assert not d.first_time("a", 5)


def test_in_order_devices_cost_a_few_dozen_bytes() -> None:
    d = Deduplicator(window=4096)
    for s in range(500):
        for dev in range(100):
            d.first_time(f"smoke-b{dev:02d}-u{dev:02d}-kitchen", s)
    per_device = d.approx_bytes() / len(d)
    assert per_device < 150, per_device  # the 4,096-seq set + deque it replaces took ~300 kB a device


def test_a_flood_of_new_ids_stays_bounded() -> None:
    d = Deduplicator(window=4096, max_devices=5_000)
    for i in range(60_000):
        assert d.first_time(f"x{i:060d}", 7)
    assert len(d) <= 5_000
    assert d.evicted >= 55_000
    assert d.approx_bytes() < 5_000 * 400
    # The most recent ids are still tracked.
    assert not d.first_time(f"x{59_999:060d}", 7)
