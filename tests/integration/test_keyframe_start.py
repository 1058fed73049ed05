"""Replay and export of a window that starts between two keyframes of an H.264 camera: both
start at the keyframe before the window (the pre-roll is counted), so every frame decodes;
the MP4 holds the recorded bytes (remuxed), checked with ffprobe.

Records: the first 130 frames of car-detection.mp4 passed through (keyframes at 0, 60, 120;
80 ms apart), as the camera driver writes them."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from broker.client import Producer
from tests.support.broker_process import BrokerProcess

T0 = 1_767_225_600_000_000_000
PERIOD_NS = 80_000_000
EDGE = [sys.executable, "-m", "edge.cli"]


def edge(endpoint: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*EDGE, *args], check=False, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "EDGE_ENDPOINT": endpoint})


def test_replay_and_export_start_at_the_keyframe_before_the_window(shared_data, data_dir, tmp_path):
    pytest.importorskip("av")
    from drivers.camera.passthrough import encode_passthrough
    from drivers.camera.sources import open_camera_source
    from tests.edge.export.test_mp4 import ffprobe, top_level_boxes

    with open_camera_source(shared_data / "car-detection.mp4", rate="max", passthrough=True, epoch_ns=0) as source:
        frames = [f for _, f in zip(range(130), source, strict=False)]
    assert [i for i, f in enumerate(frames) if f.keyframe] == [0, 60, 120]
    start = str(T0 + 70 * PERIOD_NS)  # frame 70: ten frames after the keyframe at 60
    with BrokerProcess(data_dir) as broker:
        with Producer(broker.endpoint, acks="durable") as producer:
            futures = []
            for i, frame in enumerate(frames):
                value, headers = encode_passthrough(frame)
                futures.append(producer.send("camera.h264", bytes(value), headers=headers,
                                             timestamp_ns=T0 + i * PERIOD_NS))
            for future in futures:
                future.result(30)
        exported = edge(broker.endpoint, "export", "--topics", "camera.h264", "--start", start, "--format", "mp4",
                        "--out", str(tmp_path / "clip"), "--json", "-q")
        assert exported.returncode == 0, exported.stderr
        result = json.loads(exported.stdout)
        assert result["keyframes"] == {"preroll": {"camera.h264:0": 10}, "no_keyframe": []}
        manifest = json.loads((tmp_path / "clip" / "manifest.json").read_text())
        topic = manifest["topics"]["camera.h264"]
        assert topic["remuxed"] is True and topic["frames"] == 70 and topic["skipped_before_keyframe"] == 0
        assert topic["first_ns"] == T0 + 60 * PERIOD_NS
        video = tmp_path / "clip" / "camera.h264.mp4"
        stream = ffprobe(video)["streams"][0]
        assert stream["codec_name"] == "h264" and int(stream["nb_read_frames"]) == 70  # every frame decodes
        assert float(stream["duration"]) == pytest.approx(70 * 0.08, abs=0.01)
        boxes = top_level_boxes(video)
        assert boxes.index("moov") < boxes.index("mdat")

        replayed = edge(broker.endpoint, "replay", "--topics", "camera.h264", "--start", start, "--max",
                        "--no-control", "-q")
        assert replayed.returncode == 0, replayed.stderr
        summary = json.loads(replayed.stdout.strip().splitlines()[-1])
        assert summary["records"] == 70 and summary["keyframes"]["preroll"] == {"camera.h264:0": 10}
        from broker.client import Consumer

        with Consumer(broker.endpoint, max_wait_ms=50) as consumer:
            consumer.assign([("replay.camera.h264", 0)])
            first = consumer.poll(5.0)[0]
        assert first.header("keyframe") == "1" and first.timestamp == T0 + 60 * PERIOD_NS
        assert first.header("replay.source.offset") == "60"
