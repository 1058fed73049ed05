"""Two client rows of ``python -m benchmarks.run``, each run as its own process (like the Java tools).

    python -m benchmarks.client_bench {rdkafka,native} {produce,consume,e2e} --target T --topic T
                                      --records N --record-bytes S [--acks written|durable]

prints one JSON line of figures (``records_s``, ``mb_s`` in 10^6 bytes, latencies in ms).

- ``rdkafka``: confluent-kafka (librdkafka), tuned as Confluent's benchmark of Kafka, Pulsar
  and RabbitMQ tuned it: throughput ``batch.size`` 1 MiB, ``linger.ms`` 10, ``acks=all``,
  compression none; latency ``linger.ms`` 0. Records are read one per ``poll()``, which returns
  as soon as a record is there (``consume(num_messages, timeout)`` waits out its timeout when
  fewer arrived: the artifact of the old harness, issue 24). ``--target`` is a bootstrap.
- ``native``: this repository's client (broker/client) over the broker's ipc endpoint: a
  Producer with ``send_many`` and the bulk read path ``Consumer.poll_values``. ``--target`` is
  the endpoint; ``--acks`` written or durable (the topic's flush policy does the rest).

``e2e`` is the method of Kafka's EndToEndLatency: one record at a time, sent, flushed, and
polled back; the latency of each is from before the send to its arrival.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from typing import Any

from . import perfparse

MiB = 1024 * 1024
RDKAFKA_THROUGHPUT = {"acks": "all", "linger.ms": 10, "batch.size": MiB, "compression.type": "none",
                      "message.max.bytes": 17 * MiB, "queue.buffering.max.kbytes": 512 * 1024}
RDKAFKA_LATENCY = {"acks": "all", "linger.ms": 0, "compression.type": "none"}
RDKAFKA_CONSUMER = {"enable.auto.commit": False, "auto.offset.reset": "earliest", "fetch.max.bytes": 64 * MiB,
                    "max.partition.fetch.bytes": 17 * MiB, "receive.message.max.bytes": 80 * MiB}
WAIT_S = 60.0
RECORD_WAIT_S = 10.0  # e2e: a record not back by then is reported, not waited for


def _percentiles(latencies_ms: list[float]) -> dict[str, float]:
    ordered = sorted(latencies_ms)

    def at(q: float) -> float:
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]
    return {"avg_ms": sum(ordered) / len(ordered), "p50_ms": at(0.50), "p99_ms": at(0.99), "p999_ms": at(0.999)}


def _rates(records: int, record_bytes: int, seconds: float) -> dict[str, float]:
    return {"records": float(records), "seconds": seconds, "records_s": records / seconds,
            "mb_s": records * record_bytes / seconds / 1e6}


def _consume_wait_s(records: int) -> float:
    """How long a consumer may take for ``records`` before the run calls it stuck (10k records/s)."""
    return max(WAIT_S, records / 10_000)


def _consumed(seen: int, args: argparse.Namespace, seconds: float) -> dict[str, float]:
    """Rates of a consumer that got every record; fewer is an error, never a partial figure."""
    if seen < args.records:
        raise TimeoutError(f"consumed {seen} of {args.records} records in {seconds:.0f} s")
    return _rates(args.records, args.record_bytes, seconds)


# -- librdkafka ----------------------------------------------------------------------------

def _rdkafka_consumer(bootstrap: str, topic: str) -> Any:
    from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"bench-{os.getpid()}", **RDKAFKA_CONSUMER})
    partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
    return consumer


def rdkafka_produce(args: argparse.Namespace) -> dict[str, float]:
    from confluent_kafka import Producer

    producer = Producer({"bootstrap.servers": args.target, **RDKAFKA_THROUGHPUT})
    value, failed = os.urandom(args.record_bytes), []

    def on_delivery(err: Any, msg: Any) -> None:
        if err is not None:
            failed.append(err)
    started = time.perf_counter()
    for _ in range(args.records):
        while True:
            try:
                producer.produce(args.topic, value, on_delivery=on_delivery)
                break
            except BufferError:  # local queue full: serve deliveries, then retry
                producer.poll(0.01)
        producer.poll(0)
    producer.flush(WAIT_S)
    seconds = time.perf_counter() - started
    return {**_rates(args.records, args.record_bytes, seconds), "errors": float(len(failed))}


def rdkafka_consume(args: argparse.Namespace) -> dict[str, float]:
    consumer = _rdkafka_consumer(args.target, args.topic)
    # the clock starts at the first poll after the assignment, as ConsumerPerformance's fetch time
    seen, started, deadline = 0, time.perf_counter(), time.monotonic() + _consume_wait_s(args.records)
    while seen < args.records and time.monotonic() < deadline:
        message = consumer.poll(1.0)
        if message is not None and message.error() is None:
            seen += 1
    seconds = time.perf_counter() - started
    consumer.close()
    return _consumed(seen, args, seconds)


def _ping_pong(records: int, send_one: Callable[[], None], arrived: Callable[[], bool]) -> dict[str, float]:
    """Latency of each record: ``send_one`` (sends and flushes one), then ``arrived`` until it is back."""
    latencies: list[float] = []
    for _ in range(records):
        sent = time.perf_counter()
        send_one()
        deadline = time.monotonic() + RECORD_WAIT_S
        while not arrived():
            if time.monotonic() > deadline:
                raise TimeoutError(f"record {len(latencies) + 1} not consumed within {RECORD_WAIT_S:.0f} s")
        latencies.append((time.perf_counter() - sent) * 1000)
    return _percentiles(latencies)


def rdkafka_e2e(args: argparse.Namespace) -> dict[str, float]:
    from confluent_kafka import Producer

    consumer = _rdkafka_consumer(args.target, args.topic)
    producer = Producer({"bootstrap.servers": args.target, **RDKAFKA_LATENCY})
    # skip what is already in the topic (earlier repetitions) before timing
    while consumer.poll(0.5) is not None:
        pass
    value = os.urandom(args.record_bytes)

    def send_one() -> None:
        producer.produce(args.topic, value, partition=0)
        producer.flush(WAIT_S)

    def arrived() -> bool:
        message = consumer.poll(1.0)
        return message is not None and message.error() is None

    result = _ping_pong(args.records, send_one, arrived)
    consumer.close()
    return result


# -- the native client -----------------------------------------------------------------------

def _native_producer(args: argparse.Namespace, linger_ms: float) -> Any:
    from broker.client import Producer

    return Producer(args.target, linger_ms=linger_ms, max_batch_bytes=MiB, acks=args.acks, max_in_flight=8,
                    buffer_bytes=256 * MiB, block_timeout_s=WAIT_S)


def native_produce(args: argparse.Namespace) -> dict[str, float]:
    producer = _native_producer(args, linger_ms=5)
    value = os.urandom(args.record_bytes)
    chunk = max(1, min(5000, (4 * MiB) // args.record_bytes))
    started = time.perf_counter()
    left = args.records
    while left:
        count = min(chunk, left)
        producer.send_many(args.topic, [value] * count, partition=0)
        left -= count
    producer.flush(WAIT_S)
    seconds = time.perf_counter() - started
    producer.close()
    return _rates(args.records, args.record_bytes, seconds)


def native_consume(args: argparse.Namespace) -> dict[str, float]:
    from broker.client import Consumer

    consumer = Consumer(args.target, fetch_max_bytes=64 * MiB, max_wait_ms=100)
    consumer.assign([(args.topic, 0)])
    seen, started, deadline = 0, time.perf_counter(), time.monotonic() + _consume_wait_s(args.records)
    while seen < args.records and time.monotonic() < deadline:
        seen += sum(map(len, consumer.poll_values(1.0)))
    seconds = time.perf_counter() - started
    consumer.close()
    return _consumed(seen, args, seconds)


def native_e2e(args: argparse.Namespace) -> dict[str, float]:
    from broker.client import Consumer

    producer = _native_producer(args, linger_ms=0)
    consumer = Consumer(args.target, fetch_max_bytes=64 * MiB, max_wait_ms=500)
    consumer.assign([(args.topic, 0)])
    while consumer.poll_values(0.5):  # earlier repetitions' records
        pass
    value = os.urandom(args.record_bytes)

    def send_one() -> None:
        producer.send(args.topic, value, partition=0)
        producer.flush(WAIT_S)

    result = _ping_pong(args.records, send_one, lambda: bool(consumer.poll_values(1.0)))
    producer.close()
    consumer.close()
    return result


RUNS = {("rdkafka", "produce"): rdkafka_produce, ("rdkafka", "consume"): rdkafka_consume,
        ("rdkafka", "e2e"): rdkafka_e2e, ("native", "produce"): native_produce,
        ("native", "consume"): native_consume, ("native", "e2e"): native_e2e}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.client_bench", description=__doc__.split("\n")[0])
    parser.add_argument("client", choices=["rdkafka", "native"])
    parser.add_argument("action", choices=["produce", "consume", "e2e"])
    parser.add_argument("--target", required=True, help="Kafka bootstrap (rdkafka) or broker endpoint (native)")
    parser.add_argument("--topic", required=True)
    parser.add_argument("--records", type=int, required=True)
    parser.add_argument("--record-bytes", type=int, required=True)
    parser.add_argument("--acks", choices=["written", "durable"], default="written", help="native client only")
    args = parser.parse_args(argv)
    if args.records < 1 or args.record_bytes < 1:
        parser.error("--records and --record-bytes must be >= 1")
    try:
        result = RUNS[(args.client, args.action)](args)
    except Exception as exc:
        print(json.dumps({"error": f"{type(exc).__name__}: {exc}"}))
        return 1
    print(json.dumps(result))
    return 0


def parse_output(text: str) -> dict[str, float]:
    """The figures the last JSON line of a client_bench run carries (harness side)."""
    for line in reversed(text.strip().splitlines()):
        if line.startswith("{"):
            doc = json.loads(line)
            if "error" in doc:
                raise perfparse.ToolOutputError(doc["error"])
            return {key: float(value) for key, value in doc.items()}
    raise perfparse.ToolOutputError(f"no JSON line from client_bench: {text[-300:]!r}")


if __name__ == "__main__":
    sys.exit(main())
