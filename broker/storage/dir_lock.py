"""Exclusive lock on a data directory: one writer (one broker, one ``edge up``) per directory.

Format: the lock is a file in the data directory (``.broker.lock`` for the broker,
``.edge-up.lock`` for the supervisor; names start with "." so no topic can take them),
holding the holder's pid as decimal text and a newline. The pid is for the message only.

Invariants:
- The lock is ``flock(LOCK_EX | LOCK_NB)`` on that file, held on a close-on-exec
  descriptor for the life of the holder (``hold_for_process`` keeps it until the process
  exits; children do not inherit it). The kernel drops it when the holder dies, however it
  dies, so a stale lock file never blocks a restart: only a living holder does.
- A second holder is refused with ``DataDirLockedError`` whose message names the lock
  file and the holder's pid (from the file; "unknown" when the holder has not written it
  yet). A lock file that cannot be opened (another user's directory) is the same error,
  naming the file and the reason.
- Locks are per open file, so the same process asking twice for one path is refused as
  well; ``hold_for_process`` answers a repeat call from the holding process from its own
  table instead.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
from pathlib import Path

from ..errors import BrokerError
from ..logs import log_event

BROKER_LOCK_FILE = ".broker.lock"
SUPERVISOR_LOCK_FILE = ".edge-up.lock"

_held: dict[Path, DirLock] = {}


class DataDirLockedError(BrokerError):
    """Another living process holds the data directory's lock."""


class DirLock:
    """One held flock on ``path``; ``release()`` (or the holder's exit) gives it up."""

    def __init__(self, path: Path, fd: int):
        self.path = path
        self._fd: int | None = fd

    @classmethod
    def acquire(cls, path: Path, what: str) -> DirLock:
        """Lock ``path`` (created 0640 if missing) or raise DataDirLockedError; ``what``
        names the holder kind in the message ("broker", "edge up")."""
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o640)
        except OSError as exc:  # e.g. another user's data directory
            raise DataDirLockedError(f"cannot lock data directory {path.parent}: {path}: "
                                     f"{exc.strerror or exc}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise DataDirLockedError(f"cannot lock {path}: {exc.strerror or exc}") from None
            raise DataDirLockedError(
                f"data directory {path.parent} is in use: {path} is held by pid {holder_pid(path) or 'unknown'} "
                f"(another {what} on this directory; stop it first)") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        return cls(path, fd)

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the only descriptor drops the flock
            self._fd = None


def holder_pid(path: Path) -> int | None:
    """The pid written in a lock file, None if absent or unreadable."""
    try:
        text = path.read_text(encoding="ascii", errors="replace").strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def check_free(path: Path, what: str) -> None:
    """Raise DataDirLockedError if a living process holds ``path`` now (a probe: the lock
    is taken and given back at once)."""
    if path.exists():
        DirLock.acquire(path, what).release()


def hold_for_process(path: Path, what: str) -> DirLock:
    """Acquire ``path`` and keep it until this process exits (idempotent per process)."""
    path = Path(os.path.abspath(path))
    if path not in _held:
        _held[path] = DirLock.acquire(path, what)
    return _held[path]


def lock_broker_data_dir(data_dir: Path, logger: logging.Logger) -> bool:
    """The broker's one call: hold ``DATA/.broker.lock`` for the process's life. False (with
    one ``broker_refused`` log line naming the lock and its holder) when another holds it."""
    try:
        hold_for_process(Path(data_dir) / BROKER_LOCK_FILE, "broker")
    except DataDirLockedError as exc:
        log_event(logger, logging.ERROR, "broker_refused", reason=exc.message)
        return False
    return True
