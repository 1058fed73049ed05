"""The broker's heap policy: memory of a large batch goes back to the OS when it is freed.

glibc serves allocations above its mmap threshold (128 KiB at start) with their own
mappings, unmapped on free; but it raises that threshold, up to 32 MiB, each time such a
block is freed. After the first few multi-megabyte batches (raw frames, LiDAR sweeps, 16 MiB
fetch reads) every later one is carved from the heap instead, and the heap keeps its
high-water mark: measured on the benchmark's raw-camera then mixed workloads, broker RSS
stayed at 192 MB instead of 100 MB. Fixing the threshold (which also turns the adjustment
off) keeps RSS at what is in use, for the price of fresh pages per large batch.

``bound_heap`` does it with ``mallopt``; it is a no-op where the C library has no mallopt
(musl, macOS) and reports whether it applied.
"""

from __future__ import annotations

import ctypes
import ctypes.util

M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter numbers (malloc.h)
MMAP_THRESHOLD_BYTES = 128 * 1024  # glibc's initial value, kept fixed


def bound_heap(threshold: int = MMAP_THRESHOLD_BYTES) -> bool:
    """Fix glibc's mmap threshold at ``threshold`` bytes; True when it was applied."""
    name = ctypes.util.find_library("c")
    if not name:
        return False
    try:
        mallopt = ctypes.CDLL(name).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return mallopt(M_MMAP_THRESHOLD, threshold) == 1
