"""Sparse offset index of one segment: ``<base:020d>.index`` (Kafka's OffsetIndex).

Format: fixed-width 8-byte little-endian entries, back to back, no header::

    relative_offset  u32   batch base offset minus the segment's base offset
    position         u32   byte position of that batch in the segment's .log

Invariants (checked on load, CorruptIndexError otherwise): the file size is a multiple of
8; relative offsets and positions strictly increase; the first position is 0; every
position is inside the log. An entry is added for the first batch of a segment and then
whenever at least ``index_interval_bytes`` were appended since the last entry, so a lookup
scans at most that many bytes of batch headers. Entries always point at the start of a batch.

Closed segments map the file read-only (mmap) and search it with numpy; the active
segment keeps its entries in memory too and appends each new entry to the file. The file
itself (entries, mmap, append, truncation) is the ``IndexFile`` base, shared with the time index.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import CorruptIndexError
from .index_file import U32_MAX, IndexFile

ENTRY_DTYPE = np.dtype([("relative_offset", "<u4"), ("position", "<u4")])
ENTRY_SIZE = ENTRY_DTYPE.itemsize  # 8


class OffsetIndex(IndexFile):
    def __init__(self, path: Path, base_offset: int):
        super().__init__(path, base_offset, ENTRY_DTYPE)

    # -- loading -------------------------------------------------------------------------

    def load(self, log_size: int) -> None:
        """Read the entries from disk and check the invariants against ``log_size``."""
        self._read_entries()
        arr = self.entries()
        if not len(arr):
            return
        rel = arr["relative_offset"].astype(np.int64)
        pos = arr["position"].astype(np.int64)
        if np.any(np.diff(rel) <= 0):
            raise CorruptIndexError(f"{self.path.name}: entries not strictly increasing")
        if np.any(np.diff(pos) <= 0) or int(pos[-1]) >= max(log_size, 1) or int(pos[0]) != 0:
            raise CorruptIndexError(f"{self.path.name}: positions out of order or past the log end")

    def check_closed(self, log_size: int, next_offset: int) -> None:
        """Cheap check of a closed segment's index (no full read): a whole number of
        entries, not empty for a non-empty log, the last entry inside the log."""
        self.check_file_size(log_size > 0)
        if not log_size:
            return
        last = self.last_entry_on_disk()
        if int(last["position"]) >= log_size or self.base_offset + int(last["relative_offset"]) >= next_offset:
            raise CorruptIndexError(f"{self.path.name}: last entry points past the log")

    # -- access --------------------------------------------------------------------------

    def entries_at_or_below(self, offset: int) -> int:
        """How many entries point at batches starting at or below ``offset``."""
        rel = self.entries()["relative_offset"].astype(np.int64)
        return int((rel <= offset - self.base_offset).sum())

    def entries_before_position(self, position: int) -> int:
        """How many entries point at batches starting before byte ``position``."""
        return int((self.entries()["position"].astype(np.int64) < position).sum())

    def entry(self, i: int) -> tuple[int, int]:
        """(base offset, position) of entry ``i``."""
        row = self.entries()[i]
        return self.base_offset + int(row["relative_offset"]), int(row["position"])

    def offsets_after(self, offset: int) -> int | None:
        """The first entry's base offset above ``offset``, or None."""
        later = self.entries()["relative_offset"].astype(np.int64) + self.base_offset
        later = later[later > offset]
        return int(later[0]) if len(later) else None

    def lookup(self, offset: int) -> tuple[int, int]:
        """(base offset, position) of the last entry at or before ``offset``; (segment base, 0)
        when there is none. The batch containing ``offset`` starts at or after it."""
        arr = self.entries()
        rel = offset - self.base_offset
        if not len(arr) or rel < 0:
            return self.base_offset, 0
        i = int(np.searchsorted(arr["relative_offset"], min(rel, U32_MAX), side="right")) - 1
        if i < 0:
            return self.base_offset, 0
        return self.base_offset + int(arr["relative_offset"][i]), int(arr["position"][i])

    # -- writing -------------------------------------------------------------------------

    def append(self, offset: int, position: int) -> None:
        rel = offset - self.base_offset
        if not 0 <= rel <= U32_MAX or not 0 <= position <= U32_MAX:
            raise CorruptIndexError(f"{self.path.name}: entry ({offset}, {position}) out of range")
        self._append_entry((rel, position))

