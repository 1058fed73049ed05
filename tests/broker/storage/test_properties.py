"""Property: any sequence of appends, reopens (clean or not) and reads returns exactly what
was appended, in order, once."""

from __future__ import annotations

import tempfile
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from broker.storage.partition_log import PartitionLog
from broker.topic_config import TopicConfig

from .helpers import make_batch, read_all, values_of

op = st.one_of(
    st.tuples(st.just("append"), st.integers(1, 30), st.integers(1, 900)),
    st.tuples(st.just("reopen_clean"), st.just(0), st.just(0)),
    st.tuples(st.just("reopen_crash"), st.just(0), st.just(0)),
    st.tuples(st.just("flush"), st.just(0), st.just(0)),
)


@settings(max_examples=40, deadline=None)
@given(st.lists(op, min_size=1, max_size=25), st.integers(1024, 5000), st.integers(1, 2000))
def test_appends_and_reopens_return_exactly_what_was_appended(ops, segment_bytes, interval):
    config = TopicConfig(segment_bytes=segment_bytes, index_interval_bytes=interval)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp)
        log = PartitionLog(path, "p", 0, config)
        expected = 0
        for kind, count, size in ops:
            if kind == "append":
                result = log.append(make_batch(expected, count, size=max(size, 12)))
                assert result.base_offset == expected
                expected += count
            elif kind == "flush":
                log.flush()
            else:
                point = log.durable_offset
                if kind == "reopen_clean":
                    log.close()
                else:
                    for seg in log.segments:
                        seg.close()
                log = PartitionLog(path, "p", 0, config, recovery_point=None if kind == "reopen_clean" else point)
                assert log.report.truncated_bytes == 0
            assert log.next_offset == expected
        assert values_of(read_all(log, max_bytes=777)) == list(range(expected))
        for seg in log.segments:
            seg.close()
