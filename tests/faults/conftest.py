"""Fixtures for fault injection: a small dedicated filesystem (tmpfs) for full-disk tests."""

from __future__ import annotations

import subprocess

import pytest


@pytest.fixture
def small_disk(tmp_path):
    """A 24 MiB tmpfs mounted for the test (needs root, as on the appliance's CI machine)."""
    mount_point = tmp_path / "disk"
    mount_point.mkdir()
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=24m", "tmpfs", str(mount_point)],
                            capture_output=True, text=True, check=False)
    if result.returncode != 0:
        pytest.fail(f"cannot mount a tmpfs for the full-disk test (root needed): {result.stderr.strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


@pytest.fixture
def broker(data_dir):
    """A real broker process on the test's data directory."""
    from tests.support.broker_process import BrokerProcess

    with BrokerProcess(data_dir) as process:
        yield process
