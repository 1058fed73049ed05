"""Atomic outputs: a file or a directory is written under a temporary name and published
under its final name only when complete.

Guarantees:
- While an export runs, its output lives at ``.<name>.partial-<pid>`` in the final
  path's own directory (same file system, so the publishing ``rename`` is atomic).
- ``commit`` fsyncs every file written (and every directory of a tree), renames the
  temporary to the final name, then fsyncs the parent directory: after ``commit``
  returns, the output survives a power cut; before it, the final name holds either
  nothing or what was there before.
- ``discard`` (also on any exception or cancel inside ``with``) removes the temporary;
  the final name is never touched.
- An existing final path is refused (``ExportError``) unless ``overwrite``: then it is
  replaced only at commit (an existing empty directory is simply replaced).
"""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path

from .errors import ExportError


def fsync_path(path: Path) -> None:
    """fsync one file or directory by path."""
    flags = os.O_RDONLY | (os.O_DIRECTORY if path.is_dir() else 0)
    fd = os.open(path, flags)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_tree(root: Path) -> None:
    """fsync every file and directory under ``root`` (children first)."""
    for dirpath, _dirs, files in os.walk(root, topdown=False):
        for name in files:
            fsync_path(Path(dirpath) / name)
        fsync_path(Path(dirpath))


def _remove(path: Path) -> None:
    try:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()
    except FileNotFoundError:
        pass


class AtomicOutput:
    """One output (``is_dir``: a directory tree, else a single file) published by rename.

    Use as a context manager: write into ``temp``, call ``commit()``; leaving the block
    without a commit (an error, a cancel) removes ``temp``."""

    def __init__(self, final: Path | str, *, is_dir: bool, overwrite: bool = False):
        self.final = Path(final).absolute()
        self.is_dir = is_dir
        self.overwrite = overwrite
        self.temp = self.final.parent / f".{self.final.name}.partial-{os.getpid()}"
        self.committed = False
        self._opened = False

    def open(self) -> Path:
        """Check the final path and create the temporary; returns ``temp``."""
        final = self.final
        if not final.name or final.name in (".", ".."):
            raise ExportError(f"output path {str(final)!r} has no file name")
        if final.exists() or final.is_symlink():
            empty_dir = final.is_dir() and not final.is_symlink() and not any(final.iterdir())
            if not (self.is_dir and empty_dir) and not self.overwrite:
                raise ExportError(f"{final} already exists (remove it, choose another --out, or give --force)")
            if final.is_dir() != self.is_dir and not empty_dir and not self.overwrite:
                raise ExportError(f"{final} exists and is a {'directory' if final.is_dir() else 'file'}")
        try:
            final.parent.mkdir(parents=True, exist_ok=True)
            _remove(self.temp)
            if self.is_dir:
                self.temp.mkdir()
            else:
                self.temp.touch()
        except OSError as exc:
            raise ExportError(f"cannot write to {final.parent}: {exc.strerror or exc}") from None
        self._opened = True
        return self.temp

    def commit(self) -> Path:
        """Make the output durable and publish it under ``final``."""
        if not self._opened:
            raise ExportError("commit of an output that was never opened")
        try:
            if self.is_dir:
                fsync_tree(self.temp)
            else:
                fsync_path(self.temp)
            aside: Path | None = None
            if self.final.exists() or self.final.is_symlink():
                replaceable = self.final.is_dir() and not self.final.is_symlink() and not any(self.final.iterdir())
                if (self.is_dir and not replaceable) or (not self.is_dir and self.final.is_dir()):
                    aside = self.final.parent / f".{self.final.name}.old-{os.getpid()}"
                    _remove(aside)
                    os.rename(self.final, aside)
            try:
                os.rename(self.temp, self.final)
            except OSError as exc:
                if aside is not None:
                    os.rename(aside, self.final)
                if exc.errno in (errno.ENOTEMPTY, errno.EEXIST):
                    raise ExportError(f"{self.final} appeared while exporting; the export was not published") from None
                raise
            fsync_path(self.final.parent)
            if aside is not None:
                _remove(aside)
        except OSError as exc:
            raise ExportError(f"cannot publish {self.final}: {exc.strerror or exc}") from None
        self.committed = True
        return self.final

    def discard(self) -> None:
        if not self.committed:
            _remove(self.temp)

    def __enter__(self) -> AtomicOutput:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.discard()
