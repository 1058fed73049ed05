"""Segment owns its state and its recovery: the partition asks, never sets (issue 25)."""

from __future__ import annotations

import os

import pytest

from broker.storage.index_file import IndexFile
from broker.storage.offset_index import OffsetIndex
from broker.storage.partition_log import PartitionLog
from broker.storage.segment import Segment
from broker.storage.time_index import TimeIndex
from broker.topic_config import TopicConfig

from .helpers import make_batch


def test_segment_state_is_read_only_and_the_indexes_are_siblings(tmp_path):
    log = PartitionLog(tmp_path, "t", 0, TopicConfig(index_interval_bytes=1))
    log.append(make_batch(0, 3))
    seg = log.active
    for name in ("size", "next_offset", "max_timestamp", "first_append_ns", "closed", "offset_index"):
        with pytest.raises(AttributeError):
            setattr(seg, name, 0)
    assert (seg.next_offset, seg.size) == (3, os.path.getsize(seg.log_path))
    assert not issubclass(TimeIndex, OffsetIndex) and not issubclass(OffsetIndex, TimeIndex)
    assert issubclass(TimeIndex, IndexFile) and issubclass(OffsetIndex, IndexFile)
    log.close()


def test_open_closed_reports_what_it_cut_and_the_offsets_it_lost(tmp_path):
    log = PartitionLog(tmp_path, "t", 0, TopicConfig(index_interval_bytes=1))
    for i in range(4):
        log.append(make_batch(2 * i, 2))
    log.roll()
    log.append(make_batch(8, 2))
    first = log.segments[0]
    base, directory, size = first.base_offset, first.directory, first.size
    log.close()
    with open(first.log_path, "r+b") as f:  # the last of its 4 equal batches zero-filled
        f.seek(size - size // 4)
        f.write(b"\x00" * (size // 4))
    seg, found = Segment.open_closed(directory, base, 1, 10**12, next_base=8)
    assert found.truncated_bytes == size // 4 and found.dropped == (6, 8) and found.reasons
    assert seg.closed and seg.next_offset == 6 and seg.size == os.path.getsize(seg.log_path)
    seg.close()
