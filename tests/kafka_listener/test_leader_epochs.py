"""Leader epochs = storage log epochs: a confluent-kafka consumer that stays up across broker
crashes reads on after an unclean restart that lost nothing (epoch bumped, no truncation
reported) and, after one whose recovery took back offsets it had already read, notices
(it seeks back) and reads the records written again at those offsets instead of skipping
them (KIP-320: Fetch fenced by the new epoch, then OffsetForLeaderEpoch)."""

from __future__ import annotations

import struct
import time
from pathlib import Path

from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition

from .conftest import KafkaBrokerProcess

TOPIC = "epochs.t"
BATCH_HEAD = struct.Struct(">qi")  # baseOffset, batchLength


def _produce(broker: KafkaBrokerProcess, values: list[bytes]) -> None:
    producer = Producer({"bootstrap.servers": broker.bootstrap, "linger.ms": 0})
    for value in values:  # one batch each, so that recovery can cut between them
        producer.produce(TOPIC, value)
        assert producer.flush(10) == 0


def _read(consumer: Consumer, count: int, timeout_s: float = 30.0) -> tuple[list[tuple[int, int, bytes]], list[int]]:
    """``count`` messages as (offset, leader epoch, value), and the error codes met on the way."""
    got: list[tuple[int, int, bytes]] = []
    errors: list[int] = []
    deadline = time.monotonic() + timeout_s
    while len(got) < count and time.monotonic() < deadline:
        msg = consumer.poll(0.5)
        if msg is None:
            continue
        if msg.error() is not None:
            errors.append(msg.error().code())
            continue
        got.append((msg.offset(), msg.leader_epoch(), msg.value()))
    return got, errors


def _damage_batch(data_dir: Path, offset: int) -> None:
    """Flip a byte inside the batch at ``offset`` (a torn write, as a power cut leaves)."""
    segment = data_dir / TOPIC / "0" / f"{0:020d}.log"
    raw = bytearray(segment.read_bytes())
    pos = 0
    while pos < len(raw):
        base, length = BATCH_HEAD.unpack_from(raw, pos)
        if base == offset:
            raw[pos + 12 + length - 1] ^= 0xFF
            segment.write_bytes(raw)
            return
        pos += 12 + length
    raise AssertionError(f"no batch at offset {offset}")


def test_consumer_reads_on_across_crashes_and_a_truncation(tmp_path):
    data = tmp_path / "data"
    broker = KafkaBrokerProcess(data)
    with broker:
        _produce(broker, [f"a{i}".encode() for i in range(6)])
        consumer = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "epochs", "enable.auto.commit": False,
                             "topic.metadata.refresh.interval.ms": 1000})
        try:
            consumer.assign([TopicPartition(TOPIC, 0, 0)])
            got, _ = _read(consumer, 6)
            assert [(o, e) for o, e, _ in got] == [(o, 0) for o in range(6)]

            consumer.pause([TopicPartition(TOPIC, 0)])
            broker.kill()  # nothing lost: epoch 1 starts at 6
            broker.start()
            _produce(broker, [f"b{i}".encode() for i in range(4)])
            consumer.resume([TopicPartition(TOPIC, 0)])
            got, errors = _read(consumer, 4)
            assert [(o, e, v) for o, e, v in got] == [(6 + i, 1, f"b{i}".encode()) for i in range(4)]
            assert KafkaError._LOG_TRUNCATION not in errors

            consumer.pause([TopicPartition(TOPIC, 0)])
            broker.kill()
            _damage_batch(data, 8)  # recovery takes back 8 and 9, which the consumer has read
            broker.start()
            assert "log_epoch_bumped" in broker.log()
            _produce(broker, [f"c{i}".encode() for i in range(4)])  # written again at 8..11, epoch 2
            consumer.resume([TopicPartition(TOPIC, 0)])
            got, _ = _read(consumer, 4)  # librdkafka 2.x seeks back without an error event
            assert [(o, e, v) for o, e, v in got] == [(8 + i, 2, f"c{i}".encode()) for i in range(4)]
        finally:
            consumer.close()
