"""Supervisor of the appliance's processes for ``edge up``.

Guarantees:
- Children are started in dependency order (broker first, and only once it answers), each
  in its own process group with its log in ``<data_dir>/logs/<name>.log``.
- A child that exits unexpectedly is restarted with exponential backoff (0.5 s doubling to
  30 s; reset after 30 s of healthy uptime); restarts are counted and logged.
- ``stop()`` ends children in reverse layers: drivers, then mirror and API, then the broker,
  each with SIGTERM and, after a grace period, SIGKILL; nothing is left behind.
- A finite child (e.g. a file-source driver) that exits 0 is not restarted.
- Children die with the supervisor, however it dies (even SIGKILL): each child asks the
  kernel for SIGKILL when its parent exits (``prctl(PR_SET_PDEATHSIG)``, set between fork
  and exec) and exits at once if the supervisor was already gone by then. No orphaned
  broker keeps the data directory while a new ``edge up`` starts.
- Child logs are created (or tightened to) 0640: readable by the appliance's group only.
- Each child has a state (running, backoff, finished, stopped) and, once it has exited, the
  last error line it wrote to its log in that run (``Child.last_error``): what ``edge up``
  shows for a child that keeps failing, e.g. ``api_refused reason="port 8080 in use"``.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from broker.logs import log_event

logger = logging.getLogger("edge.supervisor")

LOG_FILE_MODE = 0o640
PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def _load_prctl() -> Callable[..., int] | None:
    """libc's prctl, loaded once in the supervisor (the child between fork and exec only
    calls it); None where there is no such call (not Linux)."""
    try:
        import ctypes

        prctl = ctypes.CDLL(None, use_errno=True).prctl
        prctl.argtypes = [ctypes.c_int] + [ctypes.c_ulong] * 4  # unsigned long args, as the kernel reads them
        prctl.restype = ctypes.c_int
        return prctl
    except (OSError, AttributeError):
        return None


_prctl = _load_prctl()


def die_with_parent_hook(signal_number: int = signal.SIGKILL) -> Callable[[], None] | None:
    """A ``preexec_fn`` that makes the child receive ``signal_number`` when this process
    exits, and exit at once if this process is already gone (the fork/prctl race). The
    kernel sends it when the *thread* that forked exits: spawn from a thread that lives as
    long as the supervisor (``edge up`` uses its main thread)."""
    if _prctl is None:
        return None
    parent = os.getpid()

    def hook() -> None:
        _prctl(PR_SET_PDEATHSIG, signal_number, 0, 0, 0)
        if os.getppid() != parent:
            os._exit(1)

    return hook


LAYER_BROKER, LAYER_SERVICES, LAYER_DRIVERS = 0, 1, 2


@dataclass
class ChildSpec:
    name: str
    argv: list[str]
    layer: int
    env: dict[str, str] = field(default_factory=dict)


@dataclass
class Child:
    spec: ChildSpec
    proc: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    restarts: int = 0
    backoff: float = 0.5
    restart_at: float | None = None
    finished: bool = False
    last_exit: int | None = None
    log_offset: int = 0  # where this run's output starts in the child's log
    last_error: str | None = None

    @property
    def state(self) -> str:
        if self.proc is not None:
            return "running"
        if self.finished:
            return "finished" if self.last_exit == 0 else "stopped"
        return "backoff" if self.restart_at is not None else "stopped"

    def describe(self, now: float) -> dict[str, Any]:
        """State, pid, restarts, last exit, seconds to the next start and last error line."""
        return {"name": self.spec.name, "state": self.state, "pid": self.proc.pid if self.proc else None,
                "restarts": self.restarts, "last_exit": self.last_exit,
                "restart_in_s": None if self.restart_at is None else max(0.0, self.restart_at - now),
                "last_error": self.last_error}


ERROR_MARKERS = ("level=ERROR", "level=CRITICAL", "Error", "error", "refused", "failed", "Traceback")
LOG_TAIL_BYTES = 16384


def last_error_line(log_path: Path, start: int) -> str | None:
    """The last line written since ``start`` that reads as an error (else the last line at
    all), trimmed to 300 characters; None for a run that wrote nothing."""
    try:
        with open(log_path, "rb") as f:
            f.seek(max(start, f.seek(0, os.SEEK_END) - LOG_TAIL_BYTES))
            tail = f.read().decode("utf-8", "replace")
    except OSError:
        return None
    lines = [line.strip() for line in tail.splitlines() if line.strip()]
    if not lines:
        return None
    errors = [line for line in lines if any(marker in line for marker in ERROR_MARKERS)]
    return (errors or lines)[-1][:300]


class Supervisor:
    def __init__(self, specs: list[ChildSpec], log_dir: Path, *, grace_s: float = 15.0,
                 max_backoff_s: float = 30.0, healthy_after_s: float = 30.0):
        self.children = {spec.name: Child(spec) for spec in specs}
        self.log_dir = log_dir
        self.grace_s = grace_s
        self.max_backoff_s = max_backoff_s
        self.healthy_after_s = healthy_after_s
        log_dir.mkdir(parents=True, exist_ok=True)

    # -- starting ------------------------------------------------------------------------

    def _spawn(self, child: Child) -> None:
        spec = child.spec
        with open(self.log_path(spec.name), "ab", buffering=0) as log_file:
            child.log_offset = log_file.seek(0, os.SEEK_END)
            os.fchmod(log_file.fileno(), LOG_FILE_MODE)  # also a log created 0644 by an older version
            child.proc = subprocess.Popen(
                spec.argv, stdin=subprocess.DEVNULL, stdout=log_file, stderr=subprocess.STDOUT,
                env={**os.environ, **spec.env}, start_new_session=True,
                preexec_fn=die_with_parent_hook(),  # noqa: PLW1509 - the hook only calls prctl and getppid
            )
        child.started_at = time.monotonic()
        child.restart_at = None
        log_event(logger, logging.INFO, "child_started", child=spec.name, pid=child.proc.pid, restarts=child.restarts)

    def log_path(self, name: str) -> Path:
        return self.log_dir / f"{name}.log"

    def start(self, wait_ready: Callable[[], None] | None = None) -> None:
        """Start the broker layer, wait for it (``wait_ready``), then every other child."""
        for layer in (LAYER_BROKER, LAYER_SERVICES, LAYER_DRIVERS):
            for child in self.children.values():
                if child.spec.layer == layer:
                    self._spawn(child)
            if layer == LAYER_BROKER and wait_ready is not None:
                wait_ready()

    # -- watching ------------------------------------------------------------------------

    def poll(self) -> None:
        """Reap exited children and restart them when due. Call it a few times a second."""
        now = time.monotonic()
        for child in self.children.values():
            if child.finished:
                continue
            if child.proc is not None:
                code = child.proc.poll()
                if code is None:
                    if now - child.started_at > self.healthy_after_s:
                        child.backoff = 0.5
                    continue
                child.last_exit = code
                child.proc = None
                child.last_error = last_error_line(self.log_path(child.spec.name), child.log_offset)
                if code == 0 and child.spec.layer == LAYER_DRIVERS:
                    child.finished = True  # a file source that reached its end
                    log_event(logger, logging.INFO, "child_finished", child=child.spec.name)
                    continue
                child.restart_at = now + child.backoff
                log_event(logger, logging.WARNING, "child_exited", child=child.spec.name, code=code,
                          restart_in_s=f"{child.backoff:.1f}", restarts=child.restarts,
                          last_error=child.last_error or "-")
                child.backoff = min(child.backoff * 2, self.max_backoff_s)
            elif child.restart_at is not None and now >= child.restart_at:
                child.restarts += 1
                self._spawn(child)

    def describe(self) -> list[dict[str, Any]]:
        """Every child's state for ``edge up``'s view (see ``Child.describe``)."""
        now = time.monotonic()
        return [child.describe(now) for child in self.children.values()]

    def pids(self) -> dict[str, int | None]:
        return {name: (c.proc.pid if c.proc else None) for name, c in self.children.items()}

    # -- stopping ------------------------------------------------------------------------

    def stop(self, before_broker: Callable[[], None] | None = None) -> dict[str, int | None]:
        """Stop drivers, then services, then (after ``before_broker``) the broker.
        Returns each child's exit code."""
        codes: dict[str, int | None] = {}
        for layer in (LAYER_DRIVERS, LAYER_SERVICES, LAYER_BROKER):
            if layer == LAYER_BROKER and before_broker is not None:
                before_broker()
            group = [c for c in self.children.values() if c.spec.layer == layer]
            for child in group:
                child.restart_at = None
                if child.proc is not None and child.proc.poll() is None:
                    child.proc.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + self.grace_s
            for child in group:
                if child.proc is None:
                    codes[child.spec.name] = child.last_exit
                    continue
                try:
                    codes[child.spec.name] = child.proc.wait(max(0.1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    log_event(logger, logging.ERROR, "child_killed", child=child.spec.name,
                              reason=f"no exit {self.grace_s:.0f}s after SIGTERM")
                    os.killpg(child.proc.pid, signal.SIGKILL)
                    codes[child.spec.name] = child.proc.wait()
                child.proc = None
                child.finished = True
        return codes
