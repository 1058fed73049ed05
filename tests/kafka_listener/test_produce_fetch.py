"""Produce and Fetch with real Kafka clients: each compression, idempotence, a 6 MB frame,
commit and resume, offsets_for_times, kcat, and "data is one": records written by a Kafka
client read by the native consumer and the other way round, with identical keys, values,
headers and timestamps (CreateTime = capture time)."""

from __future__ import annotations

import dataclasses
import socket
import subprocess
import time
from datetime import timedelta

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from kio.schema.fetch.v11.request import FetchPartition, FetchRequest, FetchTopic
from kio.schema.fetch.v11.response import FetchResponse

from broker.client import Admin
from broker.client import Consumer as NativeConsumer
from broker.client import Producer as NativeProducer
from broker.record_codec import CODECS

from .conftest import decode_response, encode_request, read_frame

BASE_MS = 1_767_225_600_000  # 2026-01-01


def kafka_produce(broker, topic: str, records, **config) -> list[int]:
    producer = Producer({"bootstrap.servers": broker.bootstrap, "linger.ms": 5, **config})
    offsets: list = []

    def done(err, msg):
        offsets.append(err if err is not None else msg.offset())

    for key, value, headers, ts in records:
        producer.produce(topic, value, key=key, headers=headers, timestamp=ts, partition=0, on_delivery=done)
    assert producer.flush(20) == 0
    assert all(isinstance(o, int) for o in offsets), offsets
    return offsets


def kafka_consume(broker, topic: str, count: int, group: str | None = None, **config) -> list:
    consumer = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": group or f"read-{time.monotonic_ns()}",
                         "auto.offset.reset": "earliest", "enable.auto.commit": False, **config})
    consumer.assign([TopicPartition(topic, 0, 0)]) if group is None else consumer.subscribe([topic])
    got, deadline = [], time.monotonic() + 20
    while len(got) < count and time.monotonic() < deadline:
        msg = consumer.poll(0.2)
        if msg is not None:
            assert msg.error() is None, msg.error()
            got.append(msg)
    return consumer, got


