"""Video file sources on the real footage (car-detection.mp4: 768x432, 12.5 fps, 377
frames): full playback, recorded pace, a fixed rate, loops, kept timestamps, stop/close,
and the errors of missing, corrupt and truncated files."""

from __future__ import annotations

import logging
import threading
import time

import numpy as np
import pytest

from drivers.camera.sources import (
    CameraInputError,
    VideoFileSource,
    open_camera_source,
    parse_rate,
)
from drivers.runtime import SensorError

FOOTAGE = "car-detection.mp4"
FRAMES, WIDTH, HEIGHT, PERIOD_NS = 377, 768, 432, 80_000_000


def assert_on_schedule(stamps, period_ms):
    """Frame k released k periods after the first: never early; late only by scheduling
    jitter (generous bounds: test machines are busy), so the typical gap is one period."""
    offsets_ms = (np.array(stamps) - stamps[0]) / 1e6 - period_ms * np.arange(len(stamps))
    assert offsets_ms.min() > -2, offsets_ms
    assert 0.8 * period_ms <= np.median(np.diff(stamps)) / 1e6 <= 1.25 * period_ms, np.diff(stamps) / 1e6


@pytest.fixture(scope="module")
def footage(shared_data):
    return shared_data / FOOTAGE


def test_plays_the_whole_file_as_fast_as_possible(footage):
    before = time.time_ns()
    count, seqs, stamps, positions = 0, [], [], []
    with open_camera_source(str(footage), rate="max") as source:
        assert isinstance(source, VideoFileSource)
        assert (source.width, source.height, source.file_fps, source.frame_count) == (WIDTH, HEIGHT, 12.5, FRAMES)
        for frame in source:
            assert frame.image.shape == (HEIGHT, WIDTH, 3) and frame.image.dtype == np.uint8
            count += 1
            seqs.append(frame.seq)
            stamps.append(frame.capture_ns)
            positions.append(frame.source_ts_ns)
    assert count == FRAMES and seqs == list(range(FRAMES))
    # read as fast as possible, stamped as recorded: the file's pts from the time it was opened
    assert before <= stamps[0] == source.epoch_ns <= time.time_ns()
    assert np.array_equal(np.diff(stamps), np.full(FRAMES - 1, PERIOD_NS))
    assert positions[:3] == [0, PERIOD_NS, 2 * PERIOD_NS] and positions[-1] == (FRAMES - 1) * PERIOD_NS
    with pytest.raises(StopIteration):  # ended for good, capture released
        next(source)


def test_recorded_rate_keeps_the_file_pace(footage):
    source = open_camera_source(footage, rate="recorded")
    released, started = [], time.monotonic()
    for _frame in source:
        released.append(time.time_ns())
        if time.monotonic() - started >= 1.0:
            break
    source.close()
    gaps_ms = np.diff(released) / 1e6
    assert 10 <= len(released) <= 14, gaps_ms  # 13 on time (0, 80, ..., 960 ms)
    assert_on_schedule(released, 80)


def test_fixed_rate_in_hz(footage):
    source = open_camera_source(footage, rate="25")  # the config gives numbers as text
    released, stamps = [], []
    for _ in range(10):
        stamps.append(next(source).capture_ns)
        released.append(time.time_ns())
    source.close()
    assert_on_schedule(released, 40)
    assert np.array_equal(np.diff(stamps), np.full(9, PERIOD_NS))  # played faster, stamped as recorded


def test_loop_continues_past_the_end_with_kept_timestamps(footage):
    source = open_camera_source(footage, rate="max", loop=True, keep_timestamps=True, epoch_ns=0)
    stamps, first_image, replayed_image = [], None, None
    for frame in source:
        assert frame.seq == len(stamps)
        stamps.append(frame.capture_ns)
        if frame.seq == 0:
            first_image = frame.image
        elif frame.seq == FRAMES:
            replayed_image = frame.image
            assert frame.source_ts_ns == 0  # position in the file restarts with each pass
        if frame.seq == FRAMES + 20:
            break
    source.close()
    assert len(stamps) == FRAMES + 21
    np.testing.assert_array_equal(replayed_image, first_image)
    # epoch 0: the stamps are the media positions, 80 ms apart right across the loop
    assert stamps[:3] == [0, PERIOD_NS, 2 * PERIOD_NS]
    assert np.array_equal(np.diff(stamps), np.full(len(stamps) - 1, PERIOD_NS))


RECORDED_AT_NS = 1_524_177_960_000_000_000  # 2018-04-19T22:46:00Z, the footage's creation_time


def test_kept_timestamps_start_at_the_recording_time(footage):
    source = open_camera_source(footage, rate="max", keep_timestamps=True)
    stamps = [next(source).capture_ns for _ in range(25)]
    source.close()
    assert stamps[0] == source.epoch_ns == RECORDED_AT_NS
    assert np.array_equal(np.diff(stamps), np.full(24, PERIOD_NS))


