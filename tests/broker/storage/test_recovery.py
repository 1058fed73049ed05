"""Recovery with real faults: SIGKILLed writers, torn tails, garbage, bit flips, lost indexes."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time

import pytest

from broker.errors import CorruptBatchError
from broker.records import decode_batches
from broker.storage import Storage
from broker.storage.layout import CLEAN_SHUTDOWN_FILE
from broker.storage.partition_log import PartitionLog
from broker.topic_config import TopicConfig

from .helpers import make_batch, read_all, values_of

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))


def filled_log(path, batches=30, per_batch=5, **config) -> PartitionLog:
    config = {"segment_bytes": 8_000, "index_interval_bytes": 700, **config}
    log = PartitionLog(path, "t", 0, TopicConfig(**config))
    for i in range(batches):
        log.append(make_batch(i * per_batch, per_batch, size=150))
    return log


def reopen(path, **config) -> PartitionLog:
    config = {"segment_bytes": 8_000, "index_interval_bytes": 700, **config}
    return PartitionLog(path, "t", 0, TopicConfig(**config))


def test_clean_close_skips_the_scan(tmp_path):
    filled_log(tmp_path).close()
    assert (tmp_path / CLEAN_SHUTDOWN_FILE).exists()
    log = reopen(tmp_path)
    assert log.report.clean and log.report.truncated_bytes == 0
    # the marker is consumed at open: a crash from now on is not mistaken for a clean stop
    assert not (tmp_path / CLEAN_SHUTDOWN_FILE).exists()


@pytest.mark.parametrize("garbage", [b"\x00" * 40, os.urandom(100), b"EDGB" * 30], ids=["zeros", "random", "magic"])
def test_garbage_tail_is_cut_and_reported(tmp_path, garbage, caplog):
    log = filled_log(tmp_path)
    log.flush()
    path = log.active.log_path
    with open(path, "ab") as f:
        f.write(garbage)
    with caplog.at_level("WARNING"):
        again = reopen(tmp_path)
    assert again.report.truncated_bytes == len(garbage)
    assert "partition_recovered" in caplog.text and "truncated_bytes=" in caplog.text
    assert values_of(read_all(again)) == list(range(150))
    assert again.append(make_batch(150, 1)).base_offset == 150


def test_batch_torn_mid_write_is_cut(tmp_path):
    log = filled_log(tmp_path)
    path = log.active.log_path
    size = os.path.getsize(path)
    with open(path, "ab") as f:
        f.write(make_batch(150, 5)[:-17])
    again = reopen(tmp_path)
    assert again.next_offset == 150 and os.path.getsize(path) == size
    assert "needs" in again.report.reasons[0] or "truncated" in again.report.reasons[0]


def test_truncation_inside_last_batch_keeps_the_batches_before(tmp_path):
    log = filled_log(tmp_path)
    path = log.active.log_path
    last_base = log.active.base_offset
    os.truncate(path, os.path.getsize(path) - 3)
    again = reopen(tmp_path)
    assert again.next_offset == 145
    assert values_of(read_all(again)) == list(range(145))
    assert again.active.base_offset == last_base


def test_missing_and_damaged_indexes_are_rebuilt(tmp_path):
    log = filled_log(tmp_path)
    log.close()
    first, second = log.segments[0], log.segments[1]
    first.offset_index.path.unlink()
    second.time_index.path.write_bytes(b"\x01\x02\x03")  # not a multiple of 12
    log.active.offset_index.path.write_bytes(os.urandom(64))
    again = reopen(tmp_path)
    assert len(again.report.rebuilt_indexes) == 3
    assert values_of(read_all(again)) == list(range(150))
    assert again.offset_for_time(77 * 1_000_000) == 77  # the record, not its batch (Kafka)


def test_bit_flip_in_old_segment_fails_reads_loudly(tmp_path):
    log = filled_log(tmp_path)
    log.close()
    path = log.segments[0].log_path
    data = bytearray(path.read_bytes())
    data[200] ^= 0x40  # inside the first batch's records
    path.write_bytes(bytes(data))
    again = reopen(tmp_path)  # clean marker: old segments are not rescanned at open
    with pytest.raises(CorruptBatchError, match="CRC"):
        decode_batches(again.read(0, 1 << 20))
    # later segments remain readable
    start = again.segments[1].base_offset
    assert values_of(decode_batches(again.read(start, 1 << 20)))[0] == start


def test_unclean_restart_scans_only_above_the_recovery_point(tmp_path):
    log = filled_log(tmp_path, batches=60, segment_bytes=1 << 20)
    durable = log.flush()
    for i in range(60, 64):
        log.append(make_batch(i * 5, 5, size=150))
    # no close: as after SIGKILL
    again = PartitionLog(tmp_path, "t", 0, TopicConfig(segment_bytes=1 << 20, index_interval_bytes=700),
                         recovery_point=durable)
    assert not again.report.clean
    assert again.report.scanned_bytes < again.size_bytes / 4
    assert values_of(read_all(again)) == list(range(320))


def _run_writer_and_kill(data_dir, flush, seconds):
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.broker.storage.crash_writer", str(data_dir), flush],
        stdout=subprocess.PIPE, cwd=REPO_ROOT, text=True,
    )
    # the kill timer starts at the first acknowledged batch: on a loaded machine the
    # writer's start-up alone can take longer than the random delay
    first = proc.stdout.readline()
    time.sleep(seconds)
    proc.send_signal(signal.SIGKILL)
    out, _ = proc.communicate()
    out = first + out
    acked: dict[int, list[tuple[int, int]]] = {0: [], 1: []}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 3:
            p, base, count = map(int, parts)
            acked[p].append((base, count))
    return acked


@pytest.mark.parametrize("flush", ["batch", "os"])
def test_sigkill_at_random_points_loses_no_acknowledged_batch(data_dir, flush):
    rng = random.Random(7)
    all_acked: dict[int, int] = {0: 0, 1: 0}
    for _round in range(4):
        acked = _run_writer_and_kill(data_dir, flush, rng.uniform(0.6, 1.5))
        storage = Storage(data_dir)
        for partition in (0, 1):
            log = storage.log("crash", partition)
            records = read_all(log)
            # every record is in order, exactly once, uncorrupted (CRC-checked by decode)
            assert [r.offset for r in records] == list(range(log.next_offset))
            assert values_of(records) == list(range(log.next_offset))
            if acked[partition]:
                base, count = acked[partition][-1]
                assert log.next_offset >= base + count
                all_acked[partition] = base + count
        storage.close()
    print(f"storage SIGKILL (flush={flush}): 4 rounds, {sum(all_acked.values())} acknowledged records, 0 lost")
    assert all_acked[0] > 0 and all_acked[1] > 0
