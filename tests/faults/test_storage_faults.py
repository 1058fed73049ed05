"""Storage faults below the broker: ENOSPC while indexing, zero-filled sealed tails, a flipped
bit in a base offset, and the order in which a roll makes a segment durable.

Each test drives the storage engine in process on real files (the ENOSPC one on a real
small tmpfs) and checks the invariant: every batch whose append returned is readable
under its own offset after the fault and after a reopen; damage is reported, never served.
"""

from __future__ import annotations

import errno
import os
import random
import shutil

import pytest

from broker import records as rec
from broker.errors import CorruptBatchError, DiskFullError
from broker.storage import Storage
from broker.storage.partition_log import PartitionLog
from broker.storage.segment import Segment
from broker.storage.time_index import TimeIndex
from broker.topic_config import TopicConfig
from tests.broker.storage.helpers import make_batch, read_all, values_of

BATCH_RECORDS = 1
RECORD_SIZE = 100  # one batch: 52 header + 20 table + 100 value = 172 bytes


def fill_until_enospc(path) -> int:
    """Write ``path`` until the filesystem refuses even one byte; return bytes written."""
    written = 0
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        for chunk in (1 << 20, 1 << 16, 4096, 512, 64, 8, 1):
            block = b"\xff" * chunk
            while True:
                try:
                    n = os.write(fd, block)
                except OSError as exc:
                    if exc.errno != errno.ENOSPC:
                        raise
                    break
                written += n
                if n < chunk:
                    break
    finally:
        os.close(fd)
    return written


def test_enospc_on_the_index_append_loses_no_acknowledged_batch(small_disk):
    """The log write fits in the log's last page, the index entry needs a new page: the
    append must fail whole (DiskFullError), and everything acknowledged stays readable."""
    data = small_disk / "data"
    storage = Storage(data)
    # an index entry per batch; one timestamp, so the time index stays at one entry
    storage.create_topic("t", TopicConfig(index_interval_bytes=1, flush="batch"))
    log = storage.log("t", 0)
    acked = []
    # 512 entries of 8 bytes fill the offset index's first 4 KiB page exactly; the log,
    # at 512 x 172 bytes, ends mid-page with room for one more batch
    for i in range(512):
        acked.append(log.append(make_batch(i, BATCH_RECORDS, size=RECORD_SIZE, ts=1)).base_offset)
    assert os.path.getsize(log.active.offset_index.path) == 4096
    assert os.path.getsize(log.active.log_path) % 4096 + 172 <= 4096
    filler = small_disk / "filler"
    assert fill_until_enospc(filler) > 0
    log_size_before = os.path.getsize(log.active.log_path)
    refused = 0
    for i in range(512, 520):
        try:
            acked.append(log.append(make_batch(i, BATCH_RECORDS, size=RECORD_SIZE, ts=1)).base_offset)
        except DiskFullError as exc:
            assert "disk full" in str(exc)
            refused += 1
    assert refused == 8, "every append on the full disk is refused as disk full"
    assert os.path.getsize(log.active.log_path) == log_size_before, "a refused batch left bytes behind"
    assert log.next_offset == 512
    filler.unlink()
    for i in range(512, 540):
        acked.append(log.append(make_batch(i, BATCH_RECORDS, size=RECORD_SIZE, ts=1)).base_offset)
    assert acked == list(range(540))
    assert values_of(read_all(log)) == list(range(540))
    # a crash now (no clean close): recovery scans and keeps every acknowledged batch
    storage.checkpoint_recovery_points()
    again = PartitionLog(log.directory, "t", 0, TopicConfig(index_interval_bytes=1))
    assert again.report.truncated_bytes == 0
    assert values_of(read_all(again)) == list(range(540))


def test_a_failed_time_index_write_undoes_the_offset_index_entry_too(tmp_path, monkeypatch):
    """Fault injection on the second of the two index writes: both indexes and the log are
    back where they were, and the next append takes the same offset and position."""
    log = PartitionLog(tmp_path, "t", 0, TopicConfig(index_interval_bytes=1))
    for i in range(5):
        log.append(make_batch(2 * i, 2, ts=i * 1_000_000))  # ms apart: batch maxima are ms (FORMAT.md)
    seg = log.active
    sizes = (seg.size, len(seg.offset_index), len(seg.time_index), os.path.getsize(seg.log_path),
             os.path.getsize(seg.offset_index.path), os.path.getsize(seg.time_index.path))
    original = TimeIndex.append_time

    def full_disk(self, timestamp, offset):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(TimeIndex, "append_time", full_disk)
    with pytest.raises(DiskFullError):
        log.append(make_batch(10, 2, ts=100_000_000))
    assert (seg.size, len(seg.offset_index), len(seg.time_index), os.path.getsize(seg.log_path),
            os.path.getsize(seg.offset_index.path), os.path.getsize(seg.time_index.path)) == sizes
    monkeypatch.setattr(TimeIndex, "append_time", original)
    assert log.append(make_batch(10, 2, ts=100_000_000)).base_offset == 10
    assert values_of(read_all(log)) == list(range(12))
    log.close()
    again = PartitionLog(tmp_path, "t", 0, TopicConfig(index_interval_bytes=1))
    assert values_of(read_all(again)) == list(range(12))
    assert again.offset_for_time(100_000_000) == 10


