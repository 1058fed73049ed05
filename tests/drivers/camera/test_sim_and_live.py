"""The synthetic camera (size, rate, motion, drift-free pacing) and live sources: missing
devices, unreachable streams, a stream that stops delivering and is reopened."""

from __future__ import annotations

import itertools
import socket
import subprocess
import sys
import threading
import time

import cv2
import numpy as np
import pytest

from drivers.camera.sources import (
    CameraUnavailableError,
    LiveCameraSource,
    SimCameraSource,
    open_camera_source,
    source_kind,
)
from drivers.runtime import SensorError

# -- sim -----------------------------------------------------------------------------------


def test_sim_defaults_to_1280x720_at_30_fps():
    with open_camera_source("sim") as source:
        assert isinstance(source, SimCameraSource)
        assert (source.width, source.height, source.fps) == (1280, 720, 30.0)
        frame = next(source)
    assert frame.image.shape == (720, 1280, 3) and frame.image.dtype == np.uint8 and frame.seq == 0


def test_sim_frames_move_at_the_requested_size_and_rate():
    with open_camera_source("sim", fps=40, width=320, height=240) as source:
        frames = [next(source) for _ in range(10)]
    assert all(f.image.shape == (240, 320, 3) for f in frames)
    assert [f.seq for f in frames] == list(range(10))
    stamps = np.array([f.capture_ns for f in frames])
    offsets_ms = (stamps - stamps[0]) / 1e6 - 25 * np.arange(10)
    assert offsets_ms.min() > -2, offsets_ms  # never early
    assert 20 <= np.median(np.diff(stamps)) / 1e6 <= 40, offsets_ms  # late only by scheduling jitter
    for a, b in itertools.pairwise(frames):
        below_text = (slice(60, None), slice(None))  # the scene, not the time stamp line
        change = np.abs(a.image[below_text].astype(np.int16) - b.image[below_text]).mean()
        assert change > 1.0
        assert not np.shares_memory(a.image, b.image)  # frames own their pixels (they get queued)


def test_sim_pacing_does_not_drift_with_a_slow_consumer():
    period_ms, work_ms, count = 25, 12, 40
    source = SimCameraSource(fps=1000 / period_ms, width=160, height=120)
    stamps = []
    for frame in source:
        stamps.append(frame.capture_ns)
        time.sleep(work_ms / 1000)  # the consumer's work
        if len(stamps) == count:
            break
    span_ms = (stamps[-1] - stamps[0]) / 1e6
    on_schedule, slept_after_work = period_ms * (count - 1), (period_ms + work_ms) * (count - 1)  # 975, 1443
    assert on_schedule - 2 < span_ms < (on_schedule + slept_after_work) / 2, np.diff(stamps) / 1e6


def test_sim_unpaced_and_limited():
    frames = list(SimCameraSource(width=64, height=48, rate="max", limit=5))
    assert [f.seq for f in frames] == list(range(5))


def test_sim_rejects_bad_sizes_and_rates():
    with pytest.raises(ValueError, match="width"):
        open_camera_source("sim", width=4)
    with pytest.raises(ValueError, match="fps"):
        SimCameraSource(fps=0)


# -- live sources --------------------------------------------------------------------------


def test_source_kinds():
    assert [source_kind(s) for s in ("sim", "0", "/dev/video2", "rtsp://cam/1", "HTTP://cam/mjpg", "a.mp4")] == [
        "sim", "device", "device", "stream", "stream", "file"]


@pytest.mark.parametrize("spec", ["", "  ", True, None, 1.5])
def test_a_spec_that_is_not_a_source_is_a_value_error(spec):
    # a bool is an int to Python but names no device; none of these may end in os.fspath's TypeError
    with pytest.raises(ValueError, match="camera source spec must be a non-empty string"):
        open_camera_source(spec)


@pytest.mark.parametrize("spec", ["/dev/video99", "99", 99])
def test_missing_device(spec):
    with pytest.raises(CameraUnavailableError, match="/dev/video99") as info:
        open_camera_source(spec, width=640, height=480, fps=30)
    assert info.value.retryable and isinstance(info.value, SensorError)