@pytest.mark.parametrize("compression", ["none", "gzip", "snappy", "lz4", "zstd"])
def test_each_compression_round_trips_and_native_reads_it(kafka_broker, compression):
    topic = f"pf.{compression}"
    records = [(f"k{i}".encode(), f"{compression}-{i}".encode() * 50, [("camera", b"front"), ("seq", str(i).encode())],
                BASE_MS + i) for i in range(20)]
    assert kafka_produce(kafka_broker, topic, records, **{"compression.type": compression}) == list(range(20))
    consumer, got = kafka_consume(kafka_broker, topic, 20)
    consumer.close()
    assert [(m.key(), m.value(), m.headers(), m.timestamp()[1]) for m in got] == \
           [(k, v, h, ts) for k, v, h, ts in records]
    with NativeConsumer(kafka_broker.endpoint) as native:
        native.assign([(topic, 0)])
        seen = []
        deadline = time.monotonic() + 10
        while len(seen) < 20 and time.monotonic() < deadline:
            seen.extend(native.poll(0.5))
    assert [(r.key, bytes(r.value), [(k, bytes(v)) for k, v in r.headers.items()], r.timestamp // 10**6)
            for r in seen] == [(k, v, h, ts) for k, v, h, ts in records]
    # stored as sent: the segment's batches carry the producer's codec (attributes i16 at 21, bits 0-2)
    segments = sorted((kafka_broker.data_dir / topic).rglob("*.log"))
    assert segments, "no segment file"
    first = segments[0].read_bytes()
    assert first[22] & 0x07 == CODECS[compression]


def test_native_records_read_by_kafka_clients_and_kcat(kafka_broker):
    with NativeProducer(kafka_broker.endpoint) as producer:
        for i in range(5):
            producer.send("pf.native", f"frame-{i}".encode(), key=b"cam", headers={"encoding": "jpeg"},
                          partition=0, timestamp_ns=(BASE_MS + i) * 10**6)
        producer.flush()
    consumer, got = kafka_consume(kafka_broker, "pf.native", 5)
    consumer.close()
    assert [(m.offset(), m.key(), m.value(), m.timestamp()[1]) for m in got] == \
           [(i, b"cam", f"frame-{i}".encode(), BASE_MS + i) for i in range(5)]
    assert all(("encoding", b"jpeg") in (m.headers() or []) for m in got)
    out = subprocess.run(["kcat", "-b", kafka_broker.bootstrap, "-C", "-t", "pf.native", "-o", "-2", "-e",
                          "-f", "%k %s %T\\n"], capture_output=True, text=True, timeout=30, check=False)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == [f"cam frame-{i} {BASE_MS + i}" for i in (3, 4)]


def test_idempotent_producer_and_a_6mb_frame(kafka_broker):
    frame = bytes(range(256)) * (6 * 1024 * 1024 // 256)
    offsets = kafka_produce(kafka_broker, "pf.big", [(b"k", frame, None, BASE_MS), (b"k", b"small", None, BASE_MS + 1)],
                            **{"enable.idempotence": True, "message.max.bytes": 10 * 1024 * 1024})
    assert offsets == [0, 1]
    consumer, got = kafka_consume(kafka_broker, "pf.big", 2, **{"fetch.max.bytes": 1024 * 1024,
                                                                "max.partition.fetch.bytes": 1024 * 1024})
    consumer.close()
    assert got[0].value() == frame and got[1].value() == b"small"


def test_commit_resume_and_offsets_for_times(kafka_broker):
    records = [(None, f"v{i}".encode(), None, BASE_MS + 1000 * i) for i in range(10)]
    for record in records:  # one batch each: a by-time lookup then lands on the record
        kafka_produce(kafka_broker, "pf.resume", [record])
    consumer, got = kafka_consume(kafka_broker, "pf.resume", 4, group="pf.resume.g")
    consumer.commit(offsets=[TopicPartition("pf.resume", 0, 4)], asynchronous=False)
    found = consumer.offsets_for_times([TopicPartition("pf.resume", 0, BASE_MS + 6500)], timeout=10)
    assert found[0].offset == 7
    consumer.close()
    consumer, got = kafka_consume(kafka_broker, "pf.resume", 6, group="pf.resume.g")
    consumer.close()
    assert [m.offset() for m in got] == [4, 5, 6, 7, 8, 9]
    with Admin(kafka_broker.endpoint) as native:
        assert native.group_offsets("pf.resume.g")[("pf.resume", 0)] == 4


def test_empty_fetch_records_are_zero_length_and_long_poll_wakes(kafka_broker):
    with Admin(kafka_broker.endpoint) as native:
        native.create_topic("pf.empty", partitions=1)
    ask = FetchRequest(replica_id=-1, max_wait=timedelta(0), min_bytes=1, max_bytes=1 << 20, isolation_level=0,
                       session_id=0, session_epoch=-1, topics=(FetchTopic(topic="pf.empty", partitions=(FetchPartition(
                           partition=0, current_leader_epoch=-1, fetch_offset=0, log_start_offset=-1,
                           partition_max_bytes=1 << 20),)),), forgotten_topics_data=(), rack_id="")
    with socket.create_connection(("127.0.0.1", kafka_broker.kafka_port), timeout=10) as sock:
        sock.sendall(encode_request(1, 11, 1, ask))
        frame = read_frame(sock)
        _, body = decode_response(frame, FetchResponse)
        assert body.responses[0].partitions[0].records == b""  # zero-length, not null
        sock.sendall(encode_request(1, 11, 2, dataclasses.replace(ask, max_wait=timedelta(seconds=5))))
        time.sleep(0.3)
        started = time.monotonic()
        with NativeProducer(kafka_broker.endpoint) as producer:
            producer.send("pf.empty", b"wake", partition=0)
            producer.flush()
        _, body = decode_response(read_frame(sock), FetchResponse)
        assert time.monotonic() - started < 2.0 and len(body.responses[0].partitions[0].records) > 0
