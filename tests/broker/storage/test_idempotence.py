"""Idempotent produce in the storage engine: a retried batch (same producer id, epoch and
sequences) is acknowledged with its original offsets and never written twice; a gap is
OutOfOrderSequenceError; an old epoch is fenced; the state survives a restart, clean
(snapshot) or not (snapshot plus the log tail), and a lost snapshot (whole-log scan)."""

from __future__ import annotations

import os

import pytest

from broker.errors import OutOfOrderSequenceError, ProducerFencedError
from broker.records import encode_batch
from broker.storage.partition_log import PartitionLog
from broker.storage.producer_state import SNAPSHOT_FILE, ProducerIdAllocator
from broker.topic_config import TopicConfig


def batch(seq: int, count: int = 2, *, pid: int = 7, epoch: int = 0, tag: str = "") -> bytes:
    return encode_batch([f"{tag}{seq + i}".encode() for i in range(count)], 1_000_000,
                        producer_id=pid, producer_epoch=epoch, base_sequence=seq)


def config() -> TopicConfig:
    return TopicConfig(segment_bytes=1024, index_interval_bytes=64, flush="os")


def test_a_retry_is_acknowledged_with_its_offsets_and_never_written_twice(tmp_path):
    log = PartitionLog(tmp_path, "t", 0, config())
    first = log.append(batch(0, 3))
    second = log.append(batch(3, 2))
    size = log.size_bytes
    again = log.append(batch(0, 3))
    assert (again.base_offset, again.last_offset, again.duplicate) == (0, 2, True)
    assert (log.append(batch(3, 2)).base_offset, log.next_offset, log.size_bytes) == (3, 5, size)
    assert (first.duplicate, second.duplicate) == (False, False)
    with pytest.raises(OutOfOrderSequenceError, match="sent sequence 9, expected 5"):
        log.append(batch(9))
    with pytest.raises(OutOfOrderSequenceError):
        log.append(batch(1, 2))  # overlaps what was written, matches no batch
    assert log.next_offset == 5 and log.size_bytes == size
    # other producers and non-idempotent batches are independent
    assert log.append(batch(40, pid=8)).base_offset == 5  # unknown producer: any first sequence
    assert log.append(encode_batch([b"plain"], 1)).base_offset == 7
    assert log.append(batch(5)).base_offset == 8


def test_epochs_fence_old_producers_and_restart_sequences(tmp_path):
    log = PartitionLog(tmp_path, "t", 0, config())
    log.append(batch(0, epoch=1))
    with pytest.raises(ProducerFencedError):
        log.append(batch(2, epoch=0))
    with pytest.raises(OutOfOrderSequenceError, match="starts at sequence 2"):
        log.append(batch(2, epoch=2))
    assert log.append(batch(0, epoch=2)).base_offset == 2
    assert log.append(batch(0, epoch=2)).duplicate


@pytest.mark.parametrize("restart", ["clean", "crash", "snapshot lost"])
def test_producer_state_survives_a_restart(tmp_path, restart):
    log = PartitionLog(tmp_path, "t", 0, config())
    seq = 0
    for _ in range(30):  # several segments: snapshots at rolls, a tail after the last one
        log.append(batch(seq, 3, tag="x" * 40))
        seq += 3
    assert len(log.segments) > 2
    if restart == "clean":
        log.close()
    else:
        log.flush()  # a crash: no clean close, the snapshot is the last roll's
        if restart == "snapshot lost":
            os.unlink(tmp_path / SNAPSHOT_FILE)
    again = PartitionLog(tmp_path, "t", 0, config())
    retry = again.append(batch(seq - 3, 3, tag="x" * 40))
    assert (retry.duplicate, retry.base_offset, again.next_offset) == (True, 87, 90)
    with pytest.raises(OutOfOrderSequenceError):
        again.append(batch(seq + 1))
    assert again.append(batch(seq)).base_offset == 90


def test_producer_ids_are_never_reused_across_restarts(tmp_path):
    first = ProducerIdAllocator(tmp_path)
    ids = [first.allocate() for _ in range(3)]
    second = ProducerIdAllocator(tmp_path)  # a restart (or crash) after handing those out
    assert second.allocate() not in ids and len(set(ids)) == 3


def test_a_snapshot_that_cannot_be_written_does_not_fail_the_append(tmp_path, monkeypatch):
    import errno

    from broker.storage import producer_state

    log = PartitionLog(tmp_path, "t", 0, config())
    log.append(batch(0, 3, tag="x" * 40))

    def full_disk(path, data):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(producer_state, "atomic_write", full_disk)
    seq = 3
    for _ in range(30):  # rolls try to snapshot
        log.append(batch(seq, 3, tag="x" * 40))
        seq += 3
    assert len(log.segments) > 2 and not (tmp_path / SNAPSHOT_FILE).exists()
    monkeypatch.undo()
    log.flush()
    again = PartitionLog(tmp_path, "t", 0, config())  # whole-log scan
    assert again.append(batch(seq - 3, 3, tag="x" * 40)).duplicate
