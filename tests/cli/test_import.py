"""``edge import``: an ``edge export`` MCAP imported back gives the same frames and clouds
(bytes, sizes, layouts, times); other channels arrive raw; a file that is not MCAP is one line."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from broker.client import Admin, Consumer, Producer
from drivers.pointcloud import POINT_DTYPE, decode_cloud, encode_cloud
from tests.support.broker_process import BrokerProcess

EDGE = [sys.executable, "-m", "edge.cli"]
T0 = 1_767_225_600_000_000_000


def edge(endpoint: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*EDGE, *args], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "EDGE_ENDPOINT": endpoint})


def read(endpoint: str, topic: str) -> list:
    with Admin(endpoint) as admin:
        end = admin.list_offset(topic, 0, "latest")
    out = []
    with Consumer(endpoint, max_wait_ms=50) as consumer:
        consumer.assign([(topic, 0)])
        while len(out) < end:
            records = consumer.poll(5.0)
            assert records, f"{topic}: {len(out)} of {end}"
            out += records
    return out


def test_export_then_import_round_trip(data_dir, tmp_path):
    cv2 = pytest.importorskip("cv2")
    pytest.importorskip("mcap")
    frames = []
    for i in range(4):
        image = np.full((48, 64, 3), i * 40, dtype=np.uint8)
        frames.append(bytes(cv2.imencode(".jpg", image)[1]))
    rng = np.random.default_rng(7)
    clouds = []
    for i in range(3):
        points = np.zeros(100 + i, dtype=POINT_DTYPE)
        for name in POINT_DTYPE.names:
            points[name] = rng.integers(0, 100, len(points))
        clouds.append(points)
    with BrokerProcess(data_dir) as broker:
        with Producer(broker.endpoint, acks="durable") as producer:
            futures = [producer.send("camera.front", f, headers={"encoding": "jpeg", "width": "64", "height": "48"},
                                     timestamp_ns=T0 + i * 10_000_000) for i, f in enumerate(frames)]
            for i, points in enumerate(clouds):
                value, headers = encode_cloud(points, model="VLP-16")
                futures.append(producer.send("lidar.top", bytes(value), headers=headers,
                                             timestamp_ns=T0 + i * 10_000_000 + 5_000_000))
            for future in futures:
                future.result(30)
        out = tmp_path / "drive.mcap"
        exported = edge(broker.endpoint, "export", "--topics", "camera.front,lidar.top", "--start", "earliest",
                        "--out", str(out), "-q")
        assert exported.returncode == 0, exported.stderr
        imported = edge(broker.endpoint, "import", str(out), "--prefix", "back.", "--format", "json")
        assert imported.returncode == 0, imported.stderr
        summary = json.loads(imported.stdout)
        assert summary["topics"] == {"back.camera.front": 4, "back.lidar.top": 3} and summary["raw_fallbacks"] == 0
        original_cam, back_cam = read(broker.endpoint, "camera.front"), read(broker.endpoint, "back.camera.front")
        assert [bytes(r.value) for r in back_cam] == frames
        assert [r.timestamp for r in back_cam] == [r.timestamp for r in original_cam]
        assert all(r.header("width") == "64" and r.header("height") == "48" and r.header("encoding") == "jpeg"
                   for r in back_cam)
        back_lidar = read(broker.endpoint, "back.lidar.top")
        assert [r.timestamp for r in back_lidar] == [T0 + i * 10_000_000 + 5_000_000 for i in range(3)]
        for record, points in zip(back_lidar, clouds):
            again = decode_cloud(record.value, record.headers)
            assert again.dtype == POINT_DTYPE and np.array_equal(again, points)


def write_mcap(path, schema: tuple[str, str, bytes], topic: str, encoding: str, messages: list[bytes]) -> None:
    """An MCAP file with one channel; message i is logged at T0 + i."""
    from mcap.writer import Writer

    with open(path, "wb") as f:
        writer = Writer(f)
        writer.start()
        channel = writer.register_channel(topic, encoding, writer.register_schema(*schema))
        for i, data in enumerate(messages):
            writer.add_message(channel, log_time=T0 + i, publish_time=T0 + i, data=data)
        writer.finish()


def test_other_channels_raw_and_bad_files(data_dir, tmp_path):
    path = tmp_path / "gnss.mcap"
    write_mcap(path, ("gnss.Fix", "jsonschema", b"{}"), "/gnss/fix", "json",
               [json.dumps({"i": i}).encode() for i in range(3)])
    not_mcap = tmp_path / "notes.mcap"
    not_mcap.write_bytes(b"hello, not an mcap file\n" * 10)
    with BrokerProcess(data_dir) as broker:
        done = edge(broker.endpoint, "import", str(path))
        assert done.returncode == 0 and "imported 3 records (raw 3) into gnss.fix: 3" in done.stdout, done.stderr
        records = read(broker.endpoint, "gnss.fix")
        assert [json.loads(bytes(r.value)) for r in records] == [{"i": 0}, {"i": 1}, {"i": 2}]
        assert records[0].header("mcap.schema") == "gnss.Fix" and records[0].header("mcap.encoding") == "json"
        assert [r.timestamp for r in records] == [T0, T0 + 1, T0 + 2]
        bad = edge(broker.endpoint, "import", str(not_mcap))
        assert bad.returncode == 2 and "not a readable MCAP file" in bad.stderr
        assert len(bad.stderr.strip().splitlines()) == 1 and "Traceback" not in bad.stderr


def test_a_message_that_cannot_be_converted_is_imported_raw(data_dir, tmp_path):
    path = tmp_path / "broken.mcap"
    write_mcap(path, ("foxglove.CompressedImage", "protobuf", b""), "/camera/front", "protobuf",
               [b"\xff\xff\xff not protobuf"])
    with BrokerProcess(data_dir) as broker:
        done = edge(broker.endpoint, "import", str(path))
        assert done.returncode == 0 and "1 could not be converted and were imported raw" in done.stdout, done.stderr
        record = read(broker.endpoint, "camera.front")[0]
        assert bytes(record.value) == b"\xff\xff\xff not protobuf" and record.header("import.error")
        assert record.header("mcap.schema") == "foxglove.CompressedImage"

