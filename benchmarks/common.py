"""Shared benchmark helpers: the disk ceiling measured with dd, timing, and result output."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

WORK_DIR = Path(os.environ.get("EDGE_BENCH_DIR", Path(__file__).resolve().parent / ".work"))


def work_dir(name: str) -> Path:
    path = WORK_DIR / name
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return path


def dd_write_mb_s(directory: Path, total_mb: int = 2048, fdatasync: bool = False) -> float:
    """MB/s (10^6 bytes) for ``dd`` writing ``total_mb`` MiB of zeros in 1 MiB blocks to the
    same filesystem: the page-cache ceiling (or the disk's, with conv=fdatasync)."""
    target = directory / "dd.bin"
    args = ["dd", "if=/dev/zero", f"of={target}", "bs=1M", f"count={total_mb}"]
    if fdatasync:
        args.append("conv=fdatasync")
    started = time.perf_counter()
    out = subprocess.run(args, capture_output=True, text=True, check=True)
    elapsed = time.perf_counter() - started
    target.unlink()
    match = re.search(r"(\d+) bytes .* copied, ([\d.]+) s", out.stderr)
    if match:
        return int(match.group(1)) / float(match.group(2)) / 1e6
    return total_mb * 1024 * 1024 / elapsed / 1e6


def stop_process(process: subprocess.Popen[Any], timeout_s: float = 60.0) -> None:
    """SIGTERM (a clean shutdown), then SIGKILL if it has not exited within ``timeout_s``."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def drop_file(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


def print_table(title: str, rows: list[tuple[str, str, str]]) -> None:
    print(f"\n{title}")
    width = max(len(r[0]) for r in rows)
    for name, value, note in rows:
        print(f"  {name:<{width}}  {value:>14}  {note}")


def save_results(name: str, results: dict) -> Path:
    out_dir = Path(__file__).resolve().parent / "results"
    out_dir.mkdir(exist_ok=True)
    path = out_dir / f"{name}-{time.strftime('%Y-%m-%d')}.json"
    path.write_text(json.dumps(results, indent=2, sort_keys=True))
    return path
