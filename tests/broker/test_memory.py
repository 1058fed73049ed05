"""broker.memory: the heap trimmer gives freed batches' memory back, at most once per interval."""

from __future__ import annotations

import subprocess
import sys

from broker.memory import HeapTrimmer

PROBE = r"""
import gc, sys
import psutil
from broker.memory import HeapTrimmer
me = psutil.Process()
for _ in range(3):  # free a few large blocks: glibc raises its mmap threshold after these
    blocks = [bytearray(4 * 1024 * 1024) for _ in range(4)]
    del blocks
# many blocks now carved from the heap; all but the last freed: the heap cannot shrink
keep = [bytearray(3 * 1024 * 1024) for _ in range(40)]
for i in range(len(keep) - 1):
    keep[i] = None
gc.collect()
before = me.memory_info().rss // (1024 * 1024)
trimmer = HeapTrimmer(interval_s=60)
first = trimmer.maybe_trim(0.0) if sys.argv[1] == "trim" else None
again = trimmer.maybe_trim(1.0) if sys.argv[1] == "trim" else None
print(before, me.memory_info().rss // (1024 * 1024), first, again)
"""


def run_probe(mode: str) -> list[str]:
    return subprocess.run([sys.executable, "-c", PROBE, mode],
                          capture_output=True, text=True, check=True).stdout.split()


def test_trim_gives_freed_heap_back_once_per_interval():
    before, after, first, again = run_probe("trim")
    assert int(before) - int(after) > 60, (before, after)  # 39 freed 3 MiB blocks
    assert (first, again) == ("True", "False")  # the second call came within the interval
    before, after, _, _ = run_probe("none")
    assert int(before) - int(after) < 10  # without the trim the heap keeps them


def test_trimmer_reports_whether_the_c_library_has_malloc_trim():
    assert HeapTrimmer().available  # glibc on every machine this appliance targets
