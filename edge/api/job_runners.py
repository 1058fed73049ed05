"""Job runners: the bridge from the jobs API to the replay and export libraries.

Each runs in a job's child process (see ``edge.api.jobs``) with params already validated
and resolved by the route (endpoint, topics, window in ns), writes only into ``out_dir``,
reports progress and honours cancels.

Contract with the libraries (keyword arguments; a function gets only those it declares,
unless it takes ``**kwargs``):

- ``edge.export.run_export(endpoint, topics, start_ns, end_ns, format, out_dir, progress,
  cancelled) -> dict | None``
- ``edge.replay.run_replay(endpoint, topics, start_ns, end_ns, speed, prefix, loop,
  progress, cancelled) -> dict | None``

``progress(fraction: float | None, message: str = "")`` reports (and raises JobCancelled
once a cancel was asked, so a library that only reports still stops); ``cancelled()``
polls. The returned dict (e.g. counts) lands in the job's ``result``; files the export
leaves at the top of ``out_dir`` are listed and downloadable.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .jobs import JobCancelled, Reporter

ENTRY_POINTS = {"export": ("edge.export", "run_export"), "replay": ("edge.replay", "run_replay")}


def available(kind: str) -> bool:
    """Whether the library entry point behind a job kind exists in this build."""
    if kind not in ENTRY_POINTS:
        return False
    module_name, func_name = ENTRY_POINTS[kind]
    try:
        return callable(getattr(importlib.import_module(module_name), func_name, None))
    except Exception:  # a half-installed library is "not available"
        return False


def _call(fn: Callable[..., Any], **kwargs: Any) -> Any:
    params = inspect.signature(fn).parameters
    if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        kwargs = {k: v for k, v in kwargs.items() if k in params}
    return fn(**kwargs)


def _progress(report: Reporter) -> Callable[..., None]:
    def progress(fraction: float | None = None, message: str = "") -> None:
        if report.cancelled():
            raise JobCancelled()
        report.progress(fraction, message)

    return progress


def _run(kind: str, report: Reporter, **kwargs: Any) -> dict[str, Any]:
    module_name, func_name = ENTRY_POINTS[kind]
    fn = getattr(importlib.import_module(module_name), func_name)
    result = _call(fn, progress=_progress(report), cancelled=report.cancelled, **kwargs)
    return result if isinstance(result, dict) else {}


def run_export(params: dict[str, Any], out_dir: Path, report: Reporter) -> dict[str, Any]:
    return _run("export", report, endpoint=params["endpoint"], topics=params["topics"],
                start_ns=params["start_ns"], end_ns=params["end_ns"], format=params["format"], out_dir=out_dir)


def run_replay(params: dict[str, Any], out_dir: Path, report: Reporter) -> dict[str, Any]:
    return _run("replay", report, endpoint=params["endpoint"], topics=params["topics"],
                start_ns=params["start_ns"], end_ns=params["end_ns"], speed=params["speed"],
                prefix=params["prefix"], loop=params["loop"])
