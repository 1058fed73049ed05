"""Background jobs (export, replay): each runs in its own process, with progress and cancel.

Guarantees:
- A job runs in a child process (multiprocessing "spawn": no fork of a threaded server),
  so a crash, a hang or a CPU-heavy encode in an export cannot take the API down, and a
  cancel always works: the child is asked to stop (``cancelled()`` turns true), then
  terminated after ``grace_s``, then killed.
- At most ``max_running`` jobs run at once; more are queued (up to ``max_queued``, then
  ``TooManyJobs``). Finished jobs are kept for listing (the newest ``keep`` of them).
- A job writes only inside its own directory ``export_dir/<job id>/``; its files are
  listed in ``result.files`` by name, and ``file_path`` serves nothing else (no path from
  a request ever reaches the file system).
- States: queued → running → succeeded | failed | cancelled; ``progress`` in [0, 1] when
  the runner reports it. A child that dies without reporting makes the job failed with
  its exit code.
- A job dies with the API process, however the API dies (even SIGKILL): the child watches
  its parent's sentinel and exits when it closes. (No parent-death signal here: it would
  fire when the *thread* that started the job ends.)

A runner is a module-level function ``run(params: dict, out_dir: Path, report: Reporter)
-> dict`` named "module:function" (importable in the child); ``report.progress(f, msg)``
reports, ``report.cancelled()`` polls for a cancel.
"""

from __future__ import annotations

import importlib
import itertools
import logging
import multiprocessing as mp
import os
import secrets
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from multiprocessing.synchronize import Event as EventFlag
from pathlib import Path
from typing import Any

from .errors import Conflict, NotFound, TooManyJobs

JOB_ORPHANED_EXIT = 3  # the API process died under a running job

logger = logging.getLogger("edge.api.jobs")

STATES = ("queued", "running", "succeeded", "failed", "cancelled")
FINAL = ("succeeded", "failed", "cancelled")


@dataclass
class Job:
    id: str
    kind: str
    params: dict[str, Any]
    state: str = "queued"
    progress: float | None = None
    message: str = ""
    created_ns: int = field(default_factory=time.time_ns)
    started_ns: int | None = None
    finished_ns: int | None = None
    error: str | None = None
    result: dict[str, Any] = field(default_factory=dict)
    pid: int | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


class Reporter:
    """What a runner sees in the child: progress reports and the cancel flag."""

    def __init__(self, conn: Connection, cancel_event: EventFlag) -> None:
        self._conn = conn
        self._cancel = cancel_event
        self._last = 0.0

    def progress(self, fraction: float | None, message: str = "") -> None:
        now = time.monotonic()
        if now - self._last < 0.2 and (fraction is None or fraction < 1):
            return  # at most 5 reports a second
        self._last = now
        value = None if fraction is None else min(1.0, max(0.0, float(fraction)))
        self._conn.send(("progress", value, str(message)[:500]))

    def cancelled(self) -> bool:
        return bool(self._cancel.is_set())


class JobCancelled(Exception):
    """Raised by runners that stop early because of a cancel."""


def _exit_when_parent_dies() -> None:
    parent = mp.parent_process()
    if parent is None:
        return

    def watch() -> None:
        parent.join()  # returns when the parent's sentinel closes: the API process is gone
        os._exit(JOB_ORPHANED_EXIT)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def _child_main(target: str, params: dict[str, Any], out_dir: str, conn: Connection, cancel_event: EventFlag) -> None:
    """Entry point of a job's process: run the runner and report its outcome on ``conn``."""
    _exit_when_parent_dies()
    reporter = Reporter(conn, cancel_event)
    try:
        module_name, _, func_name = target.partition(":")
        runner = getattr(importlib.import_module(module_name), func_name)
        result = runner(params, Path(out_dir), reporter)
        if cancel_event.is_set():
            conn.send(("cancelled", "cancelled"))
        else:
            conn.send(("done", result or {}))
    except JobCancelled:
        conn.send(("cancelled", "cancelled"))
    except Exception as exc:  # reported to the parent, which logs it
        message = getattr(exc, "message", None) or str(exc) or type(exc).__name__
        conn.send(("error", f"{type(exc).__name__}: {message}"[:2000]))
    finally:
        conn.close()


