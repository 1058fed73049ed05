"""The broker's background work that must never stop it, and its disk-full state.

- ``BackgroundTasks.run``: a timer task (flush, recovery checkpoint, group expiry, retention,
  parked-fetch expiry, heap trim) that raises, for any reason (ENOSPC, EMFILE, EIO, a bug),
  is counted in ``BrokerStats.background_errors[task]``, logged at most once a minute per
  task with the count of repeats held back, and simply runs again on its next turn.
- ``DiskFullState``: set by the first write refused for lack of space (a produce, an offset
  commit, a background write), cleared by the next write that succeeds or when the data
  directory has ``SPACE_BACK_BYTES`` free again; each transition is one log line. While it
  is set, a refused produce runs the disk guard at most once per ``RETRY_INTERVAL_S`` (not
  once per request, which would rescan every partition on every refused batch).
"""

from __future__ import annotations

import errno
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar, TypeVarTuple

from .errors import BrokerError, DiskFullError, ResourceLimitError, StorageError
from .limits import BrokerStats
from .logs import RateLimiter, log_event, log_event_limited

logger = logging.getLogger("broker.server")

Result = TypeVar("Result")
Args = TypeVarTuple("Args")

REPEATED_LOG_INTERVAL_S = 60.0  # a lasting condition (full disk, stuck guard) logs once a minute
DISK_FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT)


class DiskFullState:
    RETRY_INTERVAL_S = 1.0
    SPACE_BACK_BYTES = 4 * 1024 * 1024

    def __init__(self, data_dir: Path, stats: BrokerStats):
        self.data_dir = data_dir
        self.stats = stats
        self.since_ns: int | None = None
        self._last_retry = float("-inf")

    @property
    def full(self) -> bool:
        return self.since_ns is not None

    def note(self) -> None:
        if self.since_ns is None:
            self.since_ns = time.time_ns()
            log_event(logger, logging.ERROR, "disk_full", data_dir=self.data_dir,
                      effect="writes refused with DiskFullError until space is back; reads go on")

    def clear(self, how: str) -> None:
        if self.since_ns is not None:
            log_event(logger, logging.INFO, "disk_space_back", how=how,
                      full_for_s=f"{(time.time_ns() - self.since_ns) / 1e9:.1f}")
            self.since_ns = None

    def check_space_back(self) -> None:
        if self.since_ns is not None:
            usage = os.statvfs(self.data_dir)
            if usage.f_bavail * usage.f_frsize >= self.SPACE_BACK_BYTES:
                self.clear("free space")

    def retry_due(self) -> bool:
        """Whether a refused write may run the disk guard and try again now."""
        now = time.monotonic()
        if now - self._last_retry < self.RETRY_INTERVAL_S:
            return False
        self._last_retry = now
        return True

    def refusal(self, what: str) -> DiskFullError:
        self.note()
        self.stats.disk_full_refusals += 1
        return DiskFullError(f"disk full: nothing was written to {what}; "
                             "the broker takes writes again as soon as space is freed")

    def error_for(self, exc: OSError, fd_limit: int) -> BrokerError:
        """The typed error for an OSError that reached a request handler."""
        if exc.errno in DISK_FULL_ERRNOS:
            return self.refusal(f"the data directory ({exc.strerror})")
        if exc.errno in (errno.EMFILE, errno.ENFILE):
            return ResourceLimitError(f"out of file descriptors (limit {fd_limit}): {exc.strerror}")
        return StorageError(f"I/O error: {exc.strerror or exc}")


class BackgroundTasks:
    def __init__(self, stats: BrokerStats, disk: DiskFullState, limiter: RateLimiter | None = None):
        self.stats = stats
        self.disk = disk
        self.limiter = limiter or RateLimiter(REPEATED_LOG_INTERVAL_S)

    def run(self, task: str, work: Callable[[*Args], Result], *args: *Args) -> Result | None:
        """``work(*args)``; on an error: counted, logged (rate-limited), None returned."""
        try:
            return work(*args)
        except Exception as exc:  # no background task may stop the broker
            errors = self.stats.background_errors
            errors[task] = errors.get(task, 0) + 1
            if isinstance(exc, DiskFullError) or getattr(exc, "errno", None) in DISK_FULL_ERRNOS:
                self.disk.note()
            log_event_limited(self.limiter, logger, logging.ERROR, "background_task_failed", key=task,
                              task=task, error=repr(exc), failures=errors[task], effect="retried on its next turn")
            return None
