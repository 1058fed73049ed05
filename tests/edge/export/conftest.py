"""A real broker holding a few seconds of the real captures, recorded through the drivers.

``recorded`` (module-scoped, one broker per test module): the camera driver records
``car-detection.mp4`` with its own timing (12.5 fps, from the time it was opened), then the LiDAR driver records
the VLP-16 capture at full speed, so the LiDAR clouds land inside the video's time span.
The window ``[start_ns, end_ns)`` covers the camera's first frames and every cloud. Two
more topics hold records an export must skip: ``camera.bad`` (good JPEGs and corrupt
ones) and ``gnss.fix`` (JSON, neither a frame nor a cloud).
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from broker.client import Admin, Consumer, Producer
from tests.support.broker_process import BrokerProcess

EDGE = [sys.executable, "-m", "edge.cli"]


@dataclass
class Truth:
    """What the broker holds in the window, read directly (the export's ground truth)."""

    timestamps: list[int] = field(default_factory=list)
    offsets: list[int] = field(default_factory=list)
    points: list[int] = field(default_factory=list)
    size: tuple[int, int] | None = None


@dataclass
class Recorded:
    broker: BrokerProcess
    start_ns: int
    end_ns: int
    topics: dict[str, Truth]

    @property
    def endpoint(self) -> str:
        return self.broker.endpoint


def read_all(endpoint: str, topic: str) -> list:
    with Admin(endpoint) as admin:
        end = admin.list_offset(topic, 0, "latest")
    consumer = Consumer(endpoint, max_wait_ms=50)
    try:
        consumer.assign([(topic, 0)])
        out = []
        while len(out) < end:
            records = consumer.poll(5.0)
            if not records:
                raise AssertionError(f"{topic}: only {len(out)} of {end} records")
            out += records
        return out
    finally:
        consumer.close()


def _record_drivers(endpoint: str, shared_data: Path) -> None:
    camera = subprocess.run([*EDGE, "driver", "camera", "--name", "front", "--source",
                             str(shared_data / "car-detection.mp4"), "--rate", "max",
                             "--endpoint", endpoint], capture_output=True, text=True, timeout=120, check=False)
    assert camera.returncode == 0, camera.stderr[-2000:]
    lidar = subprocess.run([*EDGE, "driver", "lidar", "--name", "top", "--source",
                            f"pcap:{shared_data / 'vlp16-90deg-50frames.pcap'}", "--rate", "max",
                            "--calibration", str(shared_data / "VLP-16.xml"), "--endpoint", endpoint],
                           capture_output=True, text=True, timeout=120, check=False)
    assert lidar.returncode == 0, lidar.stderr[-2000:]


def _produce_extras(endpoint: str, good_jpeg: bytes, start_ns: int) -> None:
    with Admin(endpoint) as admin:
        admin.create_topic("camera.bad", 1, if_not_exists=True)
        admin.create_topic("gnss.fix", 1, if_not_exists=True)
    jpeg_headers = {"encoding": "jpeg", "width": "768", "height": "432"}
    with Producer(endpoint, acks="durable", linger_ms=0) as producer:
        futures = []
        for i in range(6):
            ts = start_ns + 100_000_000 * (i + 1)
            if i in (2, 4):  # corrupt: garbage bytes, then a PNG header but a JPEG encoding
                value, headers = (b"\x00garbage" * 50, jpeg_headers) if i == 2 else (good_jpeg, {**jpeg_headers,
                                                                                                 "width": "x"})
            else:
                value, headers = good_jpeg, jpeg_headers
            futures.append(producer.send("camera.bad", value, headers=headers, timestamp_ns=ts))
            fix = {"lat": 48.1 + i * 1e-5, "lon": 11.5}
            futures.append(producer.send("gnss.fix", json.dumps(fix).encode(), headers={"encoding": "json"},
                                         timestamp_ns=ts))
        for future in futures:
            future.result(10)


@pytest.fixture(scope="module")
def recorded(shared_data, tmp_path_factory) -> Recorded:
    from drivers.camera.encoding import decode_frame
    from drivers.pointcloud import decode_cloud

    data = tmp_path_factory.mktemp("export-broker") / "data"
    data.mkdir()
    with BrokerProcess(data) as broker:
        _record_drivers(broker.endpoint, shared_data)
        camera = read_all(broker.endpoint, "camera.front")
        lidar = read_all(broker.endpoint, "lidar.top")
        assert len(camera) == 377 and len(lidar) == 52
        assert camera[0].timestamp < lidar[0].timestamp < lidar[-1].timestamp < camera[-1].timestamp
        start_ns = camera[0].timestamp
        end_ns = lidar[-1].timestamp + 1
        _produce_extras(broker.endpoint, bytes(camera[0].value), start_ns)
        topics = {}
        for name, records in (("camera.front", camera), ("lidar.top", lidar)):
            truth = Truth()
            for record in records:
                if start_ns <= record.timestamp < end_ns:
                    truth.timestamps.append(record.timestamp)
                    truth.offsets.append(record.offset)
                    if name.startswith("lidar"):
                        truth.points.append(len(decode_cloud(record.value, record.headers)))
            if name.startswith("camera"):
                image = decode_frame(records[0].value, records[0].headers)
                truth.size = (image.shape[1], image.shape[0])
            topics[name] = truth
        del camera, lidar
        yield Recorded(broker, start_ns, end_ns, topics)
