"""Produce and consume with confluent-kafka against the broker's Kafka listener (docs/CLIENT.md).

    python examples/kafka_producer_consumer.py --bootstrap 127.0.0.1:9092 --topic demo --count 10

The same two steps as examples/producer.py and examples/consumer.py, written for any Kafka
client: ``acks=all`` (the listener answers once the batch is fsynced), a key, a header and a
CreateTime per record; then a consumer in a group reads from the group's committed offsets
(else the earliest), commits what it printed, and stops after ``--count`` records or
``--timeout`` seconds without one. Prints ``produced PARTITION OFFSET KEY`` per acknowledged
record, then ``consumed PARTITION OFFSET KEY VALUE`` per record read. Exit 1 on any error.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer
from confluent_kafka.admin import AdminClient, NewTopic


def create_topic(bootstrap: str, topic: str) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})  # kept referenced until the result arrives
    futures = admin.create_topics([NewTopic(topic, num_partitions=2)])
    try:
        futures[topic].result(10)
    except KafkaException as exc:
        if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
            raise


def produce(bootstrap: str, topic: str, count: int) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 5})
    failures: list[KafkaError] = []

    def delivered(err, msg) -> None:  # called from flush(), once per record
        if err is not None:
            failures.append(err)
        else:
            print(f"produced {msg.partition()} {msg.offset()} {msg.key().decode()}")

    for i in range(count):
        producer.produce(topic, f"reading {i}".encode(), key=f"sensor-{i % 2}".encode(),
                         headers=[("unit", b"celsius")], timestamp=time.time_ns() // 1_000_000,
                         on_delivery=delivered)
    if producer.flush(30) or failures:
        raise KafkaException(failures[0] if failures else KafkaError(KafkaError._MSG_TIMED_OUT))


def consume(bootstrap: str, topic: str, group: str, count: int, timeout: float) -> None:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "auto.offset.reset": "earliest",
                         "enable.auto.commit": False})
    try:
        consumer.subscribe([topic])
        seen, last = 0, time.monotonic()
        while seen < count and time.monotonic() - last < timeout:
            msg = consumer.poll(0.2)
            if msg is None:
                continue
            if msg.error():
                raise KafkaException(msg.error())
            print(f"consumed {msg.partition()} {msg.offset()} {msg.key().decode()} {msg.value().decode()}")
            consumer.commit(message=msg, asynchronous=False)
            seen, last = seen + 1, time.monotonic()
    finally:
        consumer.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bootstrap", default=os.environ.get("EDGE_KAFKA_BOOTSTRAP", "127.0.0.1:9092"),
                        help="the Kafka listener, HOST:PORT (default: $EDGE_KAFKA_BOOTSTRAP or 127.0.0.1:9092)")
    parser.add_argument("--topic", default="demo")
    parser.add_argument("--group", default="demo-readers")
    parser.add_argument("--count", type=int, default=10)
    parser.add_argument("--timeout", type=float, default=5.0, help="seconds without a record before exiting")
    args = parser.parse_args()
    try:
        create_topic(args.bootstrap, args.topic)
        produce(args.bootstrap, args.topic, args.count)
        consume(args.bootstrap, args.topic, args.group, args.count, args.timeout)
    except KafkaException as exc:
        print(f"kafka_producer_consumer: {exc.args[0].str()}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
