"""scripts/setup (used by scripts/run and scripts/test) installs once: stamps of one
pyproject.toml cover the extras installed, so `run` after `test` installs nothing."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def fake_repo(tmp_path: Path) -> tuple[Path, Path]:
    """scripts/setup and pyproject.toml, with a .venv whose python only records its calls."""
    (tmp_path / "scripts").mkdir()
    shutil.copy(REPO / "scripts" / "setup", tmp_path / "scripts" / "setup")
    shutil.copy(REPO / "pyproject.toml", tmp_path / "pyproject.toml")
    calls = tmp_path / "pip-calls"
    python = tmp_path / ".venv" / "bin" / "python"
    python.parent.mkdir(parents=True)
    python.write_text(f'#!/bin/sh\necho "$@" >> {calls}\n')
    python.chmod(0o755)
    return tmp_path, calls


def setup(repo: Path, extras: str) -> float:
    started = time.monotonic()
    subprocess.run(["bash", str(repo / "scripts" / "setup"), extras], check=True, capture_output=True, timeout=60,
                   env={**os.environ, "PATH": os.environ["PATH"]})
    return time.monotonic() - started


def pip_runs(calls: Path) -> int:
    return sum(1 for line in calls.read_text().splitlines() if "-e ." in line) if calls.exists() else 0


def test_run_after_test_installs_nothing_and_is_quick(tmp_path):
    repo, calls = fake_repo(tmp_path)
    digest = hashlib.sha256((repo / "pyproject.toml").read_bytes()).hexdigest()[:16]
    (repo / ".venv" / f".installed-all-dev-{digest}").touch()  # what scripts/test left
    elapsed = setup(repo, "all")  # what scripts/run asks for
    assert pip_runs(calls) == 0
    assert elapsed < 5.0, elapsed
    setup(repo, "all,bench")  # an extra never installed: one install, then a stamp
    assert pip_runs(calls) == 1 and (repo / ".venv" / f".installed-all-bench-{digest}").exists()
    setup(repo, "bench")
    setup(repo, "dev")
    assert pip_runs(calls) == 1
    (repo / "pyproject.toml").write_text((repo / "pyproject.toml").read_text() + "\n# changed\n")
    setup(repo, "all")  # a changed pyproject.toml installs again
    assert pip_runs(calls) == 2
