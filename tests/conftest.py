"""Fixtures shared by the whole suite: paths to the real sensor captures and temp data dirs."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = Path(os.environ.get("EDGE_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real captures in ../shared/data (VLP-16 pcap + calibration, camera footage)."""
    if not (SHARED_DATA / "vlp16-90deg-50frames.pcap").is_file():
        pytest.fail(f"real sensor captures not found in {SHARED_DATA} (set EDGE_SHARED_DATA)")
    return SHARED_DATA


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    path = tmp_path / "data"
    path.mkdir()
    return path


# The real Kafka cluster (session-scoped, shared by every directory that uses it).
from tests.kafka.fixtures import kafka_cluster, kafka_single  # noqa: E402,F401
