"""Sparse time index of one segment: ``<base:020d>.timeindex``.

Format: fixed-width 12-byte little-endian entries, back to back, no header::

    timestamp        i64   largest capture timestamp (ns) seen in the segment so far
    relative_offset  u32   base offset (minus segment base) of the batch that raised it

Invariants: file size a multiple of 12; timestamps and relative offsets strictly increase.
Entries are written together with offset-index entries, only when the running maximum
grew, and once more when the segment is closed. Because the running maximum is monotonic
even when capture clocks step backwards, "the first batch whose max timestamp >= T" is the
batch after the last entry whose timestamp < T, found by a short scan of batch headers.
"""

from __future__ import annotations

import numpy as np

from ..errors import CorruptIndexError
from .offset_index import OffsetIndex

ENTRY_DTYPE = np.dtype([("timestamp", "<i8"), ("relative_offset", "<u4")])
ENTRY_SIZE = ENTRY_DTYPE.itemsize  # 12


class TimeIndex(OffsetIndex):
    entry_dtype = ENTRY_DTYPE
    key_field = "timestamp"

    def _check_positions(self, arr: np.ndarray, log_size: int) -> None:
        rel = arr["relative_offset"].astype(np.int64)
        if np.any(np.diff(rel) <= 0):
            raise CorruptIndexError(f"{self.path.name}: offsets not strictly increasing")

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

    def append_time(self, timestamp: int, offset: int) -> None:
        rel = offset - self.base_offset
        if not 0 <= rel <= 0xFFFFFFFF:
            raise CorruptIndexError(f"{self.path.name}: offset {offset} out of range")
        self._write((timestamp, rel))
