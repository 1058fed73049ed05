"""Mirror tests run against the real Kafka cluster of tests/kafka and a real local broker."""

from __future__ import annotations

import os
import signal
import socket
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
        self._notify: socket.socket | None = None
        self._ready = False

    def start(self) -> MirrorProcess:
        # the mirror says READY=1 over $NOTIFY_SOCKET (as to systemd) once its SIGTERM handler is
        # in place; stop() waits for that, or a SIGTERM during start-up kills it with -15
        self._close_notify()
        self._notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        address = f"edge-test-mirror-{uuid.uuid4().hex}"
        self._notify.bind("\0" + address)
        self._ready = False
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [*EDGE, "mirror", "--config", str(self.config_path), "--endpoint", self.endpoint],
                stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "NOTIFY_SOCKET": "@" + address})
        return self

    def _close_notify(self) -> None:
        if self._notify is not None:
            self._notify.close()
            self._notify = None

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while not self._ready and self._notify is not None and self.proc.poll() is None:
            if time.monotonic() > deadline:
                raise AssertionError(f"mirror sent no READY=1 in {timeout:.0f} s\n{self.log()}")
            self._notify.settimeout(0.2)
            try:
                self._ready = b"READY=1" in self._notify.recv(4096)
            except TimeoutError:
                pass

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)
        self._close_notify()

    def stop(self) -> int:
        if not self.proc:
            return 0
        self.wait_ready()
        self._close_notify()
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


def local_records(endpoint: str, partitions: list[tuple[str, int]], expected: int, timeout: float = 10.0) -> list:
    """The vehicle broker's records of ``partitions`` from their start, until ``expected`` came
    (or ``timeout``)."""
    from broker.client import Consumer

    consumer = Consumer(endpoint, max_wait_ms=100)
    consumer.assign(partitions)
    consumer.seek_to_beginning()
    got: list = []
    deadline = time.monotonic() + timeout
    while len(got) < expected and time.monotonic() < deadline:
        got.extend(consumer.poll(0.2))
    consumer.close()
    return got
