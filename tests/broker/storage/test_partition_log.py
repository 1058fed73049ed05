"""PartitionLog: appends, reads, rolls, time lookups, truncation, flush."""

from __future__ import annotations

import os

import pytest

from broker.errors import CorruptBatchError, OffsetOutOfRangeError, RecordTooLargeError
from broker.records import decode_batches, encode_batch
from broker.storage.partition_log import PartitionLog
from broker.topic_config import TopicConfig

from .helpers import make_batch, read_all, values_of


def open_log(path, **config) -> PartitionLog:
    return PartitionLog(path, "t", 0, TopicConfig(**config))


def test_offsets_are_dense_and_reads_return_whole_batches(tmp_path):
    log = open_log(tmp_path, index_interval_bytes=500)
    results = [log.append(make_batch(i * 10, 10)) for i in range(20)]
    assert [r.base_offset for r in results] == list(range(0, 200, 10))
    assert log.next_offset == 200 and log.log_start_offset == 0
    # a read from the middle of a batch starts with that whole batch
    recs = decode_batches(log.read(15, 1))
    assert recs[0].offset == 10 and len(recs) == 10
    assert values_of(read_all(log)) == list(range(200))
    assert len(log.read(200, 1000)) == 0
    with pytest.raises(OffsetOutOfRangeError, match=r"\[0, 200\)"):
        log.read(201, 1000)


def test_rolls_by_size_and_age_and_reads_across_segments(tmp_path):
    log = open_log(tmp_path, segment_bytes=5_000)
    for i in range(30):
        log.append(make_batch(i * 5, 5))
    assert len(log.segments) > 3
    assert values_of(read_all(log)) == list(range(150))
    aged = open_log(tmp_path / "aged", segment_age="1s")
    aged.append(make_batch(0, 1), append_time_ns=1_000_000_000)
    aged.append(make_batch(1, 1), append_time_ns=1_500_000_000)
    aged.append(make_batch(2, 1), append_time_ns=2_100_000_000)
    assert [s.base_offset for s in aged.segments] == [0, 2]


def test_closed_segments_are_durable_and_flush_advances_durable_offset(tmp_path):
    log = open_log(tmp_path, segment_bytes=2_000, flush="interval")
    log.append(make_batch(0, 5))
    assert log.durable_offset == 0 and log.dirty
    assert log.flush() == 5 and not log.dirty
    for i in range(1, 10):
        log.append(make_batch(i * 5, 5))
    assert log.durable_offset >= log.active.base_offset  # rolls fsync the closed segment
    batch_log = open_log(tmp_path / "b", flush="batch")
    result = batch_log.append(make_batch(0, 3))
    assert result.durable and batch_log.durable_offset == 3


def test_offset_for_time_with_clock_steps(tmp_path):
    log = open_log(tmp_path, index_interval_bytes=1, segment_bytes=3_000)
    stamps = [100, 200, 300, 150, 120, 400, 50, 500, 600, 550]  # clock steps back and forth
    for i, ts in enumerate(stamps):
        log.append(make_batch(i, 1, ts=ts, size=400))
    assert len(log.segments) > 1
    for target in [0, 100, 101, 250, 300, 301, 450, 500, 599, 600]:
        expected = next((i for i, _ in enumerate(stamps) if max(stamps[: i + 1]) >= target), None)
        assert log.offset_for_time(target) == expected, target
    assert log.offset_for_time(601) is None


def test_truncate_to_batch_boundary(tmp_path):
    log = open_log(tmp_path, segment_bytes=3_000, index_interval_bytes=200)
    for i in range(20):
        log.append(make_batch(i * 4, 4))
    log.truncate_to(40)
    assert log.next_offset == 40
    assert values_of(read_all(log)) == list(range(40))
    assert log.append(make_batch(40, 4)).base_offset == 40
    with pytest.raises(CorruptBatchError, match="not the start of a batch"):
        log.truncate_to(42)
    with pytest.raises(OffsetOutOfRangeError):
        log.truncate_to(1000)
    log.truncate_to(0)
    assert log.next_offset == 0 and read_all(log) == []


def test_refuses_bad_batches_without_touching_the_log(tmp_path):
    log = open_log(tmp_path, max_record_bytes=1000)
    log.append(make_batch(0, 2))
    size = log.size_bytes
    damaged = bytearray(make_batch(2, 2))
    damaged[-1] ^= 1
    with pytest.raises(CorruptBatchError, match="CRC"):
        log.append(damaged)
    with pytest.raises(CorruptBatchError, match="frame holds"):
        log.append(make_batch(2, 2) + b"extra")
    with pytest.raises(RecordTooLargeError):
        log.append(encode_batch([b"x" * (2 * 1024 * 1024)], 1))
    assert log.size_bytes == size and log.next_offset == 2
    assert os.path.getsize(log.active.log_path) == size


def test_zstd_batches_are_stored_as_sent(tmp_path):
    log = open_log(tmp_path, codec="zstd")
    batch = make_batch(0, 100, size=1000, codec="zstd")
    assert len(batch) < 100 * 1000 / 5
    log.append(batch)
    assert values_of(read_all(log)) == list(range(100))


def test_reopen_after_clean_close_continues(tmp_path):
    log = open_log(tmp_path, segment_bytes=4_000)
    for i in range(12):
        log.append(make_batch(i * 3, 3))
    log.close()
    again = open_log(tmp_path, segment_bytes=4_000)
    assert again.report.clean and not again.report.lost_anything
    assert again.next_offset == 36
    assert again.append(make_batch(36, 3)).base_offset == 36
    assert values_of(read_all(again)) == list(range(39))
    assert again.offset_for_time(20 * 1_000_000) == 20  # the record, not its batch (Kafka)
