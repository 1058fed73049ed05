"""Driver processes into a real broker, on the real captures in ../shared/data."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from broker.client import Admin, Consumer
from tests.drivers.lidar.captures import HDL32E, HDL32E_CALIBRATION, HDL32E_CAPTURE, OUSTER_DUAL, needs

EDGE = [sys.executable, "-m", "edge.cli"]


def read_topic(endpoint, topic, count, timeout=10.0):
    consumer = Consumer(endpoint)
    try:
        consumer.assign([(topic, 0)])
        out = []
        while len(out) < count:
            records = consumer.poll(timeout)
            assert records, f"{topic}: only {len(out)} of {count} records"
            out += records
        return out
    finally:
        consumer.close()


def test_camera_driver_records_the_real_footage(broker, shared_data):
    video = shared_data / "car-detection.mp4"
    result = subprocess.run([*EDGE, "driver", "camera", "--name", "park", "--source", str(video), "--rate", "max",
                             "--endpoint", broker.endpoint], capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    with Admin(broker.endpoint) as admin:
        assert admin.describe_topic("camera.park")["partitions"][0]["next_offset"] == 377
    records = read_topic(broker.endpoint, "camera.park", 377)
    from drivers.camera.encoding import decode_frame

    first = records[0]
    assert first.header("sensor") == "park" and first.header("encoding") == "jpeg"
    assert (first.header("width"), first.header("height")) == ("768", "432")
    assert decode_frame(first.value, first.headers).shape == (432, 768, 3)
    assert [int(r.header("seq")) for r in records] == list(range(377))
    stamps = np.array([r.timestamp for r in records])
    assert (np.diff(stamps) > 0).all() and all(int(r.header("capture_ns")) == r.timestamp for r in records)
    health = read_topic(broker.endpoint, "_health", 1)
    final = [json.loads(bytes(r.value)) for r in health if r.key == b"park"]
    assert final and final[-1]["sensor"] == "park"


def test_camera_driver_keeps_recorded_timestamps(broker, shared_data):
    video = shared_data / "car-detection.mp4"
    result = subprocess.run([*EDGE, "driver", "camera", "--name", "kt", "--source", str(video), "--rate", "max",
                             "--keep-timestamps", "--endpoint", broker.endpoint], capture_output=True, text=True,
                            timeout=120, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    records = read_topic(broker.endpoint, "camera.kt", 377)
    gaps = np.diff([r.timestamp for r in records]) / 1e6
    assert np.allclose(gaps, 80.0, atol=1.0), gaps[:10]  # 12.5 fps as recorded
    assert records[0].timestamp == 1_524_177_960_000_000_000  # the file's creation_time, 2018-04-19T22:46:00Z


def test_missing_video_fails_clearly(broker, tmp_path):
    result = subprocess.run([*EDGE, "driver", "camera", "--name", "x", "--source", str(tmp_path / "none.mp4"),
                             "--endpoint", broker.endpoint], capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 1 and "not found" in result.stderr


def test_corrupt_video_exits_nonzero_with_the_reason(broker, tmp_path):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"\x00\x01garbage" * 1000)
    result = subprocess.run([*EDGE, "driver", "camera", "--name", "bad", "--source", str(bad),
                             "--endpoint", broker.endpoint], capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 1
    assert "bad.mp4" in result.stderr and ("cannot open" in result.stderr or "no decodable" in result.stderr)


def test_lidar_driver_records_the_real_capture(broker, shared_data):
    pcap = shared_data / "vlp16-90deg-50frames.pcap"
    result = subprocess.run([*EDGE, "driver", "lidar", "--name", "top", "--source", f"pcap:{pcap}", "--rate", "max",
                             "--calibration", str(shared_data / "VLP-16.xml"), "--endpoint", broker.endpoint],
                            capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    records = read_topic(broker.endpoint, "lidar.top", 52)
    from drivers.pointcloud import decode_cloud

    counts = [len(decode_cloud(r.value, r.headers)) for r in records]
    assert len(counts) == 52 and counts[0] == 5736 and counts[2] == 13898 and counts[16] == 13860 and counts[51] == 274
    assert records[16].header("encoding") == "pointcloud" and records[16].header("sensor") == "top"


def test_lidar_driver_refuses_a_non_pcap(broker, tmp_path):
    bad = tmp_path / "x.pcap"
    bad.write_bytes(b"not a capture at all" * 10)
    result = subprocess.run([*EDGE, "driver", "lidar", "--name", "x", "--source", f"pcap:{bad}",
                             "--endpoint", broker.endpoint], capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 1 and "x.pcap" in result.stderr


@HDL32E
def test_lidar_driver_identifies_an_hdl32e_given_only_its_calibration(broker):
    # the old default (--model VLP-16) decoded this HDL-32E capture as a VLP-16: z off by metres
    result = subprocess.run([*EDGE, "driver", "lidar", "--name", "roof", "--source",
                             f"pcap:{HDL32E_CAPTURE}", "--rate", "max",
                             "--calibration", str(HDL32E_CALIBRATION), "--endpoint", broker.endpoint],
                            capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    records = read_topic(broker.endpoint, "lidar.roof", 4)
    from drivers.pointcloud import decode_cloud

    frame8 = decode_cloud(records[1].value, records[1].headers)
    assert records[1].header("model") == "HDL-32E" and len(frame8) == 49737
    assert float(frame8["z"][16000]) == pytest.approx(3.82785, abs=1e-4)  # VeloView's Testing/monterey.test
    health = [json.loads(bytes(r.value)) for r in read_topic(broker.endpoint, "_health", 1) if r.key == b"roof"]
    assert health[-1]["details"]["lidar_model"]["decided_by"] == "packets: firing_pattern+packet_interval+product_id"
    assert health[-1]["details"]["lidar_packets"] == {"received": 308, "lost": 0, "out_of_order": 0, "skipped": {}}


@HDL32E
def test_lidar_driver_refuses_a_calibration_for_another_model(broker, shared_data):
    result = subprocess.run([*EDGE, "driver", "lidar", "--name", "roof", "--source",
                             f"pcap:{HDL32E_CAPTURE}", "--rate", "max",
                             "--calibration", str(shared_data / "VLP-16.xml"), "--endpoint", broker.endpoint],
                            capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 1
    assert "VLP-16.xml has 16 lasers but the packets are from a HDL-32E" in result.stderr
    assert "Traceback" not in result.stderr


@needs(OUSTER_DUAL)
def test_lidar_driver_records_an_ouster_capture_with_its_metadata(broker):
    base = OUSTER_DUAL
    result = subprocess.run([*EDGE, "driver", "lidar", "--name", "os0", "--source", f"pcap:{base}.pcap",
                             "--rate", "max", "--calibration", f"{base}.json", "--endpoint", broker.endpoint],
                            capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    from drivers.pointcloud import decode_cloud

    record = read_topic(broker.endpoint, "lidar.os0", 1)[0]
    points = decode_cloud(record.value, record.headers)
    assert record.header("model") == "OS-0-32-U1" and record.header("axes") == "REP-103"
    assert record.header("frame") == "os0"
    assert len(points) == 21631 + 172  # ouster-sdk's returns: 21,631 first + 172 second


def test_lidar_driver_carries_its_mounting_from_the_config(broker, tmp_path, shared_data):
    config = tmp_path / "edge.toml"
    config.write_text(f"""
