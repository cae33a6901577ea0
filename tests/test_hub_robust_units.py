"""Issue 13, the parts that are pure logic on a real filesystem: spool writes, numbering, size and limit,
directory fsync; snapshot paths and limits; webhook give-up. A short write is injected at the os.write
boundary (a full disk for real is in test_hub_robust.py, on a tmpfs)."""

from __future__ import annotations

import errno
import logging
import os
from pathlib import Path
from typing import Any

import pytest
from test_alerts_webhook import Receiver

from commhub.config import WebhookConfig
from commhub.topics import Channel, TopicParts
from hub.notify.webhook import WebhookNotifier
from hub.store import spool as spool_mod
from hub.store.snapshots import SnapshotStore
from hub.store.spool import Spool, SpoolError

JPEG = b"\xff\xd8\xff\xe0" + b"x" * 100


def test_a_short_write_is_finished_or_an_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    s = Spool(tmp_path)
    s.open()
    real_write = os.write
    calls: list[int] = []

    def short(fd: int, data: Any) -> int:
        calls.append(len(data))
        return real_write(fd, bytes(data)[:4096])  # what a nearly full disk does

    monkeypatch.setattr(spool_mod.os, "write", short)
    lines = [f"m v={i} {i}" for i in range(800)]
    seg = s.append(lines)
    assert len(calls) > 1, "the test must exercise a short write"
    assert seg.path.read_text().splitlines() == lines  # the rest was written, not dropped

    def full(fd: int, data: Any) -> int:
        if len(data) > 4096:
            return real_write(fd, bytes(data)[:4096])
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(spool_mod.os, "write", full)
    with pytest.raises(SpoolError, match="No space left"):
        s.append(lines)
    assert s.depth[:2] == (1, 800)  # nothing half-stored is counted
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_file()) == [seg.path.name]  # no temp file left


def test_spool_numbers_never_restart_and_rejected_files_are_never_replaced(tmp_path: Path) -> None:
    s = Spool(tmp_path, fsync=False)
    s.open()
    first = s.append(["a v=1 1"])
    s.reject(s.take(10, 0))
    assert not list(tmp_path.glob("*.lp"))  # the spool is empty now, as in the report
    again = Spool(tmp_path, fsync=False)
    again.open()
    second = again.append(["a v=2 2"])
    assert int(second.path.stem) > int(first.path.stem)
    again.reject(again.take(10, 0))
    # And even a name clash (an operator moved files back) keeps both.
    third = again.append(["a v=3 3"])
    (tmp_path / "rejected" / third.path.name).write_text("an older rejected batch\n")
    again.reject(again.take(10, 0))
    texts = sorted(p.read_text() for p in (tmp_path / "rejected").iterdir())
    assert texts == ["a v=1 1\n", "a v=2 2\n", "a v=3 3\n", "an older rejected batch\n"]