def sealed_log(path, batches=40) -> PartitionLog:
    log = PartitionLog(path, "t", 0, TopicConfig(segment_bytes=2_000, index_interval_bytes=1_000))
    for i in range(batches):
        log.append(make_batch(i * 2, 2, size=150))
    return log


def test_zero_filled_tail_of_a_sealed_segment_is_cut_and_reported(tmp_path, caplog):
    log = sealed_log(tmp_path)
    first = log.segments[0]
    sealed_next = first.next_offset
    log.close()
    # the page cache lost the segment's last batch: it reads back as zeros
    size = os.path.getsize(first.log_path)
    last = max(p for p, _h in first.scan(0, size))
    with open(first.log_path, "r+b") as f:
        f.seek(last)
        f.write(b"\x00" * (size - last))
    with caplog.at_level("WARNING"):
        again = PartitionLog(tmp_path, "t", 0, TopicConfig(segment_bytes=2_000, index_interval_bytes=1_000))
    report = again.report
    assert report.truncated_bytes == size - last
    assert report.dropped == [(sealed_next - 2, sealed_next)]
    assert f"dropped_offsets={sealed_next - 2}-{sealed_next - 1}" in caplog.text
    assert os.path.getsize(first.log_path) == last
    # reads skip the reported gap instead of spinning on a zero length
    values = values_of(read_all(again))
    assert values == [v for v in range(80) if v not in (sealed_next - 2, sealed_next - 1)]


def test_a_read_never_loops_on_a_zero_length_after_a_good_batch(tmp_path):
    """Zeros appear behind a good batch while the broker runs (damage after the open): the
    read serves the good batches and stops; the next read names the damage."""
    log = sealed_log(tmp_path)
    first = log.segments[0]
    size = first.size
    last = max(p for p, _h in first.scan(0, size))
    with open(first.log_path, "r+b") as f:
        f.seek(last)
        f.write(b"\x00" * (size - last))
    served = log.read(0, 1 << 20)
    headers = [h for h, _b in rec.iter_batches(served)]
    assert headers[-1].next_offset == first.next_offset - 2
    with pytest.raises(CorruptBatchError, match=r"t/0: corrupt batch at offset") as info:
        log.read(headers[-1].next_offset, 1 << 20)
    assert info.value.resume_offset == first.next_offset


def test_a_flipped_bit_in_a_base_offset_is_reported_never_served(tmp_path, caplog):
    log = sealed_log(tmp_path)
    seg = log.segments[1]
    positions = [p for p, _h in seg.scan(0, seg.size)]
    victim = positions[2]  # not at an index entry: found by continuity, not by the index
    expected = seg.base_offset + 4
    with open(seg.log_path, "r+b") as f:
        f.seek(victim)
        f.write((expected ^ (1 << 3)).to_bytes(8, "little"))
    with caplog.at_level("ERROR"):
        with pytest.raises(CorruptBatchError) as info:
            read_all(log)
        with pytest.raises(CorruptBatchError):
            log.read(expected, 1 << 20)  # asked again: still refused, reported once
    assert f"corrupt batch at offset {expected}" in str(info.value)
    assert "expected" in str(info.value)
    assert info.value.resume_offset is not None and info.value.resume_offset > expected
    assert log.corrupt_batches == 1
    assert caplog.text.count("event=corrupt_batch") == 1
    # every record that is served carries its own offset; the damaged batch is skipped only
    # on purpose, at the resume offset the error names
    before = rec.decode_batches(log.read(0, 1 << 20))
    assert [r.offset for r in before] == values_of(before)
    after = rec.decode_batches(log.read(info.value.resume_offset, 1 << 20))
    assert [r.offset for r in after] == values_of(after) and after[0].offset == info.value.resume_offset


def test_storage_counts_corrupt_batches_for_the_broker_stats(tmp_path):
    storage = Storage(tmp_path)
    storage.create_topic("t", TopicConfig(segment_bytes=2_000))
    log = storage.log("t", 0)
    for i in range(20):
        log.append(make_batch(i, 1, size=150))
    seg = log.segments[0]
    with open(seg.log_path, "r+b") as f:
        f.write((1 << 40).to_bytes(8, "little"))
    with pytest.raises(CorruptBatchError):
        log.read(0, 1 << 20)
    assert storage.corrupt_batch_count == 1


