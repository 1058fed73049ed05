"""Replay and export from the cloud copy: what the mirror shipped to the real Kafka cluster
reads back as the vehicle's own records (topic, partition, offset, capture time, headers),
`edge replay --kafka` republishes a window of it into a broker, and `edge export --kafka`
writes it to an MCAP file."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import cv2
import numpy as np
import pytest
from mcap.reader import make_reader

from broker.client import Admin, Consumer, Producer
from edge.replay.sources import KafkaSource, open_window, resolve_window, select_partitions
from edge.replay.timespec import WindowSpec

from .test_mirror import cloud_records

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

T0 = (time.time_ns() - 3600 * 10**9) // 10**9 * 10**9  # recent: Kafka retention works on capture times
MS = 1_000_000


def _jpeg(i: int) -> bytes:
    image = np.full((48, 64, 3), i * 4, dtype=np.uint8)
    return cv2.imencode(".jpg", image)[1].tobytes()


def test_kafka_source_restores_vehicle_records_and_replays_them(broker, kafka_cluster, mirror_setup, tmp_path):
    make, vehicle = mirror_setup
    with Admin(broker.endpoint) as admin:
        admin.create_topic("camera.front", 2)
    with Producer(broker.endpoint, linger_ms=2) as producer:
        for i in range(60):  # 2 s at 30 Hz, alternating partitions
            producer.send("camera.front", _jpeg(i), key=b"k%d" % i, partition=i % 2,
                          headers={"encoding": "jpeg", "width": "64", "height": "48", "seq": str(i)},
                          timestamp_ns=T0 + i * 33 * MS)
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
        assert bytes(first.value) == _jpeg(10)
        # no edge.* mirror headers
        assert first.headers == {"encoding": b"jpeg", "width": b"64", "height": b"48", "seq": b"10"}
        assert source.timestamp_at(("camera.front", 1), 7) == T0 + 15 * 33 * MS
    finally:
        source.close()

    done = subprocess.run([sys.executable, "-m", "edge.cli", "replay", "--kafka", kafka_cluster.bootstrap_servers,
                           "--vehicle", vehicle, "--topics", "camera.front", "--start", str(T0),
                           "--end", str(T0 + 30 * 33 * MS), "--max", "--prefix", "cloud.", "--no-control",
                           "--endpoint", broker.endpoint], capture_output=True, text=True, timeout=120, check=False)
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

    out = tmp_path / "cloud.mcap"
    done = subprocess.run([sys.executable, "-m", "edge.cli", "export", "--kafka", kafka_cluster.bootstrap_servers,
                           "--vehicle", vehicle, "--topics", "camera.*", "--start", str(T0 + 10 * 33 * MS),
                           "--end", str(T0 + 40 * 33 * MS), "--out", str(out), "--quiet"],
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    with open(out, "rb") as fh:
        messages = [(channel.topic, schema.name, message.log_time)
                    for schema, channel, message in make_reader(fh).iter_messages()]
    assert [m[2] for m in messages] == [T0 + i * 33 * MS for i in range(10, 40)]
    assert {(m[0], m[1]) for m in messages} == {("camera.front", "foxglove.CompressedImage")}
