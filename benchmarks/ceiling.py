"""The disk's ceiling on the filesystem the brokers write to: fio (Debian package) next to dd.

Sequential 1 MiB blocks, one job, ``psync`` (what a log broker does):
- ``fio_write_buffered``: writes into the page cache (no sync): the ceiling of *written* mode;
- ``fio_write_fdatasync``: ``fdatasync`` after every 1 MiB write: the ceiling of *durable* mode
  (a broker that fsyncs each batch of about that size can at best match it);
- ``fio_read_cached``: reads back the file just written (page cache): the ceiling of a consumer
  reading what was just produced; ``fio_read_direct``: O_DIRECT, the device itself;
- ``dd_write_buffered``, ``dd_write_fdatasync`` (one fdatasync at the end), ``dd_read``: the old
  harness's figures, kept beside fio's for comparison.

Without fio the fio figures are skipped with the reason; dd always runs.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

from . import perfparse

FIO_JOBS = {
    "fio_write_buffered": ["--rw=write"],
    "fio_write_fdatasync": ["--rw=write", "--fdatasync=1"],
    "fio_read_cached": ["--rw=read", "--invalidate=0"],  # fio drops the file from the cache by default
    "fio_read_direct": ["--rw=read", "--direct=1"],
}


class CeilingUnavailable(RuntimeError):
    """fio is missing or failed; the message says which and why."""


def fio_mb_s(directory: Path, job: str, size_mib: int) -> float:
    if shutil.which("fio") is None:
        raise CeilingUnavailable("fio not installed (Debian: fio)")
    command = ["fio", f"--name={job}", f"--filename={directory / 'fio.bin'}", "--bs=1M", f"--size={size_mib}M",
               "--ioengine=psync", "--numjobs=1", "--output-format=json", *FIO_JOBS[job]]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, check=False)
    if result.returncode != 0:
        raise CeilingUnavailable(f"fio {job} exited with {result.returncode}: {result.stderr[-300:]}")
    return perfparse.parse_fio_json(result.stdout)["mb_s"]


def dd_mb_s(directory: Path, job: str, size_mib: int) -> float:
    target = directory / "dd.bin"
    if job == "dd_read":
        args = ["dd", f"if={target}", "of=/dev/null", "bs=1M"]
    else:
        args = ["dd", "if=/dev/zero", f"of={target}", "bs=1M", f"count={size_mib}"]
        if job == "dd_write_fdatasync":
            args.append("conv=fdatasync")
    result = subprocess.run(args, capture_output=True, text=True, timeout=600, check=True)
    return perfparse.parse_dd(result.stderr)["mb_s"]


def measure(directory: Path, size_mib: int, repetitions: int,
            skipped: list[dict[str, str]]) -> dict[str, dict[str, Any]]:
    """Summaries per ceiling figure; fio failures are appended to ``skipped``."""
    directory.mkdir(parents=True, exist_ok=True)
    runs: dict[str, list[float]] = {}
    fio_reason = None
    for _ in range(repetitions):
        for job in ("dd_write_buffered", "dd_read", "dd_write_fdatasync"):
            runs.setdefault(job, []).append(dd_mb_s(directory, job, size_mib))
        (directory / "dd.bin").unlink(missing_ok=True)
        if fio_reason is None:
            try:
                for job in FIO_JOBS:  # the read jobs read the file the write jobs left
                    runs.setdefault(job, []).append(fio_mb_s(directory, job, size_mib))
            except (CeilingUnavailable, perfparse.ToolOutputError, subprocess.TimeoutExpired) as exc:
                fio_reason = str(exc)
            (directory / "fio.bin").unlink(missing_ok=True)
    if fio_reason is not None:
        skipped.append({"what": "ceiling: fio", "reason": fio_reason})
        runs = {job: values for job, values in runs.items() if not job.startswith("fio")}
    return {job: perfparse.summarize(values) for job, values in runs.items()}
