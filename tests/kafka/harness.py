"""Run a real Apache Kafka cluster (KRaft, combined broker+controller nodes) on loopback.

Fetch: Apache Kafka ``KAFKA_VERSION`` (server, tools and runtime dependencies) is fetched
from Maven Central with Maven into ``$EDGE_TEST_CACHE`` (default
``~/.cache/edge-appliance``)``/kafka-<version>/libs``. The fetch runs under a file lock and
writes a marker last (temp + rename), so an interrupted fetch is redone and two test
processes never fetch at once.

Run: ``KafkaCluster(nodes=3)`` picks free loopback ports, formats each node's storage with
one cluster id, starts each node as its own JVM (small heap, serial GC: this is a 2-core
machine), and waits until every broker is registered and a topic round trip works.
``kill_node`` (SIGKILL), ``stop_node`` (SIGTERM) and ``start_node`` (same storage) let a
test take a broker away and bring it back. ``scram_users`` (with ``tls_cert`` and ``tls_key``,
PEM files, e.g. from ``self_signed_cert``) adds a SASL_SSL listener per node with SCRAM-SHA-256
and -512 for those users (``kafka-storage format --add-scram``); ``sasl_bootstrap_servers``
names it. ``stop`` ends every JVM; an atexit hook does it
too if a test run dies, so no JVM outlives the tests.
"""

from __future__ import annotations

import atexit
import fcntl
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

KAFKA_VERSION = os.environ.get("EDGE_KAFKA_VERSION", "4.1.1")
LOG4J_VERSION = "2.24.3"
CACHE = Path(os.environ.get("EDGE_TEST_CACHE", Path.home() / ".cache" / "edge-appliance"))

POM = """<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>edge.tests</groupId><artifactId>kafka-fetch</artifactId><version>1</version>
  <dependencies>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka_2.13</artifactId><version>{kafka}</version></dependency>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka-tools</artifactId><version>{kafka}</version></dependency>
    <dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-slf4j2-impl</artifactId><version>{log4j}</version></dependency>
    <dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-core</artifactId><version>{log4j}</version></dependency>
  </dependencies>
</project>
"""


class KafkaHarnessError(RuntimeError):
    pass


def kafka_libs(version: str = KAFKA_VERSION) -> Path:
    """The directory of Kafka's jars, fetched with Maven on first use."""
    home = CACHE / f"kafka-{version}"
    libs = home / "libs"
    marker = home / "COMPLETE"
    if marker.exists():
        return libs
    home.mkdir(parents=True, exist_ok=True)
    with open(home / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if marker.exists():
            return libs
        if shutil.which("mvn") is None or shutil.which("java") is None:
            raise KafkaHarnessError("Java and Maven are needed to fetch Apache Kafka "
                                    "(Debian: openjdk-17-jre-headless maven)")
        with tempfile.TemporaryDirectory(dir=home) as work:
            (Path(work) / "pom.xml").write_text(POM.format(kafka=version, log4j=LOG4J_VERSION))
            staging = Path(work) / "libs"
            result = subprocess.run(
                ["mvn", "-q", "-B", "dependency:copy-dependencies", f"-DoutputDirectory={staging}",
                 "-DincludeScope=runtime"], cwd=work, capture_output=True, text=True, timeout=900, check=False)
            if result.returncode != 0:
                raise KafkaHarnessError(f"fetching Apache Kafka {version} from Maven Central failed:\n"
                                        f"{(result.stdout + result.stderr)[-3000:]}")
            shutil.rmtree(libs, ignore_errors=True)
            os.rename(staging, libs)
        tmp = home / ".COMPLETE.tmp"
        tmp.write_text(version)
        os.replace(tmp, marker)
    return libs


def free_ports(count: int) -> list[int]:
    socks, ports = [], []
    for _ in range(count):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
        ports.append(s.getsockname()[1])
    for s in socks:
        s.close()
    return ports


def self_signed_cert(directory: Path) -> tuple[Path, Path]:
    """(certificate, key) PEM files for 127.0.0.1 and localhost, valid one day."""
    cert, key = directory / "tls-cert.pem", directory / "tls-key.pem"
    out = subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out",
                          str(cert), "-days", "1", "-subj", "/CN=localhost", "-addext",
                          "subjectAltName=IP:127.0.0.1,DNS:localhost"], check=False, capture_output=True, timeout=60)
    if out.returncode != 0:
        raise KafkaHarnessError(f"openssl could not make a test certificate: {out.stderr.decode()[-500:]}")
    return cert, key