[[lidars]]
name = "roof"
source = "pcap:{shared_data / 'vlp16-90deg-50frames.pcap'}"
calibration = "{shared_data / 'VLP-16.xml'}"
rate = "max"
mounting = {{ parent = "base_link", xyz = [1.2, 0.0, 1.9], rpy_deg = [0.0, 0.0, 90.0] }}
""")
    result = subprocess.run([*EDGE, "driver", "lidar", "--config", str(config), "--name", "roof",
                             "--endpoint", broker.endpoint], capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    record = read_topic(broker.endpoint, "lidar.roof", 1)[0]
    assert json.loads(record.header("mounting")) == {"parent": "base_link", "xyz": [1.2, 0.0, 1.9],
                                                     "rpy_deg": [0.0, 0.0, 90.0]}


def test_raw_frames_from_a_file_at_max_rate_are_never_dropped(broker, shared_data):
    """bgr8 frames are 1 MB each; the broker is paused (SIGSTOP) for 2.5 s while the driver
    reads the file as fast as it can, so the producer's buffer fills. Nothing is live in a
    file: the driver waits for the broker instead of dropping frames."""
    video = shared_data / "car-detection.mp4"
    driver = subprocess.Popen([*EDGE, "driver", "camera", "--name", "raw", "--source", str(video), "--rate", "max",
                               "--encoding", "bgr8", "--endpoint", broker.endpoint],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        with Admin(broker.endpoint) as admin:
            while admin.list_topics().get("camera.raw") is None or \
                    admin.list_offset("camera.raw", 0, "latest") < 10:
                assert time.monotonic() < deadline and driver.poll() is None, "the driver published nothing"
                time.sleep(0.02)
        os.kill(broker.proc.pid, signal.SIGSTOP)
        try:
            time.sleep(2.5)
        finally:
            os.kill(broker.proc.pid, signal.SIGCONT)
        _out, err = driver.communicate(timeout=180)
    finally:
        if driver.poll() is None:
            driver.kill()
            driver.wait()
    assert driver.returncode == 0, err[-2000:]
    health = [json.loads(bytes(r.value)) for r in read_topic(broker.endpoint, "_health", 1) if r.key == b"raw"]
    final = health[-1]
    assert final["state"] == "stopped" and sum(final["dropped"].values()) == 0, final
    with Admin(broker.endpoint) as admin:
        assert admin.describe_topic("camera.raw")["partitions"][0]["next_offset"] == 377
    records = read_topic(broker.endpoint, "camera.raw", 377)
    gaps = np.diff([r.timestamp for r in records]) / 1e6
    assert np.allclose(gaps, 80.0, atol=1.0), gaps[:10]  # the file's timestamps, not how fast it was read


def test_h264_passthrough_recorded_and_exported_to_mp4(broker, shared_data, tmp_path):
    """The camera's H.264 goes into the topic as sent (foxglove.CompressedVideo-compatible
    records, keyframes marked) and comes out of export as an MP4 as long as its source."""
    video = shared_data / "car-detection.mp4"
    result = subprocess.run([*EDGE, "driver", "camera", "--name", "h264", "--source", str(video), "--rate", "max",
                             "--encoding", "passthrough", "--endpoint", broker.endpoint], capture_output=True,
                            text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    records = read_topic(broker.endpoint, "camera.h264", 377)
    assert {(r.header("encoding"), r.header("width"), r.header("height")) for r in records} == {("h264", "768", "432")}
    assert sum(r.header("keyframe") == "1" for r in records) == 7 and records[0].header("keyframe") == "1"
    assert np.array_equal(np.diff([r.timestamp for r in records]), np.full(376, 80_000_000))
    assert sum(len(r.value) for r in records) < 3_000_000  # the file's 2.8 MB, not 377 re-encoded JPEGs
    from edge.cli import main

    out = tmp_path / "h264"
    assert main(["export", "--topics", "camera.h264", "--out", str(out), "--endpoint", broker.endpoint, "-q"]) == 0
    probe = subprocess.run(["ffprobe", "-v", "error", "-count_frames", "-show_entries",
                            "stream=codec_name,nb_read_frames,duration", "-of", "json", str(out / "camera.h264.mp4")],
                           capture_output=True, text=True, timeout=60, check=True)
    stream = json.loads(probe.stdout)["streams"][0]
    assert stream["codec_name"] == "h264" and int(stream["nb_read_frames"]) == 377
    assert abs(float(stream["duration"]) - 30.16) < 0.08, stream

    from mcap.reader import make_reader
    from mcap_protobuf.decoder import DecoderFactory

    mcap_path = tmp_path / "h264.mcap"
    assert main(["export", "--topics", "camera.h264", "--out", str(mcap_path), "--endpoint", broker.endpoint,
                 "-q"]) == 0
    with open(mcap_path, "rb") as fh:
        messages = list(make_reader(fh, decoder_factories=[DecoderFactory()]).iter_decoded_messages())
    assert {schema.name for schema, *_ in messages} == {"foxglove.CompressedVideo"}
    assert [m.data for *_, m in messages] == [bytes(r.value) for r in records]  # Foxglove gets the camera's bytes
    assert {m.format for *_, m in messages} == {"h264"}
