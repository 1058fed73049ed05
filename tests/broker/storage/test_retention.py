"""Retention by bytes and age, mirror protection, and the disk guard."""

from __future__ import annotations

import shutil
import time
from collections import namedtuple

from broker.storage import DiskGuard, Storage
from broker.storage.partition_log import PartitionLog
from broker.topic_config import TopicConfig

from .helpers import make_batch, read_all, values_of


def fill(storage, topic, batches, **config):
    storage.create_topic(topic, TopicConfig(segment_bytes=2_000, **config))
    log = storage.log(topic, 0)
    for i in range(batches):
        log.append(make_batch(i * 4, 4, size=100))
    return log


def test_retention_bytes_deletes_oldest_whole_segments(data_dir, caplog):
    caplog.set_level("INFO", logger="broker.retention")
    storage = Storage(data_dir)
    log = fill(storage, "t", 40, retention_bytes=6_000)
    before = len(log.segments)
    deleted = storage.enforce_retention()
    assert deleted and all(d.reason == "retention_bytes" for d in deleted)
    assert len(log.segments) == before - len(deleted)
    assert log.size_bytes >= 6_000 - 2_500 and log.size_bytes - log.segments[0].size < 6_000
    assert values_of(read_all(log)) == list(range(log.log_start_offset, 160))
    assert storage.deletion_counts == {"retention_bytes": len(deleted)}
    assert "segment_deleted" in caplog.text


def test_retention_age_uses_the_append_time(data_dir):
    storage = Storage(data_dir)
    storage.create_topic("t", TopicConfig(segment_bytes=2_000, retention_age="1h"))
    log = storage.log("t", 0)
    two_hours_ago = time.time_ns() - 7_200 * 10**9
    for i in range(40):  # the first 12 batches appended two hours ago, the rest now
        log.append(make_batch(i * 4, 4, size=100), append_time_ns=two_hours_ago if i < 12 else None)
    old = [seg for seg in log.segments if seg.next_offset <= 48]
    assert len(old) >= 2
    deleted = storage.enforce_retention()
    assert [d.base_offset for d in deleted] == [s.base_offset for s in old]
    assert {d.reason for d in deleted} == {"retention_age"}


def test_active_segment_is_never_deleted(data_dir):
    storage = Storage(data_dir)
    log = fill(storage, "t", 40, retention_bytes=0)
    storage.enforce_retention()
    assert len(log.segments) == 1 and log.next_offset == 160


def test_unshipped_segments_are_protected(data_dir):
    storage = Storage(data_dir)
    log = fill(storage, "t", 40, retention_bytes=0)
    protect_from = log.segments[2].base_offset + 1
    storage.set_protected_offset("t", 0, protect_from)
    storage.enforce_retention()
    assert log.log_start_offset == log.segments[0].base_offset <= protect_from
    assert log.segments[0].next_offset > protect_from


def _fake_usage(free_after):
    Usage = namedtuple("Usage", "total used free")
    return lambda path: Usage(10**12, 0, free_after())


def free_after_deletions(monkeypatch, deletions: int, short: int, enough: int) -> None:
    """Simulate the free space: ``short`` until ``deletions`` segments were deleted, then ``enough``."""
    left = {"n": deletions}
    monkeypatch.setattr(shutil, "disk_usage", _fake_usage(lambda: enough if left["n"] <= 0 else short))
    original_delete = PartitionLog.delete_oldest_segment

    def counting_delete(self):
        left["n"] -= 1
        return original_delete(self)

    monkeypatch.setattr(PartitionLog, "delete_oldest_segment", counting_delete)


def test_disk_guard_deletes_low_priority_first_and_respects_protection(data_dir, monkeypatch):
    # The free-space figure is the one thing simulated here (a real full disk is in tests/faults).
    storage = Storage(data_dir, disk_guard=DiskGuard(min_free="10MB", critical_free="1MB"))
    low = fill(storage, "telemetry", 30, priority=1)
    high = fill(storage, "camera", 30, priority=9)
    storage.set_protected_offset("telemetry", 0, low.segments[1].base_offset)
    free_after_deletions(monkeypatch, 3, short=5_000_000, enough=20_000_000)
    deleted = storage.enforce_retention()
    # telemetry (priority 1) loses only its one unprotected segment, then camera pays
    assert [d.topic for d in deleted] == ["telemetry", "camera", "camera"]
    assert not any(d.unshipped for d in deleted)
    assert high.log_start_offset > 0


def test_disk_guard_critical_deletes_unshipped_and_counts_it(data_dir, monkeypatch):
    storage = Storage(data_dir, disk_guard=DiskGuard(min_free="10MB", critical_free="8MB"))
    log = fill(storage, "t", 30)
    storage.set_protected_offset("t", 0, 0)
    calls = {"n": 0}

    def free():
        calls["n"] += 1
        return 1_000_000 if calls["n"] < 3 else 50_000_000

    monkeypatch.setattr(shutil, "disk_usage", _fake_usage(free))
    deleted = storage.enforce_retention()
    assert len(deleted) == 2 and all(d.unshipped and d.reason == "disk_guard_critical" for d in deleted)
    assert storage.unshipped_deleted_bytes == sum(d.size_bytes for d in deleted)
    kept = DiskGuard(min_free="10MB", critical_free="8MB", delete_unshipped_when_critical=False)
    storage.disk_guard = kept
    calls["n"] = 0
    assert storage.enforce_retention() == []
    assert log.log_start_offset == deleted[-1].next_offset


def test_disk_guard_deletes_shipped_data_before_unshipped_whatever_the_priority(data_dir, monkeypatch, caplog):
    """Critically full: a low-priority topic the mirror has not shipped keeps its data while
    a high-priority topic still has shipped segments; unshipped deletions are reported."""
    caplog.set_level("INFO", logger="broker.retention")
    storage = Storage(data_dir, disk_guard=DiskGuard(min_free="10MB", critical_free="8MB"))
    fill(storage, "telemetry", 30, priority=1)  # unshipped
    shipped = fill(storage, "camera", 30, priority=9)
    storage.set_protected_offset("telemetry", 0, 0)  # mirrored, nothing shipped yet
    storage.set_protected_offset("camera", 0, shipped.segments[3].base_offset)  # 3 segments shipped
    free_after_deletions(monkeypatch, 5, short=1_000_000, enough=50_000_000)
    deleted = storage.enforce_retention()
    assert [(d.topic, d.unshipped) for d in deleted] == [("camera", False)] * 3 + [("telemetry", True)] * 2
    assert storage.unshipped_deleted_bytes == sum(d.size_bytes for d in deleted if d.unshipped)
    assert caplog.text.count("event=unshipped_deleted") == 2
    assert "topic=telemetry" in caplog.text.split("event=unshipped_deleted")[1]