def test_spool_size_is_disk_usage_with_a_limit_and_an_alarm(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    s = Spool(tmp_path, fsync=False, max_bytes=40 * 4096, alarm_fraction=0.5)
    s.open()
    caplog.set_level(logging.INFO, logger="hub.store.spool")
    segs = [s.append([f"m v={i} {i}"]) for i in range(19)]
    on_disk = sum(os.stat(seg.path).st_blocks * 512 for seg in segs)
    assert on_disk >= 19 * 10  # sanity
    assert s.depth[2] == on_disk  # the real size, a block per file, not the 10 bytes written
    assert not s.alarm
    s.append(["m v=19 19"])
    assert s.alarm
    while s.depth[2] + 20 <= s.max_bytes:
        s.append(["m v=1 1"])
    with pytest.raises(SpoolError, match="limit"):
        s.append(["m v=1 1"])
    alarms = [r for r in caplog.records if "spool alarm" in r.getMessage()]
    assert len(alarms) == 1  # said once, not per batch
    s.done(s.take(10_000, 0))
    assert not s.alarm and s.depth == (0, 0, 0)


def test_spool_fsyncs_the_directory_after_the_rename(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    events: list[str] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd: int) -> None:
        events.append("dir" if os.path.isdir(f"/proc/self/fd/{fd}") else "file")
        real_fsync(fd)

    def replace(a: Any, b: Any) -> None:
        events.append("rename")
        real_replace(a, b)

    monkeypatch.setattr(spool_mod.os, "fsync", fsync)
    monkeypatch.setattr(spool_mod.os, "replace", replace)
    s = Spool(tmp_path)
    s.open()
    s.append(["a v=1 1"])
    assert events == ["file", "rename", "dir"]


def _parts(site: str, device: str, snap: str) -> TopicParts:
    return TopicParts("commhub", site, "camera", device, Channel.SNAP, snap)


def test_snapshots_check_every_level_and_never_replace_evidence(tmp_path: Path) -> None:
    store = SnapshotStore(tmp_path / "snaps", max_bytes=10_000)
    store.open()
    for site, device, snap in (("..", "..", "pwned"), ("sunrise", "..", "x"), ("sunrise", "cam-1", ".."),
                               ("sunrise", "cam-1", ".hidden"), ("a\\b", "cam", "s"), ("s", "c", "x" * 65)):
        problem = store.save(_parts(site, device, snap), JPEG)
        assert problem is not None and "identifier" in problem, (site, device, snap)
    assert not list(tmp_path.rglob("*.jpg"))
    assert store.save(_parts("sunrise", "cam-1", "s1"), JPEG) is None
    assert store.save(_parts("sunrise", "cam-1", "s1"), JPEG) is None  # a redelivery of the same bytes
    other = JPEG + b"forged"
    problem = store.save(_parts("sunrise", "cam-1", "s1"), other)
    assert problem is not None and "already stored" in problem
    assert store.path("sunrise", "cam-1", "s1").read_bytes() == JPEG
    assert not list(tmp_path.rglob("*.tmp"))


def test_snapshot_store_has_a_limit_and_an_alarm(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="hub.store.snapshots")
    store = SnapshotStore(tmp_path, max_bytes=10_000, max_total_bytes=5 * 4096, alarm_fraction=0.5)
    store.open()
    results = [store.save(_parts("sunrise", "cam-1", f"s{i}"), JPEG) for i in range(8)]
    assert results[:2] == [None, None]
    assert any(r is not None and "full" in r for r in results)
    assert store.alarm and store.used_bytes <= 5 * 4096
    kept = sorted(p.name for p in tmp_path.rglob("*.jpg"))
    assert kept == [f"s{i}.jpg" for i in range(len(kept))]  # the oldest are kept, the newest refused
    assert len([r for r in caplog.records if "alarm" in r.getMessage()]) == 1  # once, not per snapshot
    reopened = SnapshotStore(tmp_path, max_bytes=10_000, max_total_bytes=5 * 4096)
    reopened.open()
    assert reopened.used_bytes == store.used_bytes and reopened.alarm  # the limit counts earlier runs


class _Outbox:
    """The three outbox calls the notifier makes, over one notice that is on its last attempt."""

    def __init__(self, attempts: int) -> None:
        self.rows = [(1, '{"route": {"group": "g"}}', attempts)]
        self.retried: list[tuple[int, float | None]] = []

    def claim(self, _channel: str, limit: int) -> list[tuple[int, str, int]]:
        rows, self.rows = self.rows, []
        return rows

    def retry_later(self, oid: int, _error: str, delay: float | None) -> None:
        self.retried.append((oid, delay))

    def delivered(self, _ids: list[int]) -> None:
        raise AssertionError("nothing is delivered to a failing receiver")


def test_webhook_give_up_is_counted_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    receiver = Receiver(fail=100)
    try:
        outbox = _Outbox(attempts=19)
        w = WebhookNotifier(outbox, WebhookConfig(name="pms", url=receiver.url, max_attempts=20))  # type: ignore[arg-type]
        caplog.set_level(logging.WARNING, logger="hub.notify.webhook")
        import httpx
        with httpx.Client(timeout=5) as http:
            w._deliver(http)
        assert outbox.retried == [(1, None)]  # given up: no next attempt
        assert w.given_up == 1
        errors = [r for r in caplog.records if r.levelno == logging.ERROR]
        assert len(errors) == 1 and "GAVE UP on 1" in errors[0].getMessage()
    finally:
        receiver.close()
