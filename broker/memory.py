"""The broker's heap policy: memory of freed batches goes back to the OS within a second.

glibc serves allocations above its mmap threshold (128 KiB at start) with their own
mappings, unmapped on free; but it raises that threshold, up to 32 MiB, each time such a
block is freed. After the first few multi-megabyte batches (raw frames, LiDAR sweeps, 16 MiB
fetch reads) later ones are carved from the heap, which is fast (no page faults, no zeroing)
but keeps the heap at its high-water mark: measured on the benchmark's raw-camera then mixed
workloads, broker RSS stayed at 192 MB where 100 MB were in use.

Two fixes were measured. Fixing the threshold (``mallopt``) kept RSS down but cost 30% of
raw-camera throughput and 40% of replay reads (fresh pages for every large batch and fetch).
``HeapTrimmer`` keeps glibc's fast reuse and calls ``malloc_trim(0)`` at most once per
interval from the broker's loop: free heap pages go back to the OS (``MADV_DONTNEED``) once a
second rather than once per batch. Where the C library has no malloc_trim (musl, macOS) it
does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
from collections.abc import Callable

TRIM_INTERVAL_S = 1.0


def _malloc_trim() -> Callable[[int], int] | None:
    name = ctypes.util.find_library("c")
    if not name:
        return None
    try:
        trim = ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError):
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim


class HeapTrimmer:
    """``maybe_trim(now)`` gives free heap memory back to the OS, at most every ``interval_s``."""

    def __init__(self, interval_s: float = TRIM_INTERVAL_S):
        self.interval_s = interval_s
        self._trim = _malloc_trim()
        self._last = float("-inf")
        self.trims = 0

    @property
    def available(self) -> bool:
        return self._trim is not None

    def maybe_trim(self, now: float) -> bool:
        """Trim if the interval has passed; True when memory was given back."""
        if self._trim is None or now - self._last < self.interval_s:
            return False
        self._last = now
        self.trims += 1
        return self._trim(0) == 1
