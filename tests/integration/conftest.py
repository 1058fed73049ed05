"""Fixtures for multi-process tests: a real broker process per test."""

from __future__ import annotations

import pytest

from tests.support.broker_process import BrokerProcess


@pytest.fixture
def broker(data_dir):
    with BrokerProcess(data_dir) as process:
        yield process
