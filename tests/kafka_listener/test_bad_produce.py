"""Bad Produce input over the Kafka protocol: a batch with a bad CRC, inconsistent lengths,
a record above the topic's max.message.bytes (plain, or a gzip batch that only inflates
beyond it), an unknown topic with auto-creation off.
Each gets Kafka's error code for its partition, nothing is written, and the broker keeps
serving (the same connection included)."""

from __future__ import annotations

import socket
import struct
from datetime import timedelta

import pytest
from kio.schema.errors import ErrorCode
from kio.schema.produce.v9.request import PartitionProduceData, ProduceRequest, TopicProduceData
from kio.schema.produce.v9.response import ProduceResponse

from broker.client import Admin
from broker.records import encode_batch

from .conftest import KafkaBrokerProcess, decode_response, encode_request, read_frame

CRC_AT = 17


def produce(sock, corr: int, topic: str, records: bytes):
    ask = ProduceRequest(transactional_id=None, acks=-1, timeout=timedelta(seconds=5), topic_data=(
        TopicProduceData(name=topic, partition_data=(PartitionProduceData(index=0, records=records),)),))
    sock.sendall(encode_request(0, 9, corr, ask))
    _, body = decode_response(read_frame(sock), ProduceResponse)
    return body.responses[0].partition_responses[0]


def test_bad_batches_get_kafka_errors_and_write_nothing(kafka_broker):
    with Admin(kafka_broker.endpoint) as native:
        native.create_topic("bad.t", partitions=1, config={"max_record_bytes": 4096})
    good = encode_batch([b"v1", b"v2"], 1_767_225_600_000_000_000)
    bad_crc = bytearray(good)
    struct.pack_into(">I", bad_crc, CRC_AT, struct.unpack_from(">I", bad_crc, CRC_AT)[0] ^ 1)
    short = bytearray(good)
    struct.pack_into(">i", short, 8, len(good))  # batchLength beyond the bytes sent
    big = encode_batch([b"x" * 10_000], 1_767_225_600_000_000_000, max_record_bytes=1 << 20)
    # 22 KB on the wire, 5 MB once inflated: judged by what it decompresses to
    bomb = encode_batch([bytes(5_000_000)], 1_767_225_600_000_000_000, codec="gzip", max_record_bytes=10 << 20)
    with socket.create_connection(("127.0.0.1", kafka_broker.kafka_port), timeout=10) as sock:
        assert produce(sock, 1, "bad.t", bytes(bad_crc)).error_code == ErrorCode.corrupt_message
        assert produce(sock, 2, "bad.t", bytes(short)).error_code == ErrorCode.corrupt_message
        assert produce(sock, 3, "bad.t", big).error_code == ErrorCode.message_too_large
        refused = produce(sock, 5, "bad.t", bomb)
        assert refused.error_code == ErrorCode.corrupt_message and "inflates beyond" in refused.error_message
        with Admin(kafka_broker.endpoint) as native:
            assert native.describe_topic("bad.t")["partitions"][0]["next_offset"] == 0
        ok = produce(sock, 4, "bad.t", good)
        assert ok.error_code == ErrorCode.none and ok.base_offset == 0


@pytest.fixture
def no_auto_create_broker(tmp_path):
    config = tmp_path / "edge.toml"
    config.write_text('[broker]\ndata_dir = "data"\nauto_create_topics = false\nkafka_listen = "off"\n')
    with KafkaBrokerProcess(tmp_path / "data", extra_args=["--config", str(config)]) as proc:
        yield proc


def test_unknown_topic_without_auto_creation(no_auto_create_broker):
    good = encode_batch([b"v"], 1_767_225_600_000_000_000)
    with socket.create_connection(("127.0.0.1", no_auto_create_broker.kafka_port), timeout=10) as sock:
        answer = produce(sock, 1, "nowhere", good)
    assert answer.error_code == ErrorCode.unknown_topic_or_partition
    with Admin(no_auto_create_broker.endpoint) as native:
        assert "nowhere" not in native.list_topics()