def test_roll_makes_the_sealed_segment_durable_before_the_next_exists(tmp_path, monkeypatch):
    log = sealed_log(tmp_path, batches=3)
    events = []
    real_fsync, real_create = os.fsync, Segment.create.__func__

    def fsync(fd):
        events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))
        return real_fsync(fd)

    def create(cls, directory, base_offset, interval):
        events.append(("create", base_offset))
        return real_create(cls, directory, base_offset, interval)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(Segment, "create", classmethod(create))
    old = log.active
    log.roll()
    created = events.index(("create", old.next_offset))
    synced = {path for kind, path in events[:created] if kind == "fsync"}
    assert {str(old.log_path), str(old.offset_index.path), str(old.time_index.path)} <= synced


def test_a_roll_that_cannot_create_the_next_segment_keeps_appending_to_the_old(tmp_path, monkeypatch):
    log = sealed_log(tmp_path, batches=3)
    old = log.active

    def no_space(cls, directory, base_offset, interval):
        raise DiskFullError("disk full while creating a segment: nothing was written")

    monkeypatch.setattr(Segment, "create", classmethod(no_space))
    with pytest.raises(DiskFullError):
        log.roll()
    monkeypatch.undo()
    assert log.active is old and not old.closed
    assert log.append(make_batch(6, 2, size=150)).base_offset == 6
    assert values_of(read_all(log)) == list(range(8))


ROUNDS = int(os.environ.get("EDGE_FAULT_ROUNDS", "4"))


def test_enospc_rounds_on_a_small_tmpfs(small_disk):
    """Random batch sizes, index spacing and segment sizes; three times the disk fills at a
    random point, appends go on until refused five times and space comes back; then a
    crash (no clean close): every acknowledged record is read back, in order, once."""
    rng = random.Random(int(os.environ.get("EDGE_FAULT_SEED", "7")))
    totals = {"acked": 0, "refused_log": 0, "refused_index": 0, "lost": 0}
    for round_no in range(ROUNDS):
        directory = small_disk / f"round-{round_no}"
        config = TopicConfig(index_interval_bytes=rng.choice([1, 512, 4096]),
                             segment_bytes=rng.choice([64 * 1024, 256 * 1024, 1024 * 1024]), flush="batch")
        log = PartitionLog(directory, "t", 0, config)
        size = rng.choice([rng.randint(60, 300), rng.randint(300, 6_000)])
        next_value = 0

        def append_one(log: PartitionLog = log, size: int = size) -> None:
            nonlocal next_value
            count = rng.randint(1, 4)
            result = log.append(make_batch(next_value, count, size=size, ts=rng.randint(0, 10**6)))
            assert result.base_offset == next_value
            next_value += count

        for _ in range(rng.randint(1, 300)):
            append_one()
        filler = small_disk / "filler"
        for _cycle in range(3):  # the disk fills, appends are refused, space comes back
            fill_until_enospc(filler)
            refusals = 0
            while refusals < 5:
                try:
                    append_one()
                except DiskFullError as exc:
                    refusals += 1
                    totals["refused_index" if "indexing" in str(exc) else "refused_log"] += 1
                    assert os.path.getsize(log.active.log_path) == log.active.size
            filler.unlink()
            for _ in range(rng.randint(1, 600)):
                append_one()
        again = PartitionLog(directory, "t", 0, config)  # the writer "crashed": no close
        values = values_of(read_all(again))
        totals["acked"] += next_value
        totals["lost"] += next_value - len(set(values) & set(range(next_value)))
        assert values == list(range(next_value))
        again.close()
        log.close(clean=False)
        shutil.rmtree(directory)
    print(f"ENOSPC rounds: {ROUNDS}, {totals}")
    assert totals["lost"] == 0 and totals["refused_log"] + totals["refused_index"] == 15 * ROUNDS


def test_a_roll_that_cannot_seal_the_old_segment_is_a_typed_error_and_appends_go_on(tmp_path, monkeypatch):
    log = sealed_log(tmp_path, batches=3)
    old = log.active
    original = TimeIndex.append_time

    def full_disk(self, timestamp, offset):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(TimeIndex, "append_time", full_disk)
    with pytest.raises(DiskFullError, match="sealing"):
        log.roll()
    monkeypatch.setattr(TimeIndex, "append_time", original)
    assert log.active is old and not old.closed and len(log.segments) == 1
    assert log.append(make_batch(6, 2, size=150)).base_offset == 6
    assert values_of(read_all(log)) == list(range(8))