def test_kept_timestamps_without_a_creation_time_start_at_the_open_time(footage, tmp_path, caplog):
    import av

    bare = tmp_path / "bare.mkv"  # the same frames, remuxed without the creation_time tag
    with av.open(str(footage)) as src, av.open(str(bare), "w", options={"fflags": "+bitexact"}) as dst:
        stream = dst.add_stream_from_template(src.streams.video[0])
        for packet in src.demux(src.streams.video[0]):
            if packet.dts is not None:
                packet.stream = stream
                dst.mux(packet)
    before = time.time_ns()
    with caplog.at_level(logging.WARNING, logger="drivers.camera"):
        source = open_camera_source(bare, rate="max", keep_timestamps=True)
    stamps = [next(source).capture_ns for _ in range(3)]
    source.close()
    assert before <= stamps[0] == source.epoch_ns <= time.time_ns()
    assert any("camera_file_start_unknown" in r.getMessage() for r in caplog.records)


def test_stop_event_and_close_end_a_sleeping_source(footage):
    for how in ("stop", "close"):
        stop = threading.Event()
        source = open_camera_source(footage, rate=0.5, stop=stop)  # a frame every 2 s
        next(source)
        trigger = threading.Timer(0.2, stop.set if how == "stop" else source.close)
        started = time.monotonic()
        trigger.start()
        with pytest.raises(StopIteration):
            next(source)
        trigger.join()
        assert time.monotonic() - started < 1.0, how
        source.close()


def test_rate_must_be_recorded_max_or_hz(footage):
    assert parse_rate("recorded") == "recorded" and parse_rate("12.5") == 12.5 and parse_rate(30) == 30.0
    for bad in ("fast", 0, -1, "nan", True):
        with pytest.raises(ValueError, match="rate must be"):
            open_camera_source(footage, rate=bad)


# -- errors --------------------------------------------------------------------------------


def test_missing_file(tmp_path):
    missing = tmp_path / "none.mp4"
    with pytest.raises(CameraInputError, match="not found") as info:
        open_camera_source(missing)
    assert str(missing) in str(info.value) and not info.value.retryable
    assert isinstance(info.value, SensorError)  # the driver runtime understands it


def test_a_directory_is_not_a_video(tmp_path):
    with pytest.raises(CameraInputError, match="not a regular file") as info:
        open_camera_source(tmp_path)
    assert str(tmp_path) in str(info.value)


def test_corrupt_file(tmp_path):
    garbage = tmp_path / "x.mp4"
    garbage.write_bytes(np.random.default_rng(7).integers(0, 256, 64 * 1024, dtype=np.uint8).tobytes())
    with pytest.raises(CameraInputError, match="corrupt") as info:
        open_camera_source(garbage)
    assert str(garbage) in str(info.value)


def test_empty_file(tmp_path):
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    with pytest.raises(CameraInputError, match=str(empty)):
        open_camera_source(empty)


def test_truncated_file_plays_up_to_the_damage(footage, tmp_path, caplog):
    truncated = tmp_path / "truncated.mp4"
    truncated.write_bytes(footage.read_bytes()[:300_000])  # the index is at the start, the frames cut short
    try:
        source = VideoFileSource(truncated, rate="max")
    except CameraInputError as exc:  # a demuxer that refuses the file outright is fine too
        assert str(truncated) in str(exc)
        return
    with caplog.at_level(logging.WARNING, logger="drivers.camera"):
        count = sum(1 for _ in source)
    assert 0 < count < FRAMES
    assert any("camera_file_ended_early" in r.getMessage() and str(truncated) in r.getMessage()
               for r in caplog.records)


def test_a_variable_frame_rate_file_keeps_its_timing(tmp_path):
    """Frames 40, 40, 200, 40, 120 ms apart (H.264 with B-frames), read as fast as possible,
    decoded or passed through: stamped as recorded."""
    from edge.export.mp4 import Mp4Writer

    path = tmp_path / "vfr.mp4"
    offsets_ms = [0, 40, 80, 280, 320, 440]
    writer = Mp4Writer(path, 64, 48)
    rng = np.random.default_rng(5)
    for ms in offsets_ms:
        writer.add(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8), ms * 1_000_000)
    writer.finish()
    for passthrough in (False, True):
        with open_camera_source(path, rate="max", epoch_ns=0, passthrough=passthrough) as source:
            stamps = sorted(frame.capture_ns for frame in source)  # pass-through: in decoding order
        assert np.allclose(np.array(stamps) / 1e6, offsets_ms, atol=0.05), (passthrough, stamps)
    # the records of a B-frame stream decode back in presentation order, each with its own time
    from drivers.camera.passthrough import encode_passthrough
    from drivers.camera.video import VideoDecoder

    with open_camera_source(path, rate="max", epoch_ns=0, passthrough=True) as source:
        frames = list(source)
    assert [f.capture_ns for f in frames] != sorted(f.capture_ns for f in frames)  # B-frames: decoding order
    decoder = VideoDecoder("h264")
    decoded = []
    for frame in frames:
        decoded += decoder.decode(*encode_passthrough(frame), frame.capture_ns)
    decoded += decoder.flush()
    assert np.allclose(np.array([ts for _image, ts in decoded]) / 1e6, offsets_ms, atol=0.05)
