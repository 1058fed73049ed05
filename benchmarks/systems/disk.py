"""The disk itself, measured with ``dd`` on the filesystem the brokers write to: the ceiling.

- ``written``: ``dd bs=1M`` into the page cache (what "written" acks can at best reach);
- ``durable``: ``dd bs=1M conv=fdatasync`` (one sync at the end: the device's sequential rate)
  and ``dd bs=1M oflag=dsync`` (a sync per 1 MiB write, the analogue of fsync per batch);
- ``read``: ``dd of=/dev/null bs=1M`` of a file just written (page cache), the replay ceiling.
MB = 10^6 bytes.
"""

from __future__ import annotations

import re
import subprocess
import time
from pathlib import Path

from ..common import dd_write_mb_s


def _dd_mb_s(args: list[str]) -> float:
    started = time.perf_counter()
    out = subprocess.run(args, capture_output=True, text=True, check=True)
    elapsed = time.perf_counter() - started
    match = re.search(r"(\d+) bytes .* copied, ([\d.]+) s", out.stderr)
    if match:
        return int(match.group(1)) / float(match.group(2)) / 1e6
    return 0.0 if elapsed == 0 else float("nan")


def measure(directory: Path, total_mb: int) -> dict[str, float]:
    """dd figures (MB/s) for ``total_mb`` MiB in 1 MiB blocks on ``directory``'s filesystem."""
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / "dd-read.bin"
    results = {
        "page_cache_write_mb_s": dd_write_mb_s(directory, total_mb),
        "fdatasync_write_mb_s": dd_write_mb_s(directory, total_mb, fdatasync=True),
        "dsync_1mib_write_mb_s": _dd_mb_s(["dd", "if=/dev/zero", f"of={target}", "bs=1M",
                                           f"count={max(64, total_mb // 8)}", "oflag=dsync"]),
    }
    subprocess.run(["dd", "if=/dev/zero", f"of={target}", "bs=1M", f"count={total_mb}"],
                   capture_output=True, check=True)
    results["page_cache_read_mb_s"] = _dd_mb_s(["dd", f"if={target}", "of=/dev/null", "bs=1M"])
    target.unlink()
    return results


def ceiling_for(disk: dict[str, float], mode: str, reading: bool = False) -> float | None:
    """The dd figure a workload in ``mode`` is compared with."""
    if not disk:
        return None
    if reading:
        return disk["page_cache_read_mb_s"]
    return disk["fdatasync_write_mb_s"] if mode == "durable" else disk["page_cache_write_mb_s"]
