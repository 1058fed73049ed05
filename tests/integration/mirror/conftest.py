"""Mirror tests run against the real Kafka cluster of tests/kafka and a real local broker."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest


EDGE = [sys.executable, "-m", "edge.cli"]


class MirrorProcess:
    def __init__(self, config_path: Path, endpoint: str, log_path: Path):
        self.config_path, self.endpoint, self.log_path = config_path, endpoint, log_path
        self.proc: subprocess.Popen | None = None

    def start(self) -> "MirrorProcess":
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([*EDGE, "mirror", "--config", str(self.config_path), "--endpoint", self.endpoint],
                                     stdout=log, stderr=subprocess.STDOUT)
        log.close()
        return self

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> int:
        if not self.proc:
            return 0
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(60)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]


def mirror_factory(tmp_path: Path, broker, cluster, vehicle: str | None = None):
    """(make(**mirror_settings) -> MirrorProcess, vehicle id, started processes)."""
    vehicle = vehicle or f"veh{uuid.uuid4().hex[:6]}"
    started: list[MirrorProcess] = []

    def make(**settings) -> MirrorProcess:
        lines = [f'[vehicle]\nid = "{vehicle}"\n[broker]\ndata_dir = "{broker.data_dir}"\n[mirror]',
                 f'bootstrap_servers = "{cluster.bootstrap_servers}"']
        for key, value in settings.items():
            lines.append(f"{key} = {value}")
        name = f"mirror-{len(started)}-{uuid.uuid4().hex[:6]}"
        path = tmp_path / f"{name}.toml"
        path.write_text("\n".join(lines) + "\n")
        proc = MirrorProcess(path, broker.endpoint, tmp_path / f"{name}.log")
        started.append(proc)
        return proc

    return make, vehicle, started


def _mirrors(tmp_path: Path, broker, cluster):
    make, vehicle, started = mirror_factory(tmp_path, broker, cluster)
    yield make, vehicle
    for proc in started:
        proc.kill()


@pytest.fixture
def mirror_setup(tmp_path, broker, kafka_cluster):
    """(write_config(**mirror_settings) -> MirrorProcess factory, vehicle id)."""
    yield from _mirrors(tmp_path, broker, kafka_cluster)


@pytest.fixture
def mirror_single(tmp_path, broker, kafka_single):
    """Like ``mirror_setup``, against the single-node Kafka."""
    yield from _mirrors(tmp_path, broker, kafka_single)
