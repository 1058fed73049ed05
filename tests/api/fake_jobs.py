"""Job runners for the jobs tests (imported by name in the job's child process)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any


def instant(params: dict[str, Any], out_dir: Path, report) -> dict[str, Any]:
    report.progress(0.5, "half way")
    (out_dir / "result.txt").write_text(f"topics={','.join(params.get('topics', []))}\n")
    report.progress(1.0, "written")
    return {"records": 3}


def failing(params: dict[str, Any], out_dir: Path, report) -> dict[str, Any]:
    raise ValueError("the window holds no records")


def stubborn(params: dict[str, Any], out_dir: Path, report) -> dict[str, Any]:
    """Ignores cancels: the manager must terminate it."""
    report.progress(0.1, "sleeping")
    time.sleep(600)
    return {}


def polite(params: dict[str, Any], out_dir: Path, report) -> dict[str, Any]:
    for i in range(600):
        if report.cancelled():
            return {}
        report.progress(i / 600, f"step {i}")
        time.sleep(0.05)
    return {}
