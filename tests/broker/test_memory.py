"""broker.memory: the fixed mmap threshold returns a large freed batch's memory to the OS."""

from __future__ import annotations

import subprocess
import sys

PROBE = r"""
import gc, sys
import psutil
from broker.memory import bound_heap
applied = bound_heap() if sys.argv[1] == "bounded" else None
me = psutil.Process()
for _ in range(3):  # free a few large blocks: glibc would raise its threshold after these
    blocks = [bytearray(4 * 1024 * 1024) for _ in range(4)]
    del blocks
# now many blocks just under the raised threshold, then free all but the last
keep = [bytearray(3 * 1024 * 1024) for _ in range(40)]
for i in range(len(keep) - 1):
    keep[i] = None
gc.collect()
print(applied, me.memory_info().rss // (1024 * 1024))
"""


def rss_after(mode: str) -> tuple[str, int]:
    out = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True, check=True).stdout
    applied, rss = out.split()
    return applied, int(rss)


def test_bounded_heap_gives_freed_batches_back():
    applied, bounded = rss_after("bounded")
    assert applied == "True"
    _, default = rss_after("default")
    # with the libc default the 39 freed 3 MiB blocks sit in the heap below the last one
    assert default - bounded > 60, (default, bounded)
    assert bounded < 80