class JobManager:
    def __init__(self, export_dir: Path, runners: dict[str, str], *, max_running: int = 2,
                 max_queued: int = 16, keep: int = 100, grace_s: float = 5.0,
                 on_change: Callable[[list[dict[str, Any]]], None] | None = None,
                 availability: Callable[[str], bool] | None = None):
        self.availability = availability
        self.export_dir = Path(export_dir)
        self.runners = dict(runners)
        self.max_running = max_running
        self.max_queued = max_queued
        self.keep = keep
        self.grace_s = grace_s
        self.on_change = on_change
        self._jobs: dict[str, Job] = {}
        self._procs: dict[str, Any] = {}
        self._cancels: dict[str, Any] = {}
        self._lock = threading.RLock()
        self._ctx = mp.get_context("spawn")
        self._seq = itertools.count(1)
        self._closed = False

    # -- API -----------------------------------------------------------------------------

    def submit(self, kind: str, params: dict[str, Any]) -> Job:
        if kind not in self.runners:
            raise NotFound(f"unknown job kind {kind!r} (known: {', '.join(sorted(self.runners))})")
        with self._lock:
            if self._closed:
                raise Conflict("the API is shutting down")
            queued = sum(1 for j in self._jobs.values() if j.state == "queued")
            if queued >= self.max_queued:
                raise TooManyJobs(f"{queued} jobs are already waiting; try again later")
            job_id = f"{time.strftime('%Y%m%d-%H%M%S')}-{next(self._seq)}-{secrets.token_hex(3)}"
            job = Job(job_id, kind, dict(params))
            self._jobs[job_id] = job
            self._trim()
            self._start_queued()
        self._changed()
        return job

    def available(self, kind: str) -> bool:
        """Whether jobs of this kind can run in this build (their library is installed)."""
        if kind not in self.runners:
            return False
        return True if self.availability is None else self.availability(kind)

    def get(self, job_id: str) -> Job:
        with self._lock:
            job = self._jobs.get(job_id)
        if job is None:
            raise NotFound(f"no job {job_id!r}")
        return job

    def list(self) -> list[Job]:
        with self._lock:
            return sorted(self._jobs.values(), key=lambda j: j.created_ns, reverse=True)

    def cancel(self, job_id: str) -> Job:
        with self._lock:
            job = self.get(job_id)
            if job.state in FINAL:
                return job
            if job.state == "queued":
                self._finish(job, "cancelled", message="cancelled before it started")
            else:
                job.message = "cancelling"
                self._cancels[job_id].set()
                threading.Thread(target=self._reap_after_grace, args=(job_id,), daemon=True).start()
        self._changed()
        return job

    def file_path(self, job_id: str, name: str) -> Path:
        """The path of a file the job listed in its result; NotFound for anything else."""
        job = self.get(job_id)
        names = {f.get("name") for f in job.result.get("files", []) if isinstance(f, dict)}
        if name not in names:
            raise NotFound(f"job {job_id} has no file {name!r}")
        job_dir = (self.export_dir / job_id).resolve()
        path = (job_dir / name).resolve()
        if job_dir not in path.parents or not path.is_file():
            raise NotFound(f"job {job_id} has no file {name!r}")
        return path

    def close(self) -> None:
        """Cancel everything and wait for the children (SIGTERM then SIGKILL)."""
        with self._lock:
            self._closed = True
            running = [j for j in self._jobs.values() if j.state == "running"]
            for job in self._jobs.values():
                if job.state == "queued":
                    self._finish(job, "cancelled", message="API stopped")
            for job in running:
                self._cancels[job.id].set()
        for job in running:
            proc = self._procs.get(job.id)
            if proc is not None:
                proc.join(self.grace_s)
                if proc.is_alive():
                    proc.terminate()
                    proc.join(2)
                if proc.is_alive():
                    proc.kill()
                    proc.join(2)

    # -- internals -----------------------------------------------------------------------

    def _changed(self) -> None:
        if self.on_change is not None:
            try:
                self.on_change([j.to_json() for j in self.list()[:50]])
            except Exception:
                logger.exception("job listener failed")

    def _trim(self) -> None:
        finished = sorted((j for j in self._jobs.values() if j.state in FINAL), key=lambda j: j.created_ns)
        for job in finished[: max(0, len(self._jobs) - self.keep)]:
            del self._jobs[job.id]

    def _start_queued(self) -> None:
        running = sum(1 for j in self._jobs.values() if j.state == "running")
        for job in sorted(self._jobs.values(), key=lambda j: j.created_ns):
            if running >= self.max_running or self._closed:
                return
            if job.state == "queued":
                self._launch(job)
                running += 1

    def _launch(self, job: Job) -> None:
        out_dir = self.export_dir / job.id
        out_dir.mkdir(parents=True, exist_ok=True)
        parent_conn, child_conn = self._ctx.Pipe(duplex=False)
        cancel = self._ctx.Event()
        proc = self._ctx.Process(target=_child_main, name=f"edge-job-{job.id}", daemon=True,
                                 args=(self.runners[job.kind], job.params, str(out_dir), child_conn, cancel))
        job.state, job.started_ns, job.message = "running", time.time_ns(), "starting"
        self._procs[job.id] = proc
        self._cancels[job.id] = cancel
        proc.start()
        job.pid = proc.pid
        child_conn.close()
        threading.Thread(target=self._follow, args=(job, proc, parent_conn), name=f"job-{job.id}", daemon=True).start()
        logger.info("job started: %s %s", job.kind, job.id)

    def _follow(self, job: Job, proc: BaseProcess, conn: Connection) -> None:
        outcome: tuple[Any, ...] | None = None
        while True:
            try:
                message = conn.recv()
            except (EOFError, OSError):
                break
            if message[0] == "progress":
                with self._lock:
                    job.progress, job.message = message[1], message[2] or job.message
                self._changed()
            else:
                outcome = message
        proc.join(self.grace_s + 5)
        conn.close()
        with self._lock:
            if outcome is None:
                if self._cancels[job.id].is_set():
                    self._finish(job, "cancelled", message="cancelled")
                else:
                    self._finish(job, "failed", error=f"job process exited with code {proc.exitcode} without a result")
            elif outcome[0] == "done":
                job.result = self._describe_files(job, outcome[1])
                self._finish(job, "succeeded", message="done")
            elif outcome[0] == "cancelled":
                self._finish(job, "cancelled", message="cancelled")
            else:
                self._finish(job, "failed", error=str(outcome[1]))
            self._procs.pop(job.id, None)
            self._start_queued()
        self._changed()

    def _describe_files(self, job: Job, result: dict[str, Any]) -> dict[str, Any]:
        """The runner's result plus every file it left at the top of the job directory."""
        job_dir = self.export_dir / job.id
        files = []
        for path in sorted(job_dir.iterdir()) if job_dir.is_dir() else []:
            if path.is_file() and not path.is_symlink():
                files.append({"name": path.name, "bytes": path.stat().st_size})
        clean = {k: v for k, v in (result or {}).items() if k != "files" and isinstance(k, str)}
        return {**clean, "files": files}

    def _finish(self, job: Job, state: str, *, message: str = "", error: str | None = None) -> None:
        job.state = state
        job.finished_ns = time.time_ns()
        job.message = message or state
        job.error = error
        if state == "succeeded":
            job.progress = 1.0
        if state != "succeeded":
            job_dir = self.export_dir / job.id
            if job_dir.is_dir() and not any(job_dir.iterdir()):
                shutil.rmtree(job_dir, ignore_errors=True)
        logger.info("job %s: %s %s%s", state, job.kind, job.id, f" ({error})" if error else "")

    def _reap_after_grace(self, job_id: str) -> None:
        proc = self._procs.get(job_id)
        if proc is None:
            return
        proc.join(self.grace_s)
        if proc.is_alive():
            logger.warning("job %s ignored the cancel for %.0fs: terminating it", job_id, self.grace_s)
            proc.terminate()
            proc.join(2)
            if proc.is_alive():
                proc.kill()


def default_runners() -> dict[str, str]:
    return {"export": "edge.api.job_runners:run_export", "replay": "edge.api.job_runners:run_replay"}


def pid_alive(pid: int) -> bool:  # used by tests to prove cancel ends the child
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
