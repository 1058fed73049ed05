"""A record the destination refuses stops at most its own partition, by its topic's policy,
reported with its offset and Kafka's error (issue 28 case 4), against a real Kafka node."""

from __future__ import annotations

import os
import time

import pytest
from confluent_kafka.admin import AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource, NewTopic

from broker.client import Admin, Producer
from edge.status import latest_health

from .test_mirror import BASE_NS, cloud_records, produce_local

pytestmark = [pytest.mark.kafka, pytest.mark.slow]


def wait_status(endpoint, predicate, timeout=60):
    deadline = time.monotonic() + timeout
    status = {}
    while time.monotonic() < deadline:
        with Admin(endpoint) as admin:
            status = latest_health(endpoint, admin).get("mirror") or {}
        if predicate(status):
            return status
        time.sleep(0.3)
    raise AssertionError(f"mirror status never matched: {status}")


def source_offsets(records):
    out = []
    for m in records:
        offset = int(dict(m.headers())["edge.source.offset"])
        assert m.value()[:8] == f"{offset:08d}".encode() or len(m.value()) > 2000, f"altered record at {offset}"
        out.append(offset)
    return out


def create_compacted(cluster, topic: str) -> None:
    admin = AdminClient({"bootstrap.servers": cluster.bootstrap_servers})
    for future in admin.create_topics([NewTopic(topic, 1, 1, config={"cleanup.policy": "compact"})]).values():
        future.result(30)


def produce_keyed(endpoint, topic: str, n: int, *, null_key_at: int, ahead_at: int | None = None, size: int = 8):
    """Records numbered by offset, keyed but one; ``ahead_at`` captured 3 h in the future."""
    with Producer(endpoint, linger_ms=2) as producer:
        for i in range(n):
            ts = BASE_NS + i * 1000 + (3 * 3600 * 10**9 if i == ahead_at else 0)
            producer.send(topic, f"{i:08d}".encode().ljust(size, b"."), key=None if i == null_key_at else b"k%d" % i,
                          timestamp_ns=ts)
        producer.flush(30)


def test_refused_records_follow_their_policy_and_block_no_other_partition(broker, kafka_single, mirror_single):
    make, vehicle = mirror_single
    admin = AdminClient({"bootstrap.servers": kafka_single.bootstrap_servers})
    keys_dest, lidar_dest = f"vehicles.{vehicle}.telemetry.keys", f"vehicles.{vehicle}.lidar.top"
    create_compacted(kafka_single, keys_dest)
    # telemetry.keys: offset 50 has no key (compacted destination: INVALID_RECORD), offset 60 a
    # capture time 3 h ahead (Kafka 4 refuses > 1 h: INVALID_TIMESTAMP)
    produce_keyed(broker.endpoint, "telemetry.keys", 100, null_key_at=50, ahead_at=60, size=200)
    produce_local(broker.endpoint, "lidar.top", 20)
    produce_local(broker.endpoint, "camera.front", 100)
    mirror = make(topics='["telemetry.*", "lidar.*", "camera.*"]', transaction_interval='"200ms"',
                  on_reject='{"telemetry.*" = "skip", "lidar.*" = "stop-partition"}').start()
    try:
        keys = cloud_records(kafka_single, keys_dest, 99, timeout=60)
        lidar = cloud_records(kafka_single, lidar_dest, 20, timeout=60)
        # Kafka itself refuses what the mirror could not know at start: the lidar destination's
        # size limit lowered while it runs; a 3000-byte incompressible record at offset 20
        lower = ConfigEntry("max.message.bytes", "2500", incremental_operation=AlterConfigOpType.SET)
        resource = ConfigResource(ConfigResource.Type.TOPIC, lidar_dest, incremental_configs=[lower])
        for future in admin.incremental_alter_configs([resource]).values():
            future.result(30)
        time.sleep(2)
        with Producer(broker.endpoint, linger_ms=0) as producer:
            producer.send("lidar.top", os.urandom(3000), key=b"big", partition=0, timestamp_ns=BASE_NS).result(10)
        produce_local(broker.endpoint, "lidar.top", 10, start=21)
        produce_local(broker.endpoint, "camera.front", 100, start=100)
        camera = cloud_records(kafka_single, f"vehicles.{vehicle}.camera.front", 200, timeout=60)
        status = wait_status(broker.endpoint, lambda s: "lidar.top/0" in (s.get("stopped_partitions") or {}))
        status = wait_status(broker.endpoint, lambda s: s.get("partitions", {}).get("camera.front/0", {})
                             .get("shipped_to") == 200)
    finally:
        assert mirror.stop() == 0, mirror.log()
    # before: every transaction aborted, 0 of these records shipped, link "down" without an offset
    assert source_offsets(keys) == [i for i in range(100) if i != 50], mirror.log()
    ahead = next(m for m in keys if dict(m.headers())["edge.source.offset"] == b"60")
    assert dict(ahead.headers())["edge.capture_ns"] == str(BASE_NS + 60_000 + 3 * 3600 * 10**9).encode()
    assert abs(ahead.timestamp()[1] / 1000 - time.time()) < 600, "sent with the producer's time"
    assert source_offsets(camera) == list(range(200)), "other partitions never blocked"
    assert source_offsets(lidar) == list(range(20))
    assert source_offsets(cloud_records(kafka_single, lidar_dest, 20, timeout=5)) == list(range(20)), \
        "the stopped partition shipped nothing past the refused record"
    stopped = status["stopped_partitions"]["lidar.top/0"]
    assert stopped["offset"] == 20 and stopped["code"] == 10, status  # MSG_SIZE_TOO_LARGE from Kafka
    skipped = [r for r in status["rejections"] if r["topic"] == "telemetry.keys"]
    assert [(r["offset"], r["code"], r["action"]) for r in skipped] == [(50, 87, "skip")], status
    assert status["retimed"] == 1
    # counters count what Kafka committed: 99 + 20 + 200 records, nothing attempted twice
    assert status["shipped_records"] == 99 + 20 + 200, status


def test_dead_letter_policy_moves_the_refused_record_aside(broker, kafka_single, mirror_single):
    make, vehicle = mirror_single
    dest, dead_letter = f"vehicles.{vehicle}.gps.fix", f"rejected.{vehicle}"
    create_compacted(kafka_single, dest)
    produce_keyed(broker.endpoint, "gps.fix", 10, null_key_at=5)
    mirror = make(topics='["gps.*"]', transaction_interval='"200ms"', on_reject=f'"dead-letter {dead_letter}"').start()
    try:
        shipped = cloud_records(kafka_single, dest, 9, timeout=60)
        aside = cloud_records(kafka_single, dead_letter, 1, timeout=30)
    finally:
        assert mirror.stop() == 0, mirror.log()
    assert source_offsets(shipped) == [0, 1, 2, 3, 4, 6, 7, 8, 9]
    assert len(aside) == 1 and aside[0].value() == b"00000005" and aside[0].key() is None
    headers = dict(aside[0].headers())
    assert headers["edge.source.offset"] == b"5" and headers["edge.reject.topic"] == dest.encode()
    assert b"null key" in headers["edge.reject.error"]
