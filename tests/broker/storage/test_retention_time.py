"""Which time retention by age judges: the broker's append time of a segment's newest
batch. Not the records' capture times (a capture recorded years ago and played in today
is new data) and not the file's mtime (a copy or restore resets it)."""

from __future__ import annotations

import os
import time

from broker.storage import Storage
from broker.topic_config import TopicConfig

from .helpers import make_batch, read_all, values_of

RECORDED_2018_NS = 1_524_177_960_000_000_000  # car-detection.mp4's creation_time
HOUR_NS = 3_600 * 10**9


def _fill(storage, batches, *, ts=None, append_time_ns=None):
    storage.create_topic("camera.old", TopicConfig(segment_bytes=2_000, retention_age="1h"))
    log = storage.log("camera.old", 0)
    for i in range(batches):
        log.append(make_batch(i * 4, 4, size=100, ts=ts), append_time_ns=append_time_ns)
    return log


def test_a_capture_recorded_years_ago_is_not_deleted_on_arrival(data_dir):
    storage = Storage(data_dir)
    log = _fill(storage, 40, ts=RECORDED_2018_NS)
    assert len(log.segments) > 3
    assert storage.enforce_retention() == []
    storage.close()
    reopened = Storage(data_dir)  # closed segments read back from disk judge the same way
    try:
        assert reopened.enforce_retention() == []
        assert values_of(read_all(reopened.log("camera.old", 0))) == list(range(160))
        # ... and it goes once it has been here longer than the retention
        deleted = reopened.enforce_retention(now_ns=time.time_ns() + 2 * HOUR_NS)
        assert deleted and {d.reason for d in deleted} == {"retention_age"}
        assert len(reopened.log("camera.old", 0).segments) == 1  # all but the active one
    finally:
        reopened.close()


def test_the_file_time_does_not_count(data_dir):
    storage = Storage(data_dir)
    log = _fill(storage, 40, append_time_ns=time.time_ns() - 2 * HOUR_NS)
    closed = log.segments[:-1]
    for seg in log.segments:  # restored from a backup: the files look brand new
        os.utime(seg.log_path, ns=(time.time_ns(), time.time_ns()))
    assert [d.base_offset for d in storage.enforce_retention()] == [s.base_offset for s in closed]
    storage.close()

    other = data_dir.parent / "other"
    other.mkdir()
    storage = Storage(other)
    log = _fill(storage, 40)  # appended now, but the files look ancient (a clock fixed later, a copy)
    for seg in log.segments:
        os.utime(seg.log_path, ns=(0, 0))
    assert storage.enforce_retention() == []
    storage.close()
