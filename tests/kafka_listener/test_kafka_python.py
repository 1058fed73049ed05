"""Differential, kafka-python (the pure-Python client): the same scenario against real Apache
Kafka and against our listener must give the same answers. It produces uncompressed and with
each codec kafka-python has here without extra packages (gzip; lz4 and zstd through the
project's own dependencies), consumes in a group, commits part way with metadata, resumes in
a second consumer from the commit, and looks offsets up by time (the record's timestamp comes
back, not the query's)."""

from __future__ import annotations

import time
import warnings

import pytest

with warnings.catch_warnings():  # kafka-python 3.0 loads its schemas with a deprecated importlib call
    warnings.simplefilter("ignore", DeprecationWarning)
    from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
    from kafka.admin import NewTopic
    from kafka.structs import OffsetAndMetadata

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:importlib.resources")

TOPIC = "kp.topic"
GROUP = "kp.group"
CODECS = (None, "gzip", "lz4", "zstd")
PER_CODEC = 4
BASE_MS = 1_700_000_000_000  # record i is stamped BASE_MS + 1000 * i


def _drain(consumer: KafkaConsumer, count: int) -> list:
    records: list = []
    deadline = time.monotonic() + 30
    while len(records) < count:
        assert time.monotonic() < deadline, f"only {len(records)} of {count} records arrived"
        for batch in consumer.poll(timeout_ms=500, max_records=count - len(records)).values():
            records.extend(batch)
    return records


def _as_tuples(records) -> list:
    return [(r.offset, r.timestamp, r.key, r.value, [(k, bytes(v)) for k, v in r.headers]) for r in records]


def scenario(bootstrap: str) -> dict:
    out: dict = {}
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=20000)
    admin.create_topics([NewTopic(TOPIC, 1, 1)])
    admin.close()

    index = 0
    for codec in CODECS:
        producer = KafkaProducer(bootstrap_servers=bootstrap, compression_type=codec, linger_ms=50)
        for _ in range(PER_CODEC):
            producer.send(TOPIC, key=f"k{index}".encode(), value=(f"v{index}-{codec}-".encode() * 50),
                          headers=[("codec", str(codec).encode())], timestamp_ms=BASE_MS + 1000 * index)
            index += 1
        producer.flush(20)
        producer.close()
    total = index

    tp = TopicPartition(TOPIC, 0)
    first = KafkaConsumer(bootstrap_servers=bootstrap, group_id=GROUP, enable_auto_commit=False,
                          auto_offset_reset="earliest")
    first.subscribe([TOPIC])
    out["first_half"] = _as_tuples(_drain(first, total // 2))
    first.commit({tp: OffsetAndMetadata(total // 2, "half-way", -1)})
    committed = first.committed(tp, metadata=True)
    out["committed"] = (committed.offset, committed.metadata)
    first.close()

    second = KafkaConsumer(bootstrap_servers=bootstrap, group_id=GROUP, enable_auto_commit=False,
                           auto_offset_reset="earliest")
    second.subscribe([TOPIC])
    out["resumed"] = _as_tuples(_drain(second, total - total // 2))
    # a query between two records' stamps finds the later record and answers with its stamp
    found = second.offsets_for_times({tp: BASE_MS + 1000 * 5 - 400})[tp]
    out["by_time"] = (found.offset, found.timestamp)
    out["after_last"] = second.offsets_for_times({tp: BASE_MS + 1000 * total})[tp]
    out["end"] = second.end_offsets([tp])[tp]
    second.close()
    return out


def test_kafka_python_matches_apache_kafka(kafka_single, kafka_broker):
    ours = scenario(kafka_broker.bootstrap)
    theirs = scenario(kafka_single.bootstrap_servers)
    assert ours == theirs
    total = len(CODECS) * PER_CODEC
    assert [r[0] for r in ours["first_half"] + ours["resumed"]] == list(range(total))
    assert ours["resumed"][0][2] == f"k{total // 2}".encode()
    assert ours["committed"] == (total // 2, "half-way")
    assert ours["by_time"] == (5, BASE_MS + 5000)
    assert ours["after_last"] is None and ours["end"] == total
