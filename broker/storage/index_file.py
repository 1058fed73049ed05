"""What both sparse indexes of a segment share: a file of fixed-width entries (Kafka's AbstractIndex).

Format: entries of one numpy structured dtype (little-endian, no header), back to back;
each kind of index (``offset_index``, ``time_index``) is a small subclass naming its dtype,
its load checks, its lookups and its append (siblings: neither index is a kind of the other).

Invariants kept here: the in-memory entries are the file's entries; an append writes
exactly one entry at the end of the file (O_APPEND); a closed segment's index is mapped
read-only and refuses appends (CorruptIndexError); a file whose size is not a multiple of
the entry size is corrupt. The index is a cache: never fsynced on the hot path (only when
its segment is sealed or the broker stops) and rebuilt from the log when damaged.
"""

from __future__ import annotations

import mmap
import os
from pathlib import Path

import numpy as np
import numpy.typing as npt

from ..errors import CorruptIndexError

_MIN_CAPACITY = 64
U32_MAX = 0xFFFFFFFF  # relative offsets and positions are u32


class IndexFile:
    """The entries of one index file: in memory (active segment) or mmapped (closed)."""

    def __init__(self, path: Path, base_offset: int, dtype: np.dtype[np.void]):
        self.path = path
        self.base_offset = base_offset
        self.dtype = dtype
        self._fd: int | None = None
        # active segment: entries in a growable numpy array (count used of its capacity)
        self._array: npt.NDArray[np.void] = np.zeros(0, dtype=dtype)
        self._count = 0
        self._mmap: mmap.mmap | None = None

    @property
    def entry_size(self) -> int:
        return self.dtype.itemsize

    # -- loading -------------------------------------------------------------------------

    def _read_entries(self) -> None:
        """Read every entry from disk; CorruptIndexError when missing or of a bad size."""
        try:
            with open(self.path, "rb") as f:
                data = f.read()
        except FileNotFoundError:
            raise CorruptIndexError(f"{self.path.name}: missing") from None
        if len(data) % self.entry_size:
            raise CorruptIndexError(f"{self.path.name}: size {len(data)} is not a multiple of {self.entry_size}")
        self._set_entries(data)

    def load_unchecked(self) -> None:
        """Read the whole entries there are (a missing file is empty)."""
        try:
            with open(self.path, "rb") as f:
                self._set_entries(f.read())
        except FileNotFoundError:
            self._set_entries(b"")

    def _set_entries(self, data: bytes) -> None:
        usable = len(data) - len(data) % self.entry_size
        self._array = np.frombuffer(data[:usable], dtype=self.dtype).copy()
        self._count = len(self._array)

    def check_file_size(self, log_has_data: bool) -> None:
        """Cheap structural check without reading: present, a whole number of entries, and
        not empty when its log holds data."""
        try:
            size = os.path.getsize(self.path)
        except FileNotFoundError:
            raise CorruptIndexError(f"{self.path.name}: missing") from None
        if size % self.entry_size or (log_has_data and not size):
            raise CorruptIndexError(f"{self.path.name}: size {size} is invalid")

    def last_entry_on_disk(self) -> np.void:
        """The file's last entry, read without loading the rest (the file is not empty)."""
        with open(self.path, "rb") as f:
            f.seek(-self.entry_size, os.SEEK_END)
            entry: np.void = np.frombuffer(f.read(self.entry_size), dtype=self.dtype)[0]
        return entry

    def map_readonly(self) -> None:
        """Closed segment: drop the in-memory copy and serve lookups from an mmap of the file."""
        self.close()
        size = os.path.getsize(self.path) if self.path.exists() else 0
        size -= size % self.entry_size
        self._array = np.zeros(0, dtype=self.dtype)
        self._count = 0
        if size:
            with open(self.path, "rb") as f:
                self._mmap = mmap.mmap(f.fileno(), size, prot=mmap.PROT_READ)

    def reset(self) -> None:
        """Start empty, on disk too (used when rebuilding from the log)."""
        self.close()
        self._array = np.zeros(0, dtype=self.dtype)
        self._count = 0
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o640)
        os.close(fd)

    # -- access --------------------------------------------------------------------------

    def entries(self) -> npt.NDArray[np.void]:
        if self._mmap is not None:
            return np.frombuffer(self._mmap, dtype=self.dtype)
        return self._array[: self._count]

    def __len__(self) -> int:
        if self._mmap is not None:
            return len(self._mmap) // self.entry_size
        return self._count

    # -- writing -------------------------------------------------------------------------

    def _append_entry(self, entry: tuple[int, int]) -> None:
        if self._mmap is not None:
            raise CorruptIndexError(f"{self.path.name}: append to a closed segment's index")
        if self._fd is None:
            self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o640)
        if self._count == len(self._array):
            grown = np.zeros(max(_MIN_CAPACITY, 2 * len(self._array)), dtype=self.dtype)
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
        self._count = min(self._count, count)
        with open(self.path, "r+b" if self.path.exists() else "w+b") as f:
            f.truncate(count * self.entry_size)

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

    def delete(self) -> None:
        self.close()
        self.path.unlink(missing_ok=True)
