"""Sparse offset index of one segment: ``<base:020d>.index``.

Format: fixed-width 8-byte little-endian entries, back to back, no header::

    relative_offset  u32   batch base offset minus the segment's base offset
    position         u32   byte position of that batch in the segment's .log

Invariants (checked on load, CorruptIndexError otherwise): the file size is a multiple of
8; relative offsets and positions strictly increase; every position is inside the log.
An entry is added for the first batch of a segment and then whenever at least
``index_interval_bytes`` were appended since the last entry, so a lookup scans at most that
many bytes of batch headers. Entries always point at the start of a batch.

Closed segments map the file read-only (mmap) and search it with numpy; the active
segment keeps its entries in memory too and appends each new entry to the file. The index
is a cache: it is never fsynced on the hot path and is rebuilt from the log when damaged.
"""

from __future__ import annotations

import mmap
import os
from pathlib import Path

import numpy as np

from ..errors import CorruptIndexError

ENTRY_DTYPE = np.dtype([("relative_offset", "<u4"), ("position", "<u4")])
ENTRY_SIZE = ENTRY_DTYPE.itemsize  # 8


class OffsetIndex:
    entry_dtype = ENTRY_DTYPE
    key_field = "relative_offset"

    def __init__(self, path: Path, base_offset: int):
        self.path = path
        self.base_offset = base_offset
        self._fd: int | None = None
        # active segment: entries in a growable numpy array (count used of its capacity)
        self._array = np.zeros(0, dtype=self.entry_dtype)
        self._count = 0
        self._mmap: mmap.mmap | None = None

    # -- loading -------------------------------------------------------------------------

    def load(self, log_size: int) -> None:
        """Read the entries from disk and check the invariants against ``log_size``."""
        try:
            with open(self.path, "rb") as f:
                data = f.read()
        except FileNotFoundError:
            raise CorruptIndexError(f"{self.path.name}: missing") from None
        if len(data) % self.entry_dtype.itemsize:
            raise CorruptIndexError(
                f"{self.path.name}: size {len(data)} is not a multiple of "
                f"{self.entry_dtype.itemsize}"
            )
        self._set_entries(data)
        self.check(log_size)

    def _set_entries(self, data: bytes) -> None:
        usable = len(data) - len(data) % self.entry_dtype.itemsize
        self._array = np.frombuffer(data[:usable], dtype=self.entry_dtype).copy()
        self._count = len(self._array)

    def check(self, log_size: int) -> None:
        arr = self.entries()
        if len(arr):
            keys = arr[self.key_field]
            if np.any(np.diff(keys.astype(np.int64)) <= 0):
                raise CorruptIndexError(f"{self.path.name}: entries not strictly increasing")
            self._check_positions(arr, log_size)

    def _check_positions(self, arr: np.ndarray, log_size: int) -> None:
        pos = arr["position"].astype(np.int64)
        if np.any(np.diff(pos) <= 0) or int(pos[-1]) >= max(log_size, 1) or int(pos[0]) != 0:
            raise CorruptIndexError(f"{self.path.name}: positions out of order or past the log end")

    def map_readonly(self) -> None:
        """Closed segment: drop the in-memory copy and serve lookups from an mmap of the file."""
        self.close()
        size = os.path.getsize(self.path) if self.path.exists() else 0
        size -= size % self.entry_dtype.itemsize
        self._array = np.zeros(0, dtype=self.entry_dtype)
        self._count = 0
        if size:
            with open(self.path, "rb") as f:
                self._mmap = mmap.mmap(f.fileno(), size, prot=mmap.PROT_READ)

    def reset(self) -> None:
        """Start empty (used when rebuilding from the log)."""
        self.close()
        self._array = np.zeros(0, dtype=self.entry_dtype)
        self._count = 0
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o640)
        os.close(fd)

    # -- access --------------------------------------------------------------------------

    def entries(self) -> np.ndarray:
        if self._mmap is not None:
            return np.frombuffer(self._mmap, dtype=self.entry_dtype)
        return self._array[: self._count]

    def __len__(self) -> int:
        if self._mmap is not None:
            return len(self._mmap) // self.entry_dtype.itemsize
        return self._count

    def last_position(self) -> int:
        arr = self.entries()
        return int(arr["position"][-1]) if len(arr) else 0

    def lookup(self, offset: int) -> tuple[int, int]:
        """(base offset, position) of the last entry at or before ``offset``; (segment base, 0)
        when there is none. The batch containing ``offset`` starts at or after it."""
        arr = self.entries()
        rel = offset - self.base_offset
        if not len(arr) or rel < 0:
            return self.base_offset, 0
        i = int(np.searchsorted(arr["relative_offset"], min(rel, 0xFFFFFFFF), side="right")) - 1
        if i < 0:
            return self.base_offset, 0
        return self.base_offset + int(arr["relative_offset"][i]), int(arr["position"][i])

    # -- writing -------------------------------------------------------------------------

    def append(self, offset: int, position: int) -> None:
        rel = offset - self.base_offset
        if not 0 <= rel <= 0xFFFFFFFF or not 0 <= position <= 0xFFFFFFFF:
            raise CorruptIndexError(f"{self.path.name}: entry ({offset}, {position}) out of range")
        self._write((rel, position))

    def _write(self, entry: tuple) -> None:
        if self._mmap is not None:
            raise CorruptIndexError(f"{self.path.name}: append to a closed segment's index")
        if self._fd is None:
            self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o640)
        if self._count == len(self._array):
            grown = np.zeros(max(64, 2 * len(self._array)), dtype=self.entry_dtype)
            grown[: self._count] = self._array[: self._count]
            self._array = grown
        self._array[self._count] = entry
        os.write(self._fd, self._array[self._count : self._count + 1].tobytes())
        self._count += 1

    def truncate_entries(self, count: int) -> None:
        """Keep the first ``count`` entries (used by recovery and log truncation)."""
        if self._mmap is not None:
            self.close()
            self.load_unchecked()
        keep = count * self.entry_dtype.itemsize
        self._count = min(self._count, count)
        with open(self.path, "r+b" if self.path.exists() else "w+b") as f:
            f.truncate(keep)

    def load_unchecked(self) -> None:
        try:
            with open(self.path, "rb") as f:
                self._set_entries(f.read())
        except FileNotFoundError:
            self._set_entries(b"")

    def flush(self) -> None:
        if self._fd is not None:
            os.fsync(self._fd)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        if self._mmap is not None:
            try:
                self._mmap.close()
            except BufferError:
                pass  # a numpy view still uses it; the map is released with the last view
            self._mmap = None
