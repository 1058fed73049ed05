"""Sparse time index of one segment: ``<base:020d>.timeindex`` (Kafka's TimeIndex).

Format: fixed-width 12-byte little-endian entries, back to back, no header::

    timestamp        i64   largest capture timestamp (ns) seen in the segment so far
    relative_offset  u32   base offset (minus segment base) of the batch that raised it

Invariants (checked on load, CorruptIndexError otherwise): file size a multiple of 12;
timestamps and relative offsets strictly increase. Entries are written together with
offset-index entries, only when the running maximum grew, and once more when the segment
is closed. Because the running maximum is monotonic even when capture clocks step
backwards, "the first batch whose max timestamp >= T" is the batch after the last entry
whose timestamp < T, found by a short scan of batch headers. The file itself (entries,
mmap, append, truncation) is an ``IndexFile``, shared with the offset index.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import CorruptIndexError
from .index_file import U32_MAX, IndexFile

ENTRY_DTYPE = np.dtype([("timestamp", "<i8"), ("relative_offset", "<u4")])
ENTRY_SIZE = ENTRY_DTYPE.itemsize  # 12


class TimeIndex(IndexFile):
    def __init__(self, path: Path, base_offset: int):
        super().__init__(path, base_offset, ENTRY_DTYPE)

    # -- loading -------------------------------------------------------------------------

    def load(self, log_size: int) -> None:
        """Read the entries from disk and check the invariants (``log_size`` is unused: a
        time index holds no positions; the argument keeps both indexes loaded alike)."""
        self._read_entries()
        arr = self.entries()
        if not len(arr):
            return
        if np.any(np.diff(arr["timestamp"].astype(np.int64)) <= 0):
            raise CorruptIndexError(f"{self.path.name}: entries not strictly increasing")
        if np.any(np.diff(arr["relative_offset"].astype(np.int64)) <= 0):
            raise CorruptIndexError(f"{self.path.name}: offsets not strictly increasing")

    def check_closed(self, log_size: int) -> None:
        """Cheap check of a closed segment's index (no full read)."""
        self.check_file_size(log_size > 0)

    # -- access --------------------------------------------------------------------------

    def entries_at_or_below(self, offset: int) -> int:
        """How many entries were raised by batches starting at or below ``offset``."""
        rel = self.entries()["relative_offset"].astype(np.int64)
        return int((rel + self.base_offset <= offset).sum())

    def last_timestamp(self) -> int | None:
        arr = self.entries()
        return int(arr["timestamp"][-1]) if len(arr) else None

    def last_offset(self) -> int | None:
        arr = self.entries()
        return self.base_offset + int(arr["relative_offset"][-1]) if len(arr) else None

    def lookup_time(self, timestamp: int) -> int:
        """Base offset of the batch that raised the running maximum last below ``timestamp``
        (a scan for the answer may start there), or the segment base when there is none."""
        arr = self.entries()
        i = int(np.searchsorted(arr["timestamp"], timestamp, side="left")) - 1
        if i < 0:
            return self.base_offset
        return self.base_offset + int(arr["relative_offset"][i])

    # -- writing -------------------------------------------------------------------------

    def append_time(self, timestamp: int, offset: int) -> None:
        rel = offset - self.base_offset
        if not 0 <= rel <= U32_MAX:
            raise CorruptIndexError(f"{self.path.name}: offset {offset} out of range")
        self._append_entry((timestamp, rel))

