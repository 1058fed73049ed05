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
                          env={**os.environ, "EDGE_ENDPOINT": endpoint}, check=False)


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
        for record, points in zip(back_lidar, clouds, strict=True):
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



ROS_TIME = "MSG: builtin_interfaces/Time\nint32 sec\nuint32 nanosec\n"
ROS_HEADER = "MSG: std_msgs/Header\nbuiltin_interfaces/Time stamp\nstring frame_id\n"
ROS_SEP = "=" * 80 + "\n"
ROS_SCHEMAS = {
    "sensor_msgs/msg/Image": "std_msgs/Header header\nuint32 height\nuint32 width\nstring encoding\n"
                             "uint8 is_bigendian\nuint32 step\nuint8[] data\n",
    "sensor_msgs/msg/CompressedImage": "std_msgs/Header header\nstring format\nuint8[] data\n",
    "sensor_msgs/msg/PointCloud2": "std_msgs/Header header\nuint32 height\nuint32 width\nPointField[] fields\n"
                                   "bool is_bigendian\nuint32 point_step\nuint32 row_step\nuint8[] data\n"
                                   "bool is_dense\n" + ROS_SEP + "MSG: sensor_msgs/PointField\nstring name\n"
                                   "uint32 offset\nuint8 datatype\nuint32 count\n",
}


def tiny_png(width: int, height: int) -> bytes:
    import struct
    import zlib

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    rows = b"".join(b"\x00" + bytes(range(width * 3)) for _ in range(height))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


