"""Replay from the cloud copy: what the mirror shipped to the real Kafka cluster reads back
as the vehicle's own records (topic, partition, offset, capture time, headers), and
`edge replay --kafka` republishes a window of it into a broker."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from broker.client import Admin, Consumer, Producer
from edge.replay.sources import KafkaSource, open_window, resolve_window, select_partitions
from edge.replay.timespec import WindowSpec

from .test_mirror import cloud_records

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

T0 = 1_795_000_000_000_000_000
MS = 1_000_000


def test_kafka_source_restores_vehicle_records_and_replays_them(broker, kafka_cluster, mirror_setup):
    make, vehicle = mirror_setup
    with Admin(broker.endpoint) as admin:
        admin.create_topic("camera.front", 2)
    with Producer(broker.endpoint, linger_ms=2) as producer:
        for i in range(60):  # 2 s at 30 Hz, alternating partitions
            producer.send("camera.front", b"frame-%03d" % i, key=b"k%d" % i, partition=i % 2,
                          headers={"encoding": "jpeg", "seq": str(i)}, timestamp_ns=T0 + i * 33 * MS)
        producer.flush(30)
    mirror = make(topics='["camera.*"]', transaction_interval='"200ms"').start()
    try:
        assert len(cloud_records(kafka_cluster, f"vehicles.{vehicle}.camera.front", 60, partitions=2)) == 60
    finally:
        assert mirror.stop() == 0, mirror.log()

    source = KafkaSource(kafka_cluster.bootstrap_servers, vehicle)
    try:
        assert source.topics() == {"camera.front": 2}
        partitions = select_partitions(source, ["camera.*"])
        assert partitions == [("camera.front", 0), ("camera.front", 1)]
        window = resolve_window(source, WindowSpec(T0 + 10 * 33 * MS, T0 + 40 * 33 * MS), partitions)
        with open_window(source, partitions, window) as stream:
            records = list(stream)
        assert [r.timestamp for r in records] == [T0 + i * 33 * MS for i in range(10, 40)]
        first = records[0]
        assert (first.topic, first.partition, first.offset, first.key) == ("camera.front", 0, 5, b"k10")
        assert bytes(first.value) == b"frame-010"
        assert first.headers == {"encoding": b"jpeg", "seq": b"10"}  # no edge.* mirror headers
        assert source.timestamp_at(("camera.front", 1), 7) == T0 + 15 * 33 * MS
    finally:
        source.close()

    done = subprocess.run([sys.executable, "-m", "edge.cli", "replay", "--kafka", kafka_cluster.bootstrap_servers,
                           "--vehicle", vehicle, "--topics", "camera.front", "--start", str(T0),
                           "--end", str(T0 + 30 * 33 * MS), "--max", "--prefix", "cloud.", "--no-control",
                           "--endpoint", broker.endpoint], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1])["records"] == 30
    consumer = Consumer(broker.endpoint, max_wait_ms=100)
    consumer.assign([("cloud.camera.front", 0), ("cloud.camera.front", 1)])
    consumer.seek_to_beginning()
    got = []
    for _ in range(50):
        got.extend(consumer.poll(0.2))
        if len(got) >= 30:
            break
    consumer.close()
    assert sorted(int(r.headers["seq"]) for r in got) == list(range(30))
    assert all(r.headers["replay.source.topic"] == b"camera.front" for r in got)
    assert {r.partition for r in got} == {0, 1}
