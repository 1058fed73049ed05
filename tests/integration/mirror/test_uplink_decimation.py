"""Decimation and transcoding on the uplink only, against the real Kafka of tests/kafka: the
cloud gets every 2nd camera frame at half size and low JPEG quality and voxel-downsampled
LiDAR clouds, each marked with what was done (``edge.uplink``); the vehicle keeps the originals."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from broker.client import Producer
from drivers.camera.encoding import decode_frame, encode_frame
from drivers.pointcloud import POINT_DTYPE, decode_cloud, encode_cloud

from .conftest import local_records
from .test_mirror import BASE_NS, cloud_records

pytestmark = [pytest.mark.kafka, pytest.mark.slow]


def _frame(i: int) -> tuple[bytes, dict[str, str]]:
    image = np.zeros((480, 640, 3), np.uint8)
    cv2.putText(image, str(i), (200, 300), cv2.FONT_HERSHEY_SIMPLEX, 6, (255, 255, 255), 12)
    value, headers = encode_frame(image, "jpeg", 95)
    return bytes(value), headers


def _cloud(i: int) -> tuple[bytes, dict[str, str]]:
    points = np.zeros(20_000, POINT_DTYPE)
    rng = np.random.default_rng(i)
    for axis in "xyz":
        points[axis] = rng.uniform(-10, 10, len(points))
    value, headers = encode_cloud(points)
    return bytes(value), headers


def test_the_cloud_gets_less_and_says_so_the_vehicle_keeps_everything(broker, kafka_single, mirror_single):
    make, vehicle = mirror_single
    local = {}
    with Producer(broker.endpoint, linger_ms=2) as producer:
        for i in range(6):
            for topic, (value, headers) in (("camera.front", _frame(i)), ("lidar.top", _cloud(i))):
                local[(topic, i)] = value
                producer.send(topic, value, key=b"k", headers=headers, timestamp_ns=BASE_NS + i * 1000)
        producer.flush(30)
    mirror = make(topics='["camera.*", "lidar.*"]', transaction_interval='"200ms"', sampling='{"camera.*" = 2}',
                  transcode='{"camera.*" = {jpeg_quality = 30, scale = 0.5}, "lidar.*" = {voxel_m = 2.0}}').start()
    try:
        cameras = cloud_records(kafka_single, f"vehicles.{vehicle}.camera.front", 3)
        clouds = cloud_records(kafka_single, f"vehicles.{vehicle}.lidar.top", 6)
    finally:
        assert mirror.stop() == 0, mirror.log()
    assert [dict(m.headers())["edge.source.offset"] for m in cameras] == [b"0", b"2", b"4"]  # every 2nd
    for msg in cameras:
        headers = dict(msg.headers())
        assert headers["edge.uplink"] == b"every=2 scale=0.5 jpeg_quality=30 from=640x480:jpeg"
        assert decode_frame(msg.value(), headers).shape == (240, 320, 3)
        assert len(msg.value()) < len(local[("camera.front", int(headers["edge.source.offset"]))]) / 3
    for msg in clouds:
        headers = dict(msg.headers())
        kept = decode_cloud(msg.value(), headers)
        assert headers["edge.uplink"] == f"voxel_m=2 points=20000->{len(kept)}".encode() and 900 <= len(kept) <= 1000
    held = local_records(broker.endpoint, [("camera.front", 0), ("lidar.top", 0)], 12)  # the vehicle's log
    assert {(r.topic, r.offset): bytes(r.value) for r in held} == local  # every record as recorded