def test_rosbag2_images_clouds_and_raw_channels(data_dir, tmp_path):
    """A rosbag2-style MCAP (CDR messages, ros2msg schemas, written by mcap-ros2-support):
    images, compressed images and PointCloud2 become camera and cloud records with every pixel
    and point value, the header stamps and frame ids; other channels arrive raw, byte for byte."""
    pytest.importorskip("mcap_ros2")
    from mcap.reader import make_reader
    from mcap_ros2.writer import Writer

    def header(i: int, frame: str) -> dict:
        return {"stamp": {"sec": T0 // 10**9 + i, "nanosec": 250_000_000}, "frame_id": frame}

    rng = np.random.default_rng(3)
    bgr = rng.integers(0, 256, (4, 5, 3), dtype=np.uint8)
    rgb = rng.integers(0, 256, (4, 5, 3), dtype=np.uint8)
    png = tiny_png(6, 2)
    # x y z f4 at 0, pad, intensity f4 at 16, ring u2 at 20, t f8 at 24: point step 32; rows padded by 8 bytes
    cloud_dtype = np.dtype({"names": ["x", "y", "z", "intensity", "ring", "t"], "offsets": [0, 4, 8, 16, 20, 24],
                            "formats": ["<f4", "<f4", "<f4", "<f4", "<u2", "<f8"], "itemsize": 32})
    points = np.zeros((2, 3), dtype=cloud_dtype)
    for name in cloud_dtype.names:
        points[name] = rng.integers(0, 1000, points.shape)
    cloud_rows = b"".join(points[r].tobytes() + b"\xee" * 8 for r in range(2))
    fields = [{"name": n, "offset": o, "datatype": d, "count": 1}
              for n, o, d in zip(cloud_dtype.names, [0, 4, 8, 16, 20, 24], [7, 7, 7, 7, 4, 8], strict=True)]
    path = tmp_path / "bag.mcap"
    with open(path, "wb") as f:
        writer = Writer(f)
        schemas = {name: writer.register_msgdef(name, text + ROS_SEP + ROS_HEADER + ROS_SEP + ROS_TIME)
                   for name, text in ROS_SCHEMAS.items()}
        string_schema = writer.register_msgdef("std_msgs/msg/String", "string data\n")
        padded = np.concatenate([bgr.reshape(4, 15), np.full((4, 3), 7, np.uint8)], axis=1)  # step 18 > 5 x 3
        writer.write_message("/cam/raw", schemas["sensor_msgs/msg/Image"], {
            "header": header(0, "cam_front"), "height": 4, "width": 5, "encoding": "bgr8", "is_bigendian": 0,
            "step": 18, "data": padded.tobytes()}, log_time=T0)
        writer.write_message("/cam/raw", schemas["sensor_msgs/msg/Image"], {
            "header": header(1, "cam_front"), "height": 4, "width": 5, "encoding": "rgb8", "is_bigendian": 0,
            "step": 15, "data": rgb.tobytes()}, log_time=T0 + 1)
        writer.write_message("/cam/raw", schemas["sensor_msgs/msg/Image"], {  # no camera form: raw, counted
            "header": header(2, "cam_front"), "height": 1, "width": 2, "encoding": "yuv422", "is_bigendian": 0,
            "step": 4, "data": b"\x01\x02\x03\x04"}, log_time=T0 + 2)
        writer.write_message("/cam/jpeg", schemas["sensor_msgs/msg/CompressedImage"], {
            "header": header(0, "cam_rear"), "format": "rgb8; png compressed bgr8", "data": png}, log_time=T0)
        writer.write_message("/points", schemas["sensor_msgs/msg/PointCloud2"], {
            "header": header(0, "lidar_top"), "height": 2, "width": 3, "fields": fields, "is_bigendian": False,
            "point_step": 32, "row_step": 104, "data": cloud_rows, "is_dense": True}, log_time=T0)
        writer.write_message("/chatter", string_schema, {"data": "hello"}, log_time=T0 + 5)
        writer.finish()
    with open(path, "rb") as f:
        chatter_cdr = [m.data for _, c, m in make_reader(f).iter_messages() if c.topic == "/chatter"]
    with BrokerProcess(data_dir) as broker:
        done = edge(broker.endpoint, "import", str(path), "--format", "json")
        assert done.returncode == 0, done.stderr
        summary = json.loads(done.stdout)
        assert summary["topics"] == {"cam.raw": 3, "cam.jpeg": 1, "points": 1, "chatter": 1}
        assert summary["kinds"] == {"camera": 3, "pointcloud": 1, "raw": 2} and summary["raw_fallbacks"] == 1
        stamp = [T0 // 10**9 * 10**9 + i * 10**9 + 250_000_000 for i in range(3)]
        raw_images = read(broker.endpoint, "cam.raw")
        assert [bytes(r.value) for r in raw_images[:2]] == [bgr.tobytes(), rgb[:, :, ::-1].tobytes()]
        assert [r.timestamp for r in raw_images[:2]] == stamp[:2]
        assert all((r.header("encoding"), r.header("width"), r.header("height"), r.header("frame"))
                   == ("bgr8", "5", "4", "cam_front") for r in raw_images[:2])
        assert raw_images[2].header("import.error") and raw_images[2].header("mcap.schema") == "sensor_msgs/msg/Image"
        [compressed] = read(broker.endpoint, "cam.jpeg")
        assert bytes(compressed.value) == png and compressed.timestamp == stamp[0]
        assert (compressed.header("encoding"), compressed.header("width"), compressed.header("height"),
                compressed.header("frame")) == ("png", "6", "2", "cam_rear")
        [cloud] = read(broker.endpoint, "points")
        again = decode_cloud(cloud.value, cloud.headers)
        assert again.dtype.names == cloud_dtype.names and cloud.header("frame") == "lidar_top"
        assert [again.dtype[n].str for n in again.dtype.names] == ["<f4", "<f4", "<f4", "<f4", "<u2", "<f8"]
        for name in cloud_dtype.names:
            assert np.array_equal(again[name], points[name].reshape(-1)), name
        [chatter] = read(broker.endpoint, "chatter")
        assert bytes(chatter.value) == chatter_cdr[0] and chatter.header("mcap.encoding") == "cdr"
        assert chatter.header("mcap.schema") == "std_msgs/msg/String" and chatter.timestamp == T0 + 5


def test_h264_export_then_import_round_trip(shared_data, data_dir, tmp_path):
    """H.264 records exported as foxglove.CompressedVideo come back as video records: the same
    access units, keyframe marks and coded size; deltas before the first keyframe (no size yet)
    are imported raw and counted, never dropped."""
    pytest.importorskip("av")
    from drivers.camera.passthrough import encode_passthrough
    from drivers.camera.sources import open_camera_source

    with open_camera_source(shared_data / "car-detection.mp4", rate="max", passthrough=True, epoch_ns=0) as source:
        frames = [f for _, f in zip(range(66), source, strict=False)][55:]  # keyframe at 60
    with BrokerProcess(data_dir) as broker:
        with Producer(broker.endpoint, acks="durable") as producer:
            for i, frame in enumerate(frames):
                value, headers = encode_passthrough(frame)
                producer.send("camera.h264", bytes(value), headers=headers, timestamp_ns=T0 + i * 80_000_000)
            producer.flush(30)
        out = tmp_path / "video.mcap"
        exported = edge(broker.endpoint, "export", "--topics", "camera.h264", "--start", "earliest", "--end",
                        str(T0 + 11 * 80_000_000), "--out", str(out), "-q")
        assert exported.returncode == 0, exported.stderr
        imported = edge(broker.endpoint, "import", str(out), "--prefix", "back.", "--format", "json")
        assert imported.returncode == 0, imported.stderr
        assert json.loads(imported.stdout)["raw_fallbacks"] == 5
        original, back = read(broker.endpoint, "camera.h264"), read(broker.endpoint, "back.camera.h264")
        assert [bytes(r.value) for r in back[5:]] == [bytes(r.value) for r in original[5:]]
        assert [r.timestamp for r in back] == [r.timestamp for r in original]
        assert all(r.header("import.error") and r.header("mcap.schema") == "foxglove.CompressedVideo"
                   for r in back[:5])  # the message bytes, raw
        for before, after in zip(original[5:], back[5:], strict=True):
            assert [after.header(h) for h in ("encoding", "width", "height", "keyframe")] == \
                [before.header(h) for h in ("encoding", "width", "height", "keyframe")]
        assert [r.header("keyframe") for r in back[5:]] == ["1"] + ["0"] * 5
