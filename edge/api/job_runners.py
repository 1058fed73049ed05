"""Job runners: the bridge from the jobs API to the replay and export libraries.

Each runs in a job's child process (see ``edge.api.jobs``) with params already validated
and resolved by the route (endpoint, topics, window in ns), writes only into ``out_dir``,
reports progress and honours cancels.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

from .jobs import JobCancelled, Reporter


def available(kind: str) -> bool:
    """Whether the library behind a job kind is installed in this build."""
    module = {"export": "edge.export", "replay": "edge.replay"}.get(kind)
    if module is None:
        return False
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def run_export(params: dict[str, Any], out_dir: Path, report: Reporter) -> dict[str, Any]:
    from edge import export  # noqa: F401 - wired to the library's entry point below

    run = getattr(export, "run_export")

    def progress(fraction: float | None = None, message: str = "") -> None:
        if report.cancelled():
            raise JobCancelled()
        report.progress(fraction, message)

    result = run(endpoint=params["endpoint"], topics=params["topics"], start_ns=params["start_ns"],
                 end_ns=params["end_ns"], format=params["format"], out_dir=out_dir, progress=progress)
    return result if isinstance(result, dict) else {}


def run_replay(params: dict[str, Any], out_dir: Path, report: Reporter) -> dict[str, Any]:
    from edge import replay  # noqa: F401

    run = getattr(replay, "run_replay")

    def progress(fraction: float | None = None, message: str = "") -> None:
        if report.cancelled():
            raise JobCancelled()
        report.progress(fraction, message)

    result = run(endpoint=params["endpoint"], topics=params["topics"], start_ns=params["start_ns"],
                 end_ns=params["end_ns"], speed=params["speed"], prefix=params["prefix"],
                 loop=params["loop"], progress=progress)
    return result if isinstance(result, dict) else {}
