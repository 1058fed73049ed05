"""The Kafka harness itself: a 3-node cluster that survives losing a node."""

from __future__ import annotations

import time
import uuid

import pytest
from confluent_kafka import Consumer, Producer

pytestmark = pytest.mark.kafka


def produce(cluster, topic, values):
    producer = Producer({"bootstrap.servers": cluster.bootstrap_servers, "acks": "all", "enable.idempotence": True,
                         "compression.type": "zstd", "message.timeout.ms": 30000})
    for i, value in enumerate(values):
        producer.produce(topic, value, key=str(i).encode(), headers=[("n", str(i).encode())])
    assert producer.flush(60) == 0


def consume(cluster, topic, count, timeout=60):
    consumer = Consumer({"bootstrap.servers": cluster.bootstrap_servers, "group.id": f"g-{uuid.uuid4()}",
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})
    consumer.subscribe([topic])
    out = []
    deadline = time.monotonic() + timeout
    while len(out) < count and time.monotonic() < deadline:
        msg = consumer.poll(1.0)
        if msg is not None and msg.error() is None:
            out.append(msg)
    consumer.close()
    return out


def test_three_node_round_trip(kafka_cluster):
    """Node loss and rejoin are exercised by the mirror's exactly-once test."""
    topic = f"harness-{uuid.uuid4().hex[:8]}"
    kafka_cluster.create_topic(topic, partitions=1, replication=3)
    produce(kafka_cluster, topic, [b"a", b"b", b"c"])
    got = consume(kafka_cluster, topic, 3)
    assert [m.value() for m in got] == [b"a", b"b", b"c"]
    assert dict(got[0].headers())["n"] == b"0"
    assert len(kafka_cluster.admin().list_topics(timeout=10).brokers) == 3


def test_cluster_ids_never_start_with_a_dash(monkeypatch):
    from tests.kafka import harness

    draws = iter([uuid.UUID(bytes=b"\xf8" + bytes(15)), uuid.UUID(bytes=b"\x01" * 16)])
    monkeypatch.setattr(harness.uuid, "uuid4", lambda: next(draws))
    assert harness.KafkaCluster._random_uuid(None) == "AQEBAQEBAQEBAQEBAQEBAQ"
