"""One segment: a ``.log`` file of record batches back to back, plus its two sparse indexes.

Guarantees:
- A batch is written whole or not at all: a failed or partial write is cut back with
  ``ftruncate`` to the previous size and raised (DiskFullError for ENOSPC), so the file
  never holds a half batch while the broker runs. (A crash mid-write can; recovery in
  ``partition_log`` cuts it.)
- The broker-assigned base offset and append time are written with ``os.writev`` as a new
  28-byte prefix in front of the producer's bytes: the payload is never copied or decoded.
- Reads return whole batches exactly as stored, found via the offset index and a short
  scan of batch headers (at most ``index_interval_bytes``).
- Only the active (last) segment is written. A closed segment has been fsynced, its time
  index ends with its maximum timestamp, and its indexes are mmapped read-only.

Not thread-safe: the broker's single event loop owns every segment.
"""

from __future__ import annotations

import errno
import os
import struct
from pathlib import Path
from typing import Iterator

from .. import records as rec
from ..errors import CorruptBatchError, DiskFullError, StorageError
from .layout import LOG_SUFFIX, OFFSET_INDEX_SUFFIX, TIME_INDEX_SUFFIX, segment_path
from .offset_index import OffsetIndex
from .time_index import TimeIndex

# The part of the header the broker rewrites: base_offset .. append_time (28 bytes).
STAMPED_PREFIX = struct.Struct("<qIIBBHq")
STAMPED_PREFIX_SIZE = STAMPED_PREFIX.size
if STAMPED_PREFIX_SIZE != rec.CRC_OFFSET:  # pragma: no cover - layout guard
    raise ImportError("stamped prefix must end where the CRC starts")

_HEADER_SCAN_CHUNK = 64 * 1024


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

    def append(self, batch: memoryview, header: rec.BatchHeader, base_offset: int, append_time: int) -> int:
        """Write a validated batch with its new base offset; return the position written at."""
        position = self.size
        prefix = STAMPED_PREFIX.pack(
            base_offset, header.batch_length, header.magic, header.version,
            header.codec, header.flags, append_time,
        )
        parts = [prefix, batch[STAMPED_PREFIX_SIZE : header.batch_length]]
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
        self.size += header.batch_length
        if self.first_append_ns is None:
            self.first_append_ns = append_time
        self._last_append_ns = append_time
        self._index_batch(position, base_offset, header)
        return position

    def last_append_ns(self) -> int | None:
        """The broker's clock when the newest batch was appended (its header's append time;
        None when empty): what time retention judges, never the records' capture times."""
        if self._last_append_ns is None and self.next_offset > self.base_offset:
            found = self.find_batch(self.next_offset - 1)
            if found is not None:
                self._last_append_ns = found[1].append_time
        return self._last_append_ns

    def _index_batch(
        self, position: int, base_offset: int, header: rec.BatchHeader, *, add_entries: bool = True
    ) -> None:
        """Maintain the sparse indexes and the running maximum for a batch at ``position``."""
        if self.max_timestamp is None or header.max_timestamp > self.max_timestamp:
            self.max_timestamp = header.max_timestamp
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
            for position, header in self.scan(start, file_size, validate_crc=validate_crc):
                if header.base_offset != self.next_offset:
                    raise CorruptBatchError(
                        f"batch at position {position} has base offset {header.base_offset}, "
                        f"expected {self.next_offset}"
                    )
                self._index_batch(
                    position, header.base_offset, header,
                    add_entries=not (keep_index_entries and position == start),
                )
                self.size = position + header.batch_length
                if self.first_append_ns is None:
                    self.first_append_ns = header.append_time
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

    def close_for_append(self) -> None:
        """Make this segment read-only: final time-index entry, fsync everything, mmap indexes."""
        if self.closed:
            return
        last_ts = self.time_index.last_timestamp()
        if self.max_timestamp is not None and (last_ts is None or self.max_timestamp > last_ts):
            if self.time_index.last_offset() == self.last_batch_offset:
                self.time_index.truncate_entries(len(self.time_index) - 1)
            self.time_index.append_time(self.max_timestamp, self.last_batch_offset)
        if self._fd is not None:
            os.fsync(self._fd)
        self.offset_index.flush()
        self.time_index.flush()
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

    def scan(self, start: int, end: int | None = None, *, validate_crc: bool = False) -> Iterator[tuple[int, rec.BatchHeader]]:
        """Yield (position, header) of consecutive batches from ``start`` (a batch start).

        Raises CorruptBatchError at the first header that is bad or a batch that overruns
        ``end``; with ``validate_crc`` every batch's CRC is checked too."""
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
        _, start = self.offset_index.lookup(offset)
        for position, header in self.scan(start):
            if header.base_offset == offset:
                return position
            if header.base_offset > offset:
                return None
        return None

    def find_batch(self, offset: int) -> tuple[int, rec.BatchHeader] | None:
        """(position, header) of the batch containing ``offset``, or None past the end."""
        if self._read_hint is not None and self._read_hint[0] == offset:
            start = self._read_hint[1]
        else:
            start = self.offset_index.lookup(offset)[1]
        for position, header in self.scan(start):
            if header.next_offset > offset:
                return position, header
        return None

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
        while end + rec.HEADER_SIZE <= len(data):
            length = length_at(data, end + rec.BATCH_LENGTH_OFFSET)[0]
            if end + length > len(data):
                break
            last_next = rec.BASE_OFFSET.unpack_from(data, end)[0] + rec.RECORD_COUNT.unpack_from(data, end + rec.RECORD_COUNT_OFFSET)[0]
            end += length
        self._read_hint = (last_next, start + end)
        return view[:end]

    def offset_for_time(self, timestamp: int) -> int | None:
        """Base offset of the first batch whose max timestamp >= ``timestamp``, or None."""
        start_offset = self.time_index.lookup_time(timestamp)
        _, start = self.offset_index.lookup(start_offset)
        for _position, header in self.scan(start):
            if header.max_timestamp >= timestamp:
                return header.base_offset
        return None


def _storage_error(exc: OSError, what: str) -> Exception:
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return DiskFullError(f"disk full while {what}: nothing was written")
    return StorageError(f"I/O error while {what}: {exc.strerror or exc}")