def test_unreachable_stream():
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}/stream.mjpg"
    started = time.monotonic()
    with pytest.raises(CameraUnavailableError, match="cannot open the stream") as info:
        open_camera_source(url)
    assert url in str(info.value) and info.value.retryable and time.monotonic() - started < 5
    with pytest.raises(CameraUnavailableError) as info:  # credentials never reach messages or logs
        open_camera_source(f"rtsp://admin:s3cr@t@127.0.0.1:{port}/live")
    assert f"rtsp://admin:***@127.0.0.1:{port}/live" in str(info.value) and "s3cr" not in str(info.value)


@pytest.fixture
def short_clip(tmp_path):
    """Ten 64x48 frames at 20 fps: a stand-in for a stream that ends."""
    path = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 20.0, (64, 48))
    assert writer.isOpened()
    for i in range(10):
        writer.write(np.full((48, 64, 3), 20 * i, np.uint8))
    writer.release()
    return path


def test_stream_that_stops_delivering_then_reopens(short_clip):
    source = LiveCameraSource(str(short_clip))  # via FFmpeg, like an RTSP/HTTP stream
    before = time.time_ns()
    frames = []
    with pytest.raises(CameraUnavailableError, match="stopped delivering frames") as info:
        for frame in source:
            frames.append(frame)
    assert str(short_clip) in str(info.value) and info.value.retryable
    assert [f.seq for f in frames] == list(range(10)) and frames[0].image.shape == (48, 64, 3)
    assert before <= frames[0].capture_ns and (np.diff([f.capture_ns for f in frames]) > 0).all()
    with pytest.raises(CameraUnavailableError, match="call reopen"):
        next(source)
    source.reopen()  # what a runtime does after its backoff
    assert next(source).seq == 10 and source.opens == 2
    source.close()
    with pytest.raises(StopIteration):
        next(source)


def test_opening_cv2_is_confined_to_the_camera_package():
    code = "import sys, drivers.camera, drivers.camera.frame; assert 'cv2' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_close_from_another_thread_stops_a_paced_sim():
    source = SimCameraSource(fps=1, width=64, height=48)
    next(source)
    threading.Timer(0.1, source.close).start()
    started = time.monotonic()
    with pytest.raises(StopIteration):
        next(source)
    assert time.monotonic() - started < 0.5


def test_the_driver_runtime_reopens_a_lost_stream(short_clip):
    """The "sensor gone" contract end to end with the real runtime: a stream that stops
    after 10 frames is reported lost, reopened after the backoff, and capture goes on."""
    from drivers.camera.encoding import decode_frame, encode_frame
    from drivers.runtime import DriverRuntime, Sample

    class Producer:
        def __init__(self):
            self.records = []

        def send(self, topic, value, key=None, headers=None, timestamp_ns=None):
            if topic == "camera.cam0":
                self.records.append((bytes(value), dict(headers)))

        def flush(self, timeout=None):
            pass

    producer = Producer()
    runtime = DriverRuntime(name="cam0", kind="camera", topic="camera.cam0", producer=producer,
                            encode=lambda image: encode_frame(image, "png"), queue_size=64, policy="block",
                            reopen_backoff=(0.01, 0.02))

    def open_live():
        for frame in LiveCameraSource(str(short_clip)):
            if runtime.counters.captured >= 25:
                runtime.stop()
            yield Sample(frame.capture_ns, frame.image)

    assert runtime.run(open_live) == 0
    assert runtime.counters.sensor_errors == 2 and runtime.counters.reopens == 2
    assert "stopped delivering frames" in runtime.counters.last_error and str(short_clip) in runtime.counters.last_error
    assert len(producer.records) >= 25
    value, headers = producer.records[12]  # the third frame of the second pass
    assert headers["seq"] == "12" and abs(int(decode_frame(value, headers)[0, 0, 0]) - 40) <= 4  # MJPG is lossy
