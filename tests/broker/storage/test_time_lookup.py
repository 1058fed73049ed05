"""Time lookups at record precision (Kafka's rule: the first offset whose timestamp >= T),
whatever the batch layout, across clock steps and with far-future stamps flagged."""

from __future__ import annotations

import time

import pytest

from broker.records import encode_batch
from broker.storage.partition_log import PartitionLog
from broker.topic_config import TopicConfig

MS = 1_000_000
YEAR = 365 * 24 * 3600 * 10**9


def open_log(path, **config) -> PartitionLog:
    return PartitionLog(path, "t", 0, TopicConfig(**config))


def fill(log: PartitionLog, stamps: list[int], per_batch: int, codec: str = "none") -> None:
    for i in range(0, len(stamps), per_batch):
        chunk = stamps[i:i + per_batch]
        log.append(encode_batch([b"v%03d" % (i + j) for j in range(len(chunk))], chunk, codec=codec))


def kafka_answer(stamps: list[int], target: int, skip: set[int] = frozenset()) -> int | None:
    return next((i for i, ts in enumerate(stamps) if ts >= target and i not in skip), None)


def test_lookup_is_record_precise_and_independent_of_batching(tmp_path):
    base = time.time_ns()
    # 20 records, then the clock steps back 2 s for 20 records, then on (tests/faults/test_clock_steps.py)
    stamps = ([base + i * 50 * MS for i in range(20)] + [base - 1000 * MS + i * 50 * MS for i in range(20)]
              + [base + 2000 * MS + i * 50 * MS for i in range(20)])
    targets = [base - 5000 * MS, base, base + 500 * MS, base + 975 * MS, base + 1500 * MS, base + 2500 * MS]
    answers = []
    for layout, per_batch in enumerate([1, 7, 60]):
        log = open_log(tmp_path / str(layout), index_interval_bytes=1)
        fill(log, stamps, per_batch, codec="zstd" if per_batch == 7 else "none")
        answers.append([log.offset_for_time(t) for t in targets])
        log.close()
    # the first offset at or after each time, by the largest time so far: 20..39 never answer
    assert answers[0] == [0, 0, 10, 40, 40, 50]
    assert answers[1] == answers[0] and answers[2] == answers[0]
    assert all(kafka_answer(stamps, t) == a for t, a in zip(targets, answers[0], strict=True) if a not in (40, 50))


def test_far_future_stamp_is_flagged_counted_and_never_hides_later_records(tmp_path):
    now = time.time_ns()
    stamps = [now + i * MS for i in range(50)]
    stamps[20] = now + 10 * YEAR  # one bad clock reading
    log = open_log(tmp_path, index_interval_bytes=1, segment_bytes=1024)
    fill(log, stamps, 5)
    assert len(log.segments) > 1
    assert log.future_records == 1
    for target in [now, now + 20 * MS, now + 21 * MS, now + 35 * MS, now + 49 * MS]:
        assert log.offset_for_time(target) == kafka_answer(stamps, target, skip={20}), target
    assert log.offset_for_time(now + 50 * MS) is None  # nothing honest reaches it
    assert log.offset_for_time(now + 10 * YEAR) is None
    log.close()
    # the rule reads stored bytes only: rebuilt indexes give the same answers
    for seg in log.segments:
        seg.time_index.path.unlink()
    again = open_log(tmp_path, index_interval_bytes=1, segment_bytes=1024)
    assert again.report.rebuilt_indexes
    assert again.offset_for_time(now + 30 * MS) == 30
    assert again.future_records == 0  # counted once, when appended
    again.close()


def test_future_skew_is_configurable(tmp_path):
    now = time.time_ns()
    stamps = [now, now + 10 * 60 * 10**9, now + 2 * MS]  # 10 minutes ahead
    strict = open_log(tmp_path / "strict", max_future_skew="1m")
    fill(strict, stamps, 1)
    assert strict.future_records == 1 and strict.offset_for_time(now + MS) == 2
    lenient = open_log(tmp_path / "lenient")  # default 1 h: 10 minutes is a clock, not a lie
    fill(lenient, stamps, 1)
    assert lenient.future_records == 0 and lenient.offset_for_time(now + MS) == 1
    lenient.config = TopicConfig(max_future_skew="1m")  # reconfigured: from now on
    fill(lenient, [now + 20 * 60 * 10**9], 1)
    assert lenient.future_records == 1 and lenient.offset_for_time(now + 11 * 60 * 10**9) is None
    with pytest.raises(ValueError):
        TopicConfig(max_future_skew="soon")