class KafkaCluster:
    def __init__(self, nodes: int = 3, base_dir: str | Path | None = None, *, heap: str = "512m",
                 scram_users: dict[str, str] | None = None, tls_cert: Path | None = None,
                 tls_key: Path | None = None):
        if nodes < 1:
            raise ValueError("a cluster needs at least one node")
        if scram_users is not None and (tls_cert is None or tls_key is None):
            raise ValueError("a SCRAM listener needs scram_users, tls_cert and tls_key")
        self.nodes = nodes
        self.base_dir = Path(base_dir or tempfile.mkdtemp(prefix="kafka-cluster-"))
        self.heap = heap
        self.scram_users, self.tls_cert, self.tls_key = scram_users, tls_cert, tls_key
        self.libs = kafka_libs()
        ports = free_ports((3 if scram_users else 2) * nodes)
        self.broker_ports = ports[:nodes]
        self.controller_ports = ports[nodes:2 * nodes]
        self.sasl_ports = ports[2 * nodes:]
        self.cluster_id = self._random_uuid()
        self.procs: dict[int, subprocess.Popen | None] = dict.fromkeys(range(nodes))
        atexit.register(self.stop)

    # -- setup ---------------------------------------------------------------------------

    def _java(self, *args: str, **kw) -> subprocess.CompletedProcess:
        return subprocess.run(["java", "-cp", f"{self.libs}/*", *args], capture_output=True, text=True, check=False,
                              **kw)

    def _random_uuid(self) -> str:
        # Kafka cluster ids are 16 random bytes, base64url without padding; like Kafka's own
        # Uuid.randomUuid, never one starting with "-", which the format tool's argument
        # parser takes for an option (1 start in 32 failed with "expected one argument")
        import base64

        while True:
            text = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
            if not text.startswith("-"):
                return text

    @property
    def bootstrap_servers(self) -> str:
        return ",".join(f"127.0.0.1:{p}" for p in self.broker_ports)

    @property
    def sasl_bootstrap_servers(self) -> str:
        return ",".join(f"127.0.0.1:{p}" for p in self.sasl_ports)

    def node_dir(self, i: int) -> Path:
        return self.base_dir / f"node{i}"

    def _write_config(self, i: int) -> Path:
        voters = ",".join(f"{n}@127.0.0.1:{p}" for n, p in enumerate(self.controller_ports))
        rf = min(3, self.nodes)
        props = {
            "process.roles": "broker,controller",
            "node.id": i,
            "controller.quorum.voters": voters,
            "listeners": f"PLAINTEXT://127.0.0.1:{self.broker_ports[i]},CONTROLLER://127.0.0.1:{self.controller_ports[i]}",
            "advertised.listeners": f"PLAINTEXT://127.0.0.1:{self.broker_ports[i]}",
            "controller.listener.names": "CONTROLLER",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "inter.broker.listener.name": "PLAINTEXT",
            "log.dirs": self.node_dir(i) / "data",
            "num.partitions": 1,
            "default.replication.factor": rf,
            "min.insync.replicas": 2 if self.nodes >= 3 else 1,
            "offsets.topic.replication.factor": rf,
            "transaction.state.log.replication.factor": rf,
            "transaction.state.log.min.isr": 2 if self.nodes >= 3 else 1,
            "group.initial.rebalance.delay.ms": 0,
            "message.max.bytes": 70 * 1024 * 1024,
            "replica.fetch.max.bytes": 72 * 1024 * 1024,
            "socket.request.max.bytes": 200 * 1024 * 1024,
            "num.network.threads": 2,
            "num.io.threads": 2,
            "log.segment.bytes": 64 * 1024 * 1024,
            "unclean.leader.election.enable": "false",
        }
        if self.scram_users and self.tls_cert and self.tls_key:
            keystore = self.node_dir(i) / "keystore.pem"  # Kafka's PEM keystore: key, then certificate
            keystore.parent.mkdir(parents=True, exist_ok=True)
            keystore.write_text(self.tls_key.read_text() + self.tls_cert.read_text())
            sasl = f",SASL_SSL://127.0.0.1:{self.sasl_ports[i]}"
            props["listeners"] = f"{props['listeners']}{sasl}"
            props["advertised.listeners"] = f"{props['advertised.listeners']}{sasl}"
            props["listener.security.protocol.map"] = f"{props['listener.security.protocol.map']},SASL_SSL:SASL_SSL"
            props["sasl.enabled.mechanisms"] = "SCRAM-SHA-256,SCRAM-SHA-512"
            for mechanism in ("scram-sha-256", "scram-sha-512"):
                props[f"listener.name.sasl_ssl.{mechanism}.sasl.jaas.config"] = \
                    "org.apache.kafka.common.security.scram.ScramLoginModule required;"
            props["ssl.keystore.type"] = "PEM"
            props["ssl.keystore.location"] = keystore
        path = self.node_dir(i) / "server.properties"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(f"{k}={v}\n" for k, v in props.items()))
        return path

    def _format(self, i: int) -> None:
        config = self._write_config(i)
        scram = [arg for user, password in (self.scram_users or {}).items()
                 for mechanism in ("SCRAM-SHA-256", "SCRAM-SHA-512")
                 for arg in ("--add-scram", f"{mechanism}=[name={user},password={password}]")]
        result = self._java("kafka.tools.StorageTool", "format", "-t", self.cluster_id, "-c", str(config),
                            "--ignore-formatted", *scram, timeout=120)
        if result.returncode != 0:
            raise KafkaHarnessError(f"formatting node {i} failed:\n{(result.stdout + result.stderr)[-2000:]}")

    # -- processes -----------------------------------------------------------------------

    def start_node(self, i: int) -> None:
        if self.procs.get(i) is not None and self.procs[i].poll() is None:
            return
        env = {**os.environ, "KAFKA_HEAP_OPTS": f"-Xmx{self.heap}"}
        with open(self.node_dir(i) / "server.log", "ab") as log:
            self.procs[i] = subprocess.Popen(
                ["java", "-Xms128m", f"-Xmx{self.heap}", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1",
                 "-Djava.awt.headless=true", "-cp", f"{self.libs}/*", "kafka.Kafka",
                 str(self.node_dir(i) / "server.properties")],
                stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)

    def start(self, timeout: float = 120.0) -> KafkaCluster:
        for i in range(self.nodes):
            self._format(i)
        for i in range(self.nodes):
            self.start_node(i)
        self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout: float = 120.0, nodes: int | None = None) -> None:
        from confluent_kafka.admin import AdminClient

        want = self.nodes if nodes is None else nodes
        deadline = time.monotonic() + timeout
        admin = AdminClient({"bootstrap.servers": self.bootstrap_servers, "socket.timeout.ms": 2000})
        while True:
            for i, proc in self.procs.items():
                if proc is not None and proc.poll() is not None:
                    raise KafkaHarnessError(f"Kafka node {i} exited with {proc.returncode}:\n{self.log_tail(i)}")
            try:
                brokers = admin.list_topics(timeout=2).brokers
                if len(brokers) >= want:
                    return
            except Exception:  # not up yet
                pass
            if time.monotonic() > deadline:
                raise KafkaHarnessError(
                    f"Kafka cluster not ready after {timeout:.0f}s:\n"
                    + "\n".join(self.log_tail(i) for i in self.procs))
            time.sleep(0.5)

    def log_tail(self, i: int, chars: int = 1500) -> str:
        try:
            return f"--- node {i} ---\n" + (self.node_dir(i) / "server.log").read_text(errors="replace")[-chars:]
        except FileNotFoundError:
            return f"--- node {i}: no log ---"

    def kill_node(self, i: int) -> None:
        proc = self.procs.get(i)
        if proc is not None and proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(30)
        self.procs[i] = None

    def stop_node(self, i: int, timeout: float = 30.0) -> None:
        proc = self.procs.get(i)
        if proc is None:
            return
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(30)
        self.procs[i] = None

    def discard(self) -> None:
        """SIGKILL every node at once: for a cluster whose storage is thrown away with it (the
        session fixtures), where an orderly shutdown only costs time (25 s for 3+1 nodes)."""
        for i in list(self.procs):
            try:
                self.kill_node(i)
            except (ProcessLookupError, OSError):
                self.procs[i] = None

    def stop(self) -> None:
        for i in list(self.procs):
            try:
                self.stop_node(i, timeout=20)
            except (ProcessLookupError, OSError):
                self.procs[i] = None

    def admin(self):
        from confluent_kafka.admin import AdminClient

        return AdminClient({"bootstrap.servers": self.bootstrap_servers})

    def create_topic(self, name: str, partitions: int = 1, replication: int | None = None,
                     config: dict[str, str] | None = None, timeout: float = 30.0) -> None:
        from confluent_kafka.admin import NewTopic

        rf = replication or min(3, self.nodes)
        admin = self.admin()  # must outlive the future, or librdkafka destroys the handle
        futures = admin.create_topics([NewTopic(name, partitions, rf, config=config or {})], operation_timeout=timeout)
        futures[name].result(timeout)

    def __enter__(self) -> KafkaCluster:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
