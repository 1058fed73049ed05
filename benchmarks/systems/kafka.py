"""Apache Kafka, one KRaft node (broker+controller) from the test harness, driven with confluent-kafka.

The node comes from ``tests/kafka/harness.py`` (the same Maven-fetched release the tests
use). The harness starts JVMs tuned for test speed (C1 only, serial GC); here the JVM runs
with Kafka's own production flags instead (G1, full JIT, 1 GiB heap), so Kafka is measured
as it would be deployed.

written: producer ``acks=all`` (one node: the leader's write), topic defaults (page cache);
durable: topic ``flush.messages=1`` (fsync per message set appended).
Limits raised: topic ``max.message.bytes`` 16 MiB, producer ``message.max.bytes``, consumer
fetch sizes. Producer: linger 1 ms, 1 MiB batches, 256 MiB queue, no compression.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Sequence

from . import MAX_MESSAGE_BYTES, BrokerSystem, ConsumerClient, ProducerClient, SystemUnavailable

MiB = 1024 * 1024


def bench_cluster_class() -> tuple[type, type[Exception]]:
    try:
        from tests.kafka.harness import KafkaCluster, KafkaHarnessError
    except ImportError as exc:  # the harness is missing on this checkout
        raise SystemUnavailable(f"tests/kafka/harness.py not importable: {exc}") from exc

    class BenchKafkaCluster(KafkaCluster):
        """The harness's cluster, with production JVM flags instead of test-speed ones."""

        def start_node(self, i: int) -> None:
            if self.procs.get(i) is not None and self.procs[i].poll() is None:
                return
            with open(self.node_dir(i) / "server.log", "ab") as log:  # the child keeps its own descriptor
                self.procs[i] = subprocess.Popen(
                    ["java", f"-Xms{self.heap}", f"-Xmx{self.heap}", "-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20",
                     "-XX:InitiatingHeapOccupancyPercent=35", "-XX:+ExplicitGCInvokesConcurrent",
                     "-Djava.awt.headless=true", "-cp", f"{self.libs}/*", "kafka.Kafka",
                     str(self.node_dir(i) / "server.properties")],
                    stdout=log, stderr=subprocess.STDOUT, start_new_session=True)

    return BenchKafkaCluster, KafkaHarnessError


def topic_config(mode: str) -> dict[str, str]:
    """Raised size limits; durable: fsync per message set appended (``flush.messages=1``)."""
    config = {"max.message.bytes": str(MAX_MESSAGE_BYTES), "segment.bytes": str(512 * MiB)}
    if mode == "durable":
        config["flush.messages"] = "1"
    return config


class quiet_stderr:
    def __enter__(self):
        self.saved = os.dup(2)
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 2)
        os.close(devnull)

    def __exit__(self, *exc):
        os.dup2(self.saved, 2)
        os.close(self.saved)


class KafkaBroker(BrokerSystem):
    name = "kafka"
    modes_per_topic = True  # flush.messages is a topic config

    def start(self) -> None:
        cluster_class, harness_error = bench_cluster_class()
        try:
            self.cluster = cluster_class(nodes=1, base_dir=self.base_dir, heap="1g")
            with quiet_stderr():  # librdkafka logs every refused connect while the JVM starts
                self.cluster.start(timeout=120)
        except harness_error as exc:
            raise SystemUnavailable(str(exc)[:500]) from exc

    def stop(self) -> None:
        self.cluster.stop()

    def broker_pids(self) -> list[int]:
        return [proc.pid for proc in self.cluster.procs.values() if proc is not None]

    def create_topic(self, topic: str, partitions: int, mode: str) -> None:
        self.cluster.create_topic(topic, partitions=partitions, replication=1, config=topic_config(mode))

    def connection(self, mode: str) -> dict:
        return {"bootstrap": self.cluster.bootstrap_servers}

    def describe(self, mode: str) -> str:
        flush = "flush.messages=1" if mode == "durable" else "page cache"
        return f"Apache Kafka {os.environ.get('EDGE_KAFKA_VERSION', '4.1.1')} KRaft 1 node, confluent-kafka ({flush})"


class KafkaProducer(ProducerClient):
    def __init__(self, connection: dict):
        from confluent_kafka import Producer

        self.producer = Producer({
            "bootstrap.servers": connection["bootstrap"], "acks": "all", "linger.ms": 1,
            "batch.size": MiB, "message.max.bytes": MAX_MESSAGE_BYTES + 64 * 1024,
            "queue.buffering.max.kbytes": 256 * 1024, "queue.buffering.max.messages": 1_000_000,
            "compression.type": "none", "enable.idempotence": False, "max.in.flight": 8,
        })
        self.errors = 0

    def _on_delivery(self, err, msg) -> None:
        if err is not None:
            self.errors += 1

    def send(self, topic: str, partition: int, value: bytes) -> None:
        while True:
            try:
                self.producer.produce(topic, value, partition=partition, on_delivery=self._on_delivery)
                break
            except BufferError:  # local queue full: back-pressure, wait for deliveries
                self.producer.poll(0.005)
        self.producer.poll(0)

    def send_many(self, topic: str, partition: int, values: Sequence[bytes]) -> None:
        produce, poll, on_delivery = self.producer.produce, self.producer.poll, self._on_delivery
        for value in values:
            try:
                produce(topic, value, partition=partition, on_delivery=on_delivery)
            except BufferError:
                poll(0.005)
                self.send(topic, partition, value)
        poll(0)

    def flush(self, timeout: float = 120.0) -> None:
        self.producer.flush(timeout)

    def close(self) -> None:
        self.producer.flush(30)


class KafkaConsumer(ConsumerClient):
    def __init__(self, connection: dict):
        from confluent_kafka import Consumer

        self.consumer = Consumer({
            "bootstrap.servers": connection["bootstrap"], "group.id": "bench", "enable.auto.commit": False,
            "fetch.max.bytes": 64 * MiB, "max.partition.fetch.bytes": MAX_MESSAGE_BYTES + MiB,
            "receive.message.max.bytes": 80 * MiB, "fetch.wait.max.ms": 100,
            "queued.max.messages.kbytes": 256 * 1024,
        })

    def assign(self, topics: dict[str, int]) -> None:
        from confluent_kafka import OFFSET_BEGINNING, TopicPartition

        self.consumer.assign([TopicPartition(t, p, OFFSET_BEGINNING) for t, n in topics.items() for p in range(n)])

    def poll(self, timeout: float) -> list:
        # one record per poll(): poll returns as soon as a record is there, where
        # consume(num_messages, timeout) waited out its timeout when fewer had arrived (the
        # ~100 ms Kafka latency of the old results was that wait, issue 24)
        values: list = []
        message = self.consumer.poll(timeout)
        while message is not None:
            if message.error() is None:
                values.append(message.value())
            if len(values) >= 2000:
                break
            message = self.consumer.poll(0)
        return values

    def close(self) -> None:
        self.consumer.close()


def system(base_dir, mode: str, options: dict | None = None) -> KafkaBroker:
    return KafkaBroker(base_dir, mode, options)


def producer_client(connection: dict) -> ProducerClient:
    return KafkaProducer(connection)


def consumer_client(connection: dict) -> ConsumerClient:
    return KafkaConsumer(connection)
