"""One segment: a ``.log`` file of record batches back to back, plus its two sparse indexes.

Guarantees:
- An append is all or nothing: a failed or partial write of the batch, or a failed write
  of its index entries, cuts the log (``ftruncate``) and the indexes back to what they
  held before and raises (DiskFullError for ENOSPC); the segment's size and next offset
  only move once the batch is written and indexed, so an error never leaves a batch on
  disk that the next append would shadow. (A crash mid-write can leave a half batch;
  recovery in ``partition_log`` cuts it.)
- The broker-assigned base offset and partition leader epoch are written with
  ``os.pwritev`` as a new 16-byte prefix in front of the producer's bytes (for a
  LogAppendTime topic the whole 61-byte header, re-checksummed as Kafka does): the payload
  is never copied or decoded.
- Reads return whole batches exactly as stored, found via the offset index and a short
  scan of batch headers (at most ``index_interval_bytes``). Every header walked must be
  well formed (magic, a length of at least a header, inside the file) and continue the
  offsets (its base offset is the previous batch's next offset, the first one's is the
  index entry's): base offsets are outside the CRC, so a flipped bit there is caught here
  (CorruptBatchError), never served as another offset, and no length can make a read loop.
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
- ``offset_for_time(T)`` is Kafka's rule: the first offset whose (not future-stamped)
  timestamp is >= T, at record precision, whatever the batch layout.

Not thread-safe: the broker's single event loop owns every segment.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import Iterator

from .. import records as rec
from ..errors import CorruptBatchError, CorruptIndexError, DiskFullError, StorageError
from .layout import LOG_SUFFIX, OFFSET_INDEX_SUFFIX, TIME_INDEX_SUFFIX, segment_path
from .offset_index import OffsetIndex
from .time_index import TimeIndex

_HEADER_SCAN_CHUNK = 64 * 1024
DEFAULT_FUTURE_SKEW_NS = 3600 * 10**9  # TopicConfig.max_future_skew's default


class Segment:
    def __init__(self, directory: Path, base_offset: int, index_interval_bytes: int):
        self.directory = directory
        self.base_offset = base_offset
        self.index_interval_bytes = max(1, index_interval_bytes)
        self.log_path = segment_path(directory, base_offset, LOG_SUFFIX)
        self.offset_index = OffsetIndex(segment_path(directory, base_offset, OFFSET_INDEX_SUFFIX), base_offset)
        self.time_index = TimeIndex(segment_path(directory, base_offset, TIME_INDEX_SUFFIX), base_offset)
        self._fd: int | None = None
        self.size = 0
        self.next_offset = base_offset
        self.last_batch_offset = base_offset
        self.max_timestamp: int | None = None
        self.first_append_ns: int | None = None
        self._last_append_ns: int | None = None  # cached; see last_append_ns()
        self._bytes_since_index_entry = 0
        self._read_hint: tuple[int, int] | None = None  # (offset, position) of a batch start
        self.closed = False
        self.future_skew_ns = DEFAULT_FUTURE_SKEW_NS  # the partition sets its topic's value
        self.future_records = 0  # future-stamped records appended since open (not rescanned)

    # -- files ---------------------------------------------------------------------------

    @classmethod
    def create(cls, directory: Path, base_offset: int, index_interval_bytes: int) -> "Segment":
        seg = cls(directory, base_offset, index_interval_bytes)
        try:
            seg._fd = os.open(seg.log_path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o640)
            seg.offset_index.reset()
            seg.time_index.reset()
        except OSError as exc:
            seg.close()
            for path in (seg.log_path, seg.offset_index.path, seg.time_index.path):
                path.unlink(missing_ok=True)
            raise _storage_error(exc, f"creating segment {seg.log_path}") from None
        return seg

    @property
    def fd(self) -> int:
        if self._fd is None:
            self._fd = os.open(self.log_path, os.O_RDWR)
        return self._fd

    def file_size(self) -> int:
        return os.fstat(self.fd).st_size

    # -- writing -------------------------------------------------------------------------

    def append(self, batch: memoryview, header: rec.BatchHeader, base_offset: int, append_time: int,
               *, log_append_time: bool = False, leader_epoch: int = 0) -> int:
        """Write a validated batch with its new base offset; return the position written at."""
        position = self.size
        prefix, rest = rec.stamped_prefix(batch, header, base_offset, append_time, log_append_time, leader_epoch)
        parts = [prefix, batch[rest : header.batch_length]]
        if log_append_time:
            header = rec.parse_header(prefix)
        written = 0
        try:
            # explicit positions: the file offset of a reopened fd is not the end
            while written < header.batch_length:
                if written == 0:
                    n = os.pwritev(self.fd, parts, position)
                else:
                    rest = memoryview(b"".join(parts))[written:]
                    n = os.pwrite(self.fd, rest, position + written)
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
        self.size += header.batch_length
        if self.first_append_ns is None:
            self.first_append_ns = append_time
        self._last_append_ns = append_time
        return position

    def last_append_ns(self) -> int | None:
        """The broker's clock when the newest batch was appended (see ``append_time_of``;
        None when empty): what time retention judges, never the records' capture times."""
        if self._last_append_ns is None and self.next_offset > self.base_offset:
            found = self.find_batch(self.next_offset - 1)
            if found is not None:
                self._last_append_ns = self.append_time_of(found[1])
        return self._last_append_ns

    def _index_state(self) -> tuple:
        return (len(self.offset_index), len(self.time_index), self.max_timestamp,
                self._bytes_since_index_entry, self.last_batch_offset, self.next_offset, self.future_records)

    def _restore_index_state(self, state: tuple) -> None:
        offset_entries, time_entries, max_ts, since_entry, last_batch, next_offset, self.future_records = state
        self.offset_index.truncate_entries(offset_entries)
        self.time_index.truncate_entries(time_entries)
        self.max_timestamp, self._bytes_since_index_entry = max_ts, since_entry
        self.last_batch_offset, self.next_offset = last_batch, next_offset

    def _index_batch(
        self, position: int, base_offset: int, header: rec.BatchHeader, *, add_entries: bool = True,
        append_time: int | None = None,
    ) -> None:
        """Maintain the sparse indexes and the running maximum for a batch at ``position``.
        ``append_time`` is given for a new append (``header`` is then the producer's)
        and counts its future-stamped records; a rescan reads it from the stored header."""
        batch_max = header.max_timestamp
        limit = self.append_time_of(header, append_time) + self.future_skew_ns
        if batch_max > limit:
            try:
                timestamps = self._batch_timestamps(position, header)
            except CorruptBatchError:
                timestamps = None  # a reader gets the error; the index just leaves it out
            honest = timestamps[timestamps <= limit] if timestamps is not None else ()
            batch_max = int(honest.max()) if len(honest) else None
            if append_time is not None:
                self.future_records += header.record_count - len(honest)
        if batch_max is not None and (self.max_timestamp is None or batch_max > self.max_timestamp):
            self.max_timestamp = batch_max
        if add_entries and (position == 0 or self._bytes_since_index_entry >= self.index_interval_bytes):
            self.offset_index.append(base_offset, position)
            self._bytes_since_index_entry = 0
            last_ts = self.time_index.last_timestamp()
            if last_ts is None or self.max_timestamp > last_ts:
                self.time_index.append_time(self.max_timestamp, base_offset)
        self._bytes_since_index_entry += header.batch_length
        self.last_batch_offset = base_offset
        self.next_offset = base_offset + header.record_count

    def rebuild_tail(self, keep_index_entries: int, *, validate_crc: bool) -> tuple[int, int, str]:
        """Rescan the log from the ``keep_index_entries``-th offset-index entry to the end,
        re-adding index entries; cut the file at the first batch that fails validation.

        Returns (bytes cut, batches kept in the scanned part, reason for the cut or "")."""
        entries = self.offset_index.entries()
        keep_index_entries = min(keep_index_entries, len(entries))
        if keep_index_entries:
            last = entries[keep_index_entries - 1]
            start_offset = self.base_offset + int(last["relative_offset"])
            start = int(last["position"])
        else:
            start_offset, start = self.base_offset, 0
        # The kept entry E stays; the running maximum through E is the last time entry at or
        # before E (entries are written at index points whenever the maximum grew).
        self.offset_index.truncate_entries(keep_index_entries)
        self._last_append_ns = None  # the newest batch may be cut: read it again when asked
        times = self.time_index.entries()
        keep_times = int((times["relative_offset"].astype(int) + self.base_offset <= start_offset).sum())
        self.time_index.truncate_entries(keep_times)
        self.max_timestamp = self.time_index.last_timestamp()
        self._bytes_since_index_entry = 0
        self.next_offset = start_offset
        self.size = start
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
                self.size = position + header.batch_length
                if self.first_append_ns is None:
                    self.first_append_ns = self.append_time_of(header, None)
                kept += 1
        except CorruptBatchError as exc:
            reason = str(exc)
        cut = file_size - self.size
        if cut:
            os.ftruncate(self.fd, self.size)
            os.fsync(self.fd)
        return cut, kept, reason

    def truncate_to(self, offset: int) -> None:
        """Drop every batch from ``offset`` on; ``offset`` must start a batch (or be the end)."""
        position = self.position_of(offset)
        if position is None:
            raise CorruptBatchError(f"offset {offset} is not the start of a batch in {self.log_path.name}")
        entries = self.offset_index.entries()
        keep = int((entries["position"].astype(int) < position).sum())
        os.ftruncate(self.fd, position)
        self.rebuild_tail(keep, validate_crc=False)
        self._read_hint = None

    def flush(self) -> None:
        if self._fd is not None:
            os.fdatasync(self._fd)

    def reopen_for_append(self) -> None:
        """Undo ``close_for_append`` (a failed roll, or truncation back into this segment)."""
        self.closed = False
        for index in (self.offset_index, self.time_index):
            index.close()  # drop the read-only map
            index.load_unchecked()

    def close_for_append(self) -> None:
        """Make this segment read-only: final time-index entry, fsync everything, mmap indexes.
        On an I/O error (a full disk) the segment stays open for appends and the error is
        raised typed."""
        if self.closed:
            return
        try:
            last_ts = self.time_index.last_timestamp()
            if self.max_timestamp is not None and (last_ts is None or self.max_timestamp > last_ts):
                if self.time_index.last_offset() == self.last_batch_offset:
                    self.time_index.truncate_entries(len(self.time_index) - 1)
                self.time_index.append_time(self.max_timestamp, self.last_batch_offset)
            if self._fd is not None:
                os.fsync(self._fd)
            self.offset_index.flush()
            self.time_index.flush()
        except OSError as exc:
            raise _storage_error(exc, f"sealing {self.log_path}") from None
        self.offset_index.map_readonly()
        self.time_index.map_readonly()
        self.closed = True

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        self.offset_index.close()
        self.time_index.close()

    def delete(self) -> None:
        self.close()
        for path in (self.log_path, self.offset_index.path, self.time_index.path):
            path.unlink(missing_ok=True)

    # -- reading -------------------------------------------------------------------------

    def scan(self, start: int, end: int | None = None, *, validate_crc: bool = False,
             expect_offset: int | None = None) -> Iterator[tuple[int, rec.BatchHeader]]:
        """Yield (position, header) of consecutive batches from ``start`` (a batch start).

        Raises CorruptBatchError at the first header that is bad, a batch that overruns
        ``end`` or, given ``expect_offset`` (the base offset of the batch at ``start``), a
        base offset that breaks the chain; with ``validate_crc`` every CRC is checked too."""
        end = self.size if end is None else end
        position = start
        chunk = b""
        chunk_start = start
        while position < end:
            rel = position - chunk_start
            if rel < 0 or rel + rec.HEADER_SIZE > len(chunk):
                chunk_start = position
                chunk = os.pread(self.fd, min(_HEADER_SCAN_CHUNK, end - position), position)
                rel = 0
            header = rec.parse_header(chunk, rel)
            if position + header.batch_length > end:
                raise CorruptBatchError(
                    f"batch at position {position} needs {header.batch_length} bytes, "
                    f"only {end - position} remain"
                )
            if expect_offset is not None:
                if header.base_offset != expect_offset:
                    raise CorruptBatchError(
                        f"batch at position {position} of {self.log_path.name} has base offset "
                        f"{header.base_offset}, expected {expect_offset}"
                    )
                expect_offset = header.next_offset
            if validate_crc:
                if rel + header.batch_length <= len(chunk):
                    rec.validate_batch(chunk, rel)
                else:
                    rec.validate_batch(os.pread(self.fd, header.batch_length, position))
            yield position, header
            position += header.batch_length

    def position_of(self, offset: int) -> int | None:
        """Position of the batch that starts at ``offset`` (or the end, for next_offset)."""
        if offset == self.next_offset:
            return self.size
        entry_offset, start = self.offset_index.lookup(offset)
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
            entry_offset, start = self.offset_index.lookup(offset)
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
        want = min(self.size - start, max(max_bytes, header.batch_length))
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
                    if following >= self.size:
                        continues = after == self.next_offset
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
        span = self._damage_span(*self.offset_index.lookup(offset))
        while span is not None and span[1] <= offset:
            span = self._damage_span(span[1], span[2])
        if span is not None:
            return span[1]
        entries = self.offset_index.entries()
        later = entries["relative_offset"].astype(int) + self.base_offset
        later = later[later > offset]
        return int(later[0]) if len(later) else self.next_offset

    def check_tail(self, expected_next_offset: int) -> str:
        """Cheap check of a closed segment's end: walk the headers from the last index
        entry to the file end. Returns "" when the chain ends exactly there with
        ``expected_next_offset``, else what is wrong (a damaged or zero-filled tail)."""
        entry_offset, start = self.offset_index.lookup(expected_next_offset - 1)
        next_offset = entry_offset
        try:
            for _position, header in self.scan(start, self.file_size(), expect_offset=entry_offset):
                next_offset = header.next_offset
        except CorruptBatchError as exc:
            return str(exc)
        if next_offset != expected_next_offset:
            return f"{self.log_path.name} ends at offset {next_offset}, the next segment starts at {expected_next_offset}"
        return ""

    def offset_for_time(self, timestamp: int) -> int | None:
        """The first offset whose timestamp is >= ``timestamp`` (future-stamped records
        left out, see the module docstring), or None."""
        found = self.record_at_time(timestamp)
        return None if found is None else found[0]

    def record_at_time(self, timestamp: int) -> tuple[int, int] | None:
        """(offset, its record's timestamp) of the first record whose timestamp is >=
        ``timestamp``, as ``offset_for_time``, or None. Only the answer's batch, and a
        future-stamped batch passed on the way, are decoded."""
        start_offset = self.time_index.lookup_time(timestamp)
        entry_offset, start = self.offset_index.lookup(start_offset)
        for position, header in self.scan(start, expect_offset=entry_offset):
            if header.max_timestamp < timestamp:
                continue
            timestamps = self._batch_timestamps(position, header)
            hits = (timestamps >= timestamp) & (timestamps <= self.append_time_of(header) + self.future_skew_ns)
            if hits.any():
                index = int(hits.argmax())
                return header.base_offset + index, int(timestamps[index])
        return None

    def _batch_timestamps(self, position: int, header: rec.BatchHeader):
        """Timestamp (ns) of each record of the batch at ``position`` (numpy int64)."""
        return rec.batch_timestamps(os.pread(self.fd, header.batch_length, position))

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
