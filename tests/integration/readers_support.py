"""Helpers for the readers' tests: produce numbered records, read them back, cut a log offline."""

from __future__ import annotations

import time
from pathlib import Path

from broker.client import Consumer, Producer
from broker.errors import BrokerUnavailableError
from broker.storage import Storage
from broker.topic_config import TopicConfig


def produce_numbers(endpoint: str, topic: str, numbers: range, *, partition: int = 0, per_batch: int = 10) -> None:
    """Records whose values are the decimal numbers, ``per_batch`` to a batch, acked."""
    with Producer(endpoint, linger_ms=1) as producer:
        values = [str(n).encode() for n in numbers]
        for i in range(0, len(values), per_batch):
            producer.send_many(topic, values[i:i + per_batch], partition=partition)
            producer.flush(10)


def read_numbers(consumer: Consumer, count: int, timeout: float = 10.0) -> list[int]:
    """Poll until ``count`` values arrived (or the timeout), as ints in delivery order."""
    got: list[int] = []
    deadline = time.monotonic() + timeout
    while len(got) < count and time.monotonic() < deadline:
        try:
            got += [int(bytes(r.value)) for r in consumer.poll(0.3)]
        except BrokerUnavailableError:
            continue  # the broker is (re)starting: the consumer goes on from its positions
    return got


def delete_by_retention(data_dir: Path, topic: str, keep_bytes: int) -> int:
    """With the broker stopped: apply ``retention_bytes=keep_bytes`` to the topic's stored log
    (as the broker's timer would) and return the new log start of partition 0."""
    storage = Storage(data_dir, defaults=TopicConfig())
    try:
        storage.configure_topic(topic, {"retention_bytes": keep_bytes})
        storage.enforce_retention()
        return storage.log(topic, 0).log_start_offset
    finally:
        storage.close()
