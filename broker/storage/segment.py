"""One segment: a ``.log`` file of record batches back to back, plus its two sparse indexes.

It owns its three files, their recovery (``open_closed``, ``open_active``) and invariants:
its state changes only through its own methods; the partition asks (Kafka's LogSegment).

Guarantees:
- An append is all or nothing: a failed or partial write of the batch, or a failed write
  of its index entries, cuts the log (``ftruncate``) and the indexes back to what they
  held before and raises (DiskFullError for ENOSPC); the segment's size and next offset
  only move once the batch is written and indexed, so an error never leaves a batch on
  disk that the next append would shadow. (A crash mid-write can leave a half batch:
  ``open_active`` cuts it.)
- The broker-assigned base offset and partition leader epoch are written with
  ``os.pwritev`` as a new 16-byte prefix in front of the producer's bytes (for a
  LogAppendTime topic the whole 61-byte header, re-checksummed as Kafka does): the payload
  is never copied or decoded.
- Reads return whole batches exactly as stored, found via the offset index and a short
  scan of batch headers (at most ``index_interval_bytes``) that checks every header and
  the offset chain (``batch_chain``): CorruptBatchError, never a batch under a wrong offset.
- Only the active (last) segment is written. A closed segment has been fsynced, its time
  index ends with its maximum timestamp, and its indexes are mmapped read-only.
  ``check_tail`` verifies cheaply that a closed segment's header chain from its last index
  entry ends exactly at the file end with the expected next offset.
- Time that lies (Kafka's message.timestamp.after.max.ms, but flagged instead of refused):
  a record stamped more than ``future_skew_ns`` after its batch's append time is
  "future-stamped". It is stored and served like any other, but never raises the running
  maximum of the time index and is never the answer of a time lookup, so one bad clock
  cannot hide every later record from lookups. The rule reads only stored bytes (capture
  and append times), so a rebuilt index applies it identically. Only a batch whose header
  maximum breaks the rule is decoded (rare); every other batch is indexed from its header.
- ``record_at_time(T)`` is Kafka's rule: the first offset whose (not future-stamped)
  timestamp is >= T, at record precision, whatever the batch layout.

Not thread-safe: the broker's single event loop owns every segment.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from .. import records as rec
from ..errors import CorruptBatchError, CorruptIndexError, DiskFullError, StorageError
from .batch_chain import scan_batches
from .layout import LOG_SUFFIX, OFFSET_INDEX_SUFFIX, TIME_INDEX_SUFFIX, segment_path
from .offset_index import OffsetIndex
from .time_index import TimeIndex

if TYPE_CHECKING:
    from typing_extensions import Buffer  # collections.abc.Buffer from Python 3.12

DEFAULT_FUTURE_SKEW_NS = 3600 * 10**9  # TopicConfig.max_future_skew's default


# what an append may have to undo: index entry counts, running maximum, bytes since the
# last index entry, last batch offset, next offset, future-stamped records
_IndexState = tuple[int, int, int | None, int, int, int, int]


@dataclass(slots=True)
class SegmentRecovery:
    """What opening one segment found and did (the partition adds it to its report)."""

    scanned_bytes: int = 0
    truncated_bytes: int = 0
    rebuilt_index: bool = False
    reasons: list[str] = field(default_factory=list)
    dropped: tuple[int, int] | None = None  # [first, next) offsets that became unreadable


class Segment:
    def __init__(self, directory: Path, base_offset: int, index_interval_bytes: int,
                 future_skew_ns: int = DEFAULT_FUTURE_SKEW_NS):
        self.directory = directory
        self.base_offset = base_offset
        self._index_interval_bytes = max(1, index_interval_bytes)
        self.log_path = segment_path(directory, base_offset, LOG_SUFFIX)
        self._offset_index = OffsetIndex(segment_path(directory, base_offset, OFFSET_INDEX_SUFFIX), base_offset)
        self._time_index = TimeIndex(segment_path(directory, base_offset, TIME_INDEX_SUFFIX), base_offset)
        self._fd: int | None = None
        self._size = 0
        self._next_offset = base_offset
        self._last_batch_offset = base_offset
        self._max_timestamp: int | None = None
        self._first_append_ns: int | None = None
        self._last_append_ns: int | None = None  # cached; see last_append_ns()
        self._bytes_since_index_entry = 0
        self._read_hint: tuple[int, int] | None = None  # (offset, position) of a batch start
        self._closed = False
        self._future_skew_ns = future_skew_ns  # the topic's max_future_skew (set_future_skew)
        self._future_records = 0  # future-stamped records appended since open (not rescanned)

    # -- files ---------------------------------------------------------------------------

    # -- what others may read ---------------------------------------------------------

    @property
    def size(self) -> int:
        """Bytes of whole batches in the log (the file may be longer only mid-recovery)."""
        return self._size

    @property
    def next_offset(self) -> int:
        return self._next_offset

    @property
    def max_timestamp(self) -> int | None:
        """The running maximum capture time (ns), future-stamped records left out."""
        return self._max_timestamp

    @property
    def first_append_ns(self) -> int | None:
        return self._first_append_ns

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def future_records(self) -> int:
        """Future-stamped records appended since open (not rescanned)."""
        return self._future_records

    @property
    def offset_index(self) -> OffsetIndex:
        return self._offset_index

    @property
    def time_index(self) -> TimeIndex:
        return self._time_index

    def set_future_skew(self, future_skew_ns: int) -> None:
        """A reconfigured max_future_skew applies to the next appends and lookups."""
        self._future_skew_ns = future_skew_ns

    def set_index_interval(self, index_interval_bytes: int) -> None:
        self._index_interval_bytes = max(1, index_interval_bytes)

    # -- files ---------------------------------------------------------------------------

    @classmethod
    def create(cls, directory: Path, base_offset: int, index_interval_bytes: int) -> Segment:
        """A new, empty segment (its files created; the log exclusively)."""
        seg = cls(directory, base_offset, index_interval_bytes)
        try:
            seg._fd = os.open(seg.log_path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o640)
            seg._offset_index.reset()
            seg._time_index.reset()
        except OSError as exc:
            seg.delete()
            raise _storage_error(exc, f"creating segment {seg.log_path}") from None
        return seg

    @property
    def fd(self) -> int:
        if self._fd is None:
            self._fd = os.open(self.log_path, os.O_RDWR)
        return self._fd

    def file_size(self) -> int:
        return os.fstat(self.fd).st_size

    # -- recovery (see partition_log's docstring for the tiers) --------------------------

    @classmethod
    def open_closed(cls, directory: Path, base_offset: int, index_interval_bytes: int, future_skew_ns: int,
                    next_base: int) -> tuple[Segment, SegmentRecovery]:
        """Open a closed segment, whose successor starts at ``next_base``. Tier 1: the
        indexes' structure and the header chain from the last index entry must end exactly
        at the file end with ``next_base``. Otherwise tier 2: rebuild the indexes from the
        log with every CRC checked and cut the log at its last valid batch."""
        seg = cls(directory, base_offset, index_interval_bytes, future_skew_ns)
        found = SegmentRecovery()
        seg._size = os.path.getsize(seg.log_path)
        seg._next_offset = next_base
        try:
            seg._offset_index.check_closed(seg._size, next_base)
            seg._time_index.check_closed(seg._size)
            seg._offset_index.map_readonly()
            seg._time_index.map_readonly()
            damage = seg.check_tail(next_base)
            if not damage:
                seg._max_timestamp = seg._time_index.last_timestamp()
                seg._closed = True
                return seg, found
            found.reasons.append(damage)
        except CorruptIndexError as exc:
            found.rebuilt_index = True
            found.reasons.append(str(exc))
        seg._offset_index.reset()
        seg._time_index.reset()
        cut, _kept, reason = seg._rebuild_tail(0, validate_crc=True)
        found.scanned_bytes = seg._size + cut
        seg._note_cut(found, cut, reason)
        if seg._next_offset < next_base:
            found.dropped = (seg._next_offset, next_base)
        seg.close_for_append()
        return seg, found

    @classmethod
    def open_active(cls, directory: Path, base_offset: int, index_interval_bytes: int, future_skew_ns: int,
                    *, clean: bool, recovery_point: int | None) -> tuple[Segment, SegmentRecovery]:
        """Open the active (last) segment. After a clean shutdown only its end is
        re-derived from the last index entry (no CRC); after a crash it is rescanned with
        every CRC from the last index entry at or below ``recovery_point`` (the durable
        offset the engine checkpointed), cut at the first bad batch, and what survived is
        made durable."""
        seg = cls(directory, base_offset, index_interval_bytes, future_skew_ns)
        found = SegmentRecovery()
        seg._size = os.path.getsize(seg.log_path)
        keep = 0
        try:
            seg._offset_index.load(seg._size)
            seg._time_index.load(seg._size)
            if clean:
                keep = len(seg._offset_index)
            elif recovery_point is not None:
                keep = seg._offset_index.entries_at_or_below(recovery_point)
        except CorruptIndexError as exc:
            found.rebuilt_index = True
            found.reasons.append(str(exc))
            seg._offset_index.reset()
            seg._time_index.reset()
            keep = 0
        start = seg._offset_index.entry(keep - 1)[1] if keep else 0
        cut, _kept, reason = seg._rebuild_tail(keep, validate_crc=not clean)
        found.scanned_bytes = seg._size + cut - start
        seg._note_cut(found, cut, reason)
        if seg._size:
            seg._first_append_ns = seg.append_time_of(rec.parse_header(os.pread(seg.fd, rec.HEADER_SIZE, 0)))
        if not clean:
            seg.flush()  # what survived the crash is now durable
        return seg, found

    def _note_cut(self, found: SegmentRecovery, cut: int, reason: str) -> None:
        if cut:
            found.truncated_bytes += cut
            found.reasons.append(f"{self.log_path.name}: {reason}; cut {cut} bytes at position {self._size}")

    # -- writing -------------------------------------------------------------------------

    def append(self, batch: memoryview, header: rec.BatchHeader, base_offset: int, append_time: int,
               *, log_append_time: bool = False, leader_epoch: int = 0) -> int:
        """Write a validated batch with its new base offset; return the position written at."""
        position = self._size
        prefix, rest = rec.stamped_prefix(batch, header, base_offset, append_time, log_append_time, leader_epoch)
        parts: list[Buffer] = [prefix, batch[rest : header.batch_length]]
        if log_append_time:
            header = rec.parse_header(prefix)
        written = 0
        try:
            # explicit positions: the file offset of a reopened fd is not the end
            while written < header.batch_length:
                if written == 0:
                    n = os.pwritev(self.fd, parts, position)
                else:
                    n = os.pwrite(self.fd, memoryview(b"".join(parts))[written:], position + written)
                if n <= 0:
                    raise OSError(errno.EIO, "write returned 0")
                written += n
        except OSError as exc:
            try:
                os.ftruncate(self.fd, position)
            except OSError:
                pass
            raise _storage_error(exc, f"appending {header.batch_length} bytes to {self.log_path}") from None
        before = self._index_state()
        try:
            self._index_batch(position, base_offset, header, append_time=append_time)
        except (OSError, CorruptIndexError) as exc:
            # all or nothing: without its index entries the batch must not stay on disk,
            # or it would sit at this position under an offset the next append reuses
            self._restore_index_state(before)
            try:
                os.ftruncate(self.fd, position)
            except OSError as cut_exc:
                raise StorageError(f"cannot undo a half-indexed append to {self.log_path}: {cut_exc}") from None
            if isinstance(exc, OSError):
                raise _storage_error(exc, f"indexing {header.batch_length} bytes in {self.log_path}") from None
            raise
        self._size += header.batch_length
        if self._first_append_ns is None:
            self._first_append_ns = append_time
        self._last_append_ns = append_time
        return position

    def last_append_ns(self) -> int | None:
        """The broker's clock when the newest batch was appended (see ``append_time_of``;
        None when empty): what time retention judges, never the records' capture times."""
        if self._last_append_ns is None and self._next_offset > self.base_offset:
            found = self.find_batch(self._next_offset - 1)
            if found is not None:
                self._last_append_ns = self.append_time_of(found[1])
        return self._last_append_ns

    def _index_state(self) -> _IndexState:
        return (len(self._offset_index), len(self._time_index), self._max_timestamp,
                self._bytes_since_index_entry, self._last_batch_offset, self._next_offset, self._future_records)

    def _restore_index_state(self, state: _IndexState) -> None:
        offset_entries, time_entries, max_ts, since_entry, last_batch, next_offset, self._future_records = state
        self._offset_index.truncate_entries(offset_entries)
        self._time_index.truncate_entries(time_entries)
        self._max_timestamp, self._bytes_since_index_entry = max_ts, since_entry
        self._last_batch_offset, self._next_offset = last_batch, next_offset

    def _index_batch(
        self, position: int, base_offset: int, header: rec.BatchHeader, *, add_entries: bool = True,
        append_time: int | None = None,
    ) -> None:
        """Maintain the sparse indexes and the running maximum for a batch at ``position``.
        ``append_time`` is given for a new append (``header`` is then the producer's)
        and counts its future-stamped records; a rescan reads it from the stored header."""
        limit = self.append_time_of(header, append_time) + self._future_skew_ns
        batch_max: int | None = header.max_timestamp
        if header.max_timestamp > limit:
            try:
                timestamps = self._batch_timestamps(position, header)
                honest = timestamps[timestamps <= limit]
            except CorruptBatchError:
                honest = np.zeros(0, dtype=np.int64)  # a reader gets the error; the index just leaves it out
            batch_max = int(honest.max()) if len(honest) else None
            if append_time is not None:
                self._future_records += header.record_count - len(honest)
        if batch_max is not None and (self._max_timestamp is None or batch_max > self._max_timestamp):
            self._max_timestamp = batch_max
        if add_entries and (position == 0 or self._bytes_since_index_entry >= self._index_interval_bytes):
            self._offset_index.append(base_offset, position)
            self._bytes_since_index_entry = 0
            last_ts = self._time_index.last_timestamp()
            if self._max_timestamp is not None and (last_ts is None or self._max_timestamp > last_ts):
                self._time_index.append_time(self._max_timestamp, base_offset)
        self._bytes_since_index_entry += header.batch_length
        self._last_batch_offset = base_offset
        self._next_offset = base_offset + header.record_count

    def _rebuild_tail(self, keep_index_entries: int, *, validate_crc: bool) -> tuple[int, int, str]:
        """Rescan the log from the ``keep_index_entries``-th offset-index entry to the end,
        re-adding index entries; cut the file at the first batch that fails validation.

        Returns (bytes cut, batches kept in the scanned part, reason for the cut or "")."""
        keep_index_entries = min(keep_index_entries, len(self._offset_index))
        if keep_index_entries:
            start_offset, start = self._offset_index.entry(keep_index_entries - 1)
        else:
            start_offset, start = self.base_offset, 0
        # The kept entry E stays; the running maximum through E is the last time entry at or
        # before E (entries are written at index points whenever the maximum grew).
        self._offset_index.truncate_entries(keep_index_entries)
        self._last_append_ns = None  # the newest batch may be cut: read it again when asked
        self._time_index.truncate_entries(self._time_index.entries_at_or_below(start_offset))
        self._max_timestamp = self._time_index.last_timestamp()
        self._bytes_since_index_entry = 0
        self._next_offset = start_offset
        self._size = start
        file_size = self.file_size()
        kept = 0
        reason = ""
        try:
            for position, header in self.scan(start, file_size, validate_crc=validate_crc,
                                              expect_offset=start_offset):
                self._index_batch(
                    position, header.base_offset, header,
                    add_entries=not (keep_index_entries and position == start),
                )
                self._size = position + header.batch_length
                if self._first_append_ns is None:
                    self._first_append_ns = self.append_time_of(header, None)
                kept += 1
        except CorruptBatchError as exc:
            reason = str(exc)
        cut = file_size - self._size
        if cut:
            os.ftruncate(self.fd, self._size)
            os.fsync(self.fd)
        return cut, kept, reason

    def truncate_to(self, offset: int) -> None:
        """Drop every batch from ``offset`` on; ``offset`` must start a batch (or be the end)."""
        position = self.position_of(offset)
        if position is None:
            raise CorruptBatchError(f"offset {offset} is not the start of a batch in {self.log_path.name}")
        keep = self._offset_index.entries_before_position(position)
        os.ftruncate(self.fd, position)
        self._rebuild_tail(keep, validate_crc=False)
        self._read_hint = None

    def flush(self) -> None:
        if self._fd is not None:
            os.fdatasync(self._fd)

    def reopen_for_append(self) -> None:
        """Undo ``close_for_append`` (a failed roll, or truncation back into this segment)."""
        self._closed = False
        for index in (self._offset_index, self._time_index):
            index.close()  # drop the read-only map
            index.load_unchecked()

    def close_for_append(self) -> None:
        """Make this segment read-only: final time-index entry, fsync everything, mmap indexes.
        On an I/O error (a full disk) the segment stays open for appends and the error is
        raised typed."""
        if self._closed:
            return
        try:
            last_ts = self._time_index.last_timestamp()
            if self._max_timestamp is not None and (last_ts is None or self._max_timestamp > last_ts):
                if self._time_index.last_offset() == self._last_batch_offset:
                    self._time_index.truncate_entries(len(self._time_index) - 1)
                self._time_index.append_time(self._max_timestamp, self._last_batch_offset)
            if self._fd is not None:
                os.fsync(self._fd)
            self._offset_index.flush()
            self._time_index.flush()
        except OSError as exc:
            raise _storage_error(exc, f"sealing {self.log_path}") from None
        self._offset_index.map_readonly()
        self._time_index.map_readonly()
        self._closed = True

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        self._offset_index.close()
        self._time_index.close()

    def flush_indexes(self) -> None:
        """fsync both indexes (a clean shutdown: the next start trusts them)."""
        self._offset_index.flush()
        self._time_index.flush()

    def delete(self) -> None:
        self.close()
        self.log_path.unlink(missing_ok=True)
        self._offset_index.delete()
        self._time_index.delete()

    def headers_from(self, offset: int) -> Iterator[rec.BatchHeader]:
        """Headers of the batches from the one containing ``offset`` (or from the index
        entry before it) to the end: what rebuilding producer state reads."""
        entry_offset, start = self._offset_index.lookup(max(offset, self.base_offset))
        for _position, header in self.scan(start, expect_offset=entry_offset):
            yield header

    # -- reading -------------------------------------------------------------------------

    def scan(self, start: int, end: int | None = None, *, validate_crc: bool = False,
             expect_offset: int | None = None) -> Iterator[tuple[int, rec.BatchHeader]]:
        """(position, header) of consecutive batches from ``start`` (see ``batch_chain``)."""
        return scan_batches(self.fd, self.log_path.name, start, self._size if end is None else end,
                            validate_crc=validate_crc, expect_offset=expect_offset)

    def position_of(self, offset: int) -> int | None:
        """Position of the batch that starts at ``offset`` (or the end, for next_offset)."""
        if offset == self._next_offset:
            return self._size
        entry_offset, start = self._offset_index.lookup(offset)
        for position, header in self.scan(start, expect_offset=entry_offset):
            if header.base_offset == offset:
                return position
            if header.base_offset > offset:
                return None
        return None

    def find_batch(self, offset: int) -> tuple[int, rec.BatchHeader] | None:
        """(position, header) of the batch containing ``offset``, or None past the end."""
        if self._read_hint is not None and self._read_hint[0] == offset:
            entry_offset, start = self._read_hint
        else:
            entry_offset, start = self._offset_index.lookup(offset)
        while True:
            try:
                for position, header in self.scan(start, expect_offset=entry_offset):
                    if header.next_offset > offset:
                        return position, header
                return None
            except CorruptBatchError:
                # a batch with a wrong base offset is never served, but a read past it may
                # go on once its true extent is known
                span = self._damage_span(entry_offset, start)
                if span is None or offset < span[1]:
                    raise
                entry_offset, start = span[1], span[2]

    def read(self, offset: int, max_bytes: int) -> memoryview:
        """Whole batches from the one containing ``offset``, up to ``max_bytes`` (always at
        least one batch); empty when ``offset`` is past this segment's last record."""
        found = self.find_batch(offset)
        if found is None:
            return memoryview(b"")
        start, header = found
        want = min(self._size - start, max(max_bytes, header.batch_length))
        data = os.pread(self.fd, want, start)
        end = header.batch_length
        last_next = header.next_offset
        view = memoryview(data)
        length_at = rec.BATCH_LENGTH.unpack_from
        magic_at = rec.MAGIC_FIELD.unpack_from
        base_at = rec.BASE_OFFSET.unpack_from
        last_delta_at = rec.LAST_OFFSET_DELTA.unpack_from
        while end + rec.HEADER_SIZE <= len(data):
            length = length_at(data, end + rec.BATCH_LENGTH_OFFSET)[0] + rec.LENGTH_FIELD_END
            # stop before anything but a well-formed batch that continues the offsets: the
            # next read starts there and find_batch names the damage (a zero-filled tail
            # has length 0 and would otherwise never advance)
            if (length < rec.MIN_BATCH_LENGTH or end + length > len(data)
                    or magic_at(data, end + rec.MAGIC_OFFSET)[0] != rec.MAGIC
                    or base_at(data, end)[0] != last_next):
                break
            last_next += last_delta_at(data, end + rec.LAST_OFFSET_DELTA_OFFSET)[0] + 1
            end += length
        self._read_hint = (last_next, start + end)
        return view[:end]

    def _damage_span(self, entry_offset: int, start: int) -> tuple[int, int, int] | None:
        """Walk from a batch start to the first batch that breaks the offset chain. When
        only its base offset is wrong (its CRC holds and the batch after it continues from
        its true end) return (its true first offset, its true next offset, the position
        after it); None for any other damage, which has no safe way past."""
        expected = entry_offset
        try:
            for position, header in self.scan(start):
                if header.base_offset != expected:
                    count = rec.validate_batch(os.pread(self.fd, header.batch_length, position)).record_count
                    after, following = expected + count, position + header.batch_length
                    if following >= self._size:
                        continues = after == self._next_offset
                    else:
                        continues = rec.parse_header(os.pread(self.fd, rec.HEADER_SIZE, following)).base_offset == after
                    return (expected, after, following) if continues else None
                expected = header.next_offset
        except CorruptBatchError:
            pass
        return None

    def resume_offset_after_damage(self, offset: int) -> int:
        """Where reading can go on after the damage met reading ``offset``: right after a
        batch whose base offset alone is wrong, else the next index entry past ``offset``
        (checked again when read), else this segment's end."""
        span = self._damage_span(*self._offset_index.lookup(offset))
        while span is not None and span[1] <= offset:
            span = self._damage_span(span[1], span[2])
        if span is not None:
            return span[1]
        later = self._offset_index.offsets_after(offset)
        return later if later is not None else self._next_offset

    def check_tail(self, expected_next_offset: int) -> str:
        """Cheap check of a closed segment's end: walk the headers from the last index
        entry to the file end. Returns "" when the chain ends exactly there with
        ``expected_next_offset``, else what is wrong (a damaged or zero-filled tail)."""
        entry_offset, start = self._offset_index.lookup(expected_next_offset - 1)
        next_offset = entry_offset
        try:
            for _position, header in self.scan(start, self.file_size(), expect_offset=entry_offset):
                next_offset = header.next_offset
        except CorruptBatchError as exc:
            return str(exc)
        if next_offset != expected_next_offset:
            return (f"{self.log_path.name} ends at offset {next_offset}, "
                    f"the next segment starts at {expected_next_offset}")
        return ""

    def record_at_time(self, timestamp: int) -> tuple[int, int] | None:
        """(offset, its record's timestamp) of the first record whose timestamp is >=
        ``timestamp`` (Kafka's rule, see the module docstring), or None. Only the answer's batch, and a
        future-stamped batch passed on the way, are decoded."""
        start_offset = self._time_index.lookup_time(timestamp)
        entry_offset, start = self._offset_index.lookup(start_offset)
        for position, header in self.scan(start, expect_offset=entry_offset):
            if header.max_timestamp < timestamp:
                continue
            timestamps = self._batch_timestamps(position, header)
            hits = (timestamps >= timestamp) & (timestamps <= self.append_time_of(header) + self._future_skew_ns)
            if hits.any():
                index = int(hits.argmax())
                return header.base_offset + index, int(timestamps[index])
        return None

    def _batch_timestamps(self, position: int, header: rec.BatchHeader) -> npt.NDArray[np.int64]:
        """Timestamp (ns) of each record of the batch at ``position`` (numpy int64)."""
        timestamps: npt.NDArray[np.int64] = rec.batch_timestamps(os.pread(self.fd, header.batch_length, position))
        return timestamps

    def append_time_of(self, header: rec.BatchHeader, append_time: int | None = None) -> int:
        """A batch's append time: given at append; on a rescan the one the batch carries
        (LogAppendTime), else the segment file's modification time, the latest any batch
        in it was appended (Kafka's CreateTime batches have no field for it: FORMAT.md)."""
        if append_time is not None:
            return append_time
        if header.append_time is not None:
            return header.append_time
        return os.fstat(self.fd).st_mtime_ns


def _storage_error(exc: OSError, what: str) -> Exception:
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return DiskFullError(f"disk full while {what}: nothing was written")
    return StorageError(f"I/O error while {what}: {exc.strerror or exc}")
