"""MP4 export checked from outside: ffprobe (codec, frames, duration, moov before mdat) and
a real headless Chromium playing it in a <video> element.

The recorded topic (tests/edge/export/conftest.py) holds car-detection.mp4 as the camera
driver stamps it: 377 frames, 80 ms apart, so the MP4 must last 30.16 s like its source.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest

from edge.cli import main
from edge.export.mp4 import Mp4Writer

SOURCE_FRAMES, SOURCE_DURATION_S, PERIOD_S = 377, 30.16, 0.08
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"


def ffprobe(path: Path) -> dict:
    if shutil.which("ffprobe") is None:
        pytest.fail("ffprobe is required (Debian package ffmpeg; scripts/test installs it)")
    out = subprocess.run(["ffprobe", "-v", "error", "-count_frames", "-show_entries",
                          "stream=codec_name,pix_fmt,nb_read_frames,duration:format=duration",
                          "-of", "json", str(path)], capture_output=True, text=True, timeout=60, check=True)
    return json.loads(out.stdout)


def frame_times(path: Path) -> list[float]:
    out = subprocess.run(["ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries", "frame=pts_time",
                          "-of", "csv=p=0", str(path)], capture_output=True, text=True, timeout=60, check=True)
    return [float(line.strip(",")) for line in out.stdout.split()]


def top_level_boxes(path: Path) -> list[str]:
    """The MP4's top-level box types in file order."""
    boxes, data, at = [], path.read_bytes(), 0
    while at + 8 <= len(data):
        size = int.from_bytes(data[at:at + 4], "big")
        kind = data[at + 4:at + 8].decode("latin-1")
        if size == 1:
            size = int.from_bytes(data[at + 8:at + 16], "big")
        boxes.append(kind)
        if size < 8:
            break
        at += size
    return boxes


@pytest.fixture(scope="module")
def exported(recorded, tmp_path_factory) -> Path:
    """The whole camera topic exported with the default window."""
    out = tmp_path_factory.mktemp("mp4") / "all"
    assert main(["export", "--topics", "camera.front", "--out", str(out), "--endpoint", recorded.endpoint,
                 "-q"]) == 0
    return out


def test_mp4_is_h264_faststart_with_the_source_duration(exported):
    video = exported / "camera.front.mp4"
    info = ffprobe(video)
    stream = info["streams"][0]
    assert stream["codec_name"] == "h264" and stream["pix_fmt"] == "yuv420p"
    assert int(stream["nb_read_frames"]) == SOURCE_FRAMES
    assert abs(float(stream["duration"]) - SOURCE_DURATION_S) < PERIOD_S, stream
    assert abs(float(info["format"]["duration"]) - SOURCE_DURATION_S) < PERIOD_S, info["format"]
    boxes = top_level_boxes(video)
    assert boxes.index("moov") < boxes.index("mdat"), boxes  # faststart: playable while downloading
    times = np.array(frame_times(video))
    assert np.allclose(np.diff(times), PERIOD_S, atol=1e-3)  # 12.5 fps as captured, not guessed
    manifest = json.loads((exported / "manifest.json").read_text())
    topic = manifest["topics"]["camera.front"]
    assert topic["codec"] == "h264" and topic["frames"] == SOURCE_FRAMES and topic["retimed"] == 0
    assert topic["duration_s"] == pytest.approx(SOURCE_DURATION_S, abs=1e-3)
    assert topic["fps"] == pytest.approx(12.5, abs=0.01)


def test_variable_frame_rate_is_kept(tmp_path):
    """Gaps of 40, 40, 200, 40 ms and a stamp that goes backwards: every frame keeps its
    capture time (the backward one one tick after its predecessor, counted)."""
    path = tmp_path / "vfr.mp4"
    writer = Mp4Writer(path, 65, 49)  # odd sides: cropped to 64x48
    ms = 1_000_000
    stamps = [1_000 * ms, 1_040 * ms, 1_080 * ms, 1_280 * ms, 1_320 * ms, 1_310 * ms, 1_360 * ms]
    rng = np.random.default_rng(3)
    for ts in stamps:
        writer.add(rng.integers(0, 256, (49, 65, 3), dtype=np.uint8), ts)
    facts = writer.finish()
    assert facts["frames"] == len(stamps) and facts["retimed"] == 1
    times = frame_times(path)
    expected = [0.0, 0.04, 0.08, 0.28, 0.32, 0.32 + 1 / 90000, 0.36]
    assert np.allclose(times, expected, atol=2e-5), times
    # the last frame lasts the median interval (40 ms)
    assert float(ffprobe(path)["streams"][0]["duration"]) == pytest.approx(0.40, abs=1e-3)


@pytest.mark.slow
def test_chromium_plays_the_mp4(exported):
    if not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()):
        pytest.fail("Debian's chromium and chromium-driver are required (apt-get install chromium chromium-driver)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    page = exported / "play.html"
    page.write_text('<!doctype html><video id="v" src="camera.front.mp4" muted preload="auto"></video>')
    profile = tempfile.mkdtemp(prefix="edge-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-dev-shm-usage",
                 "--autoplay-policy=no-user-gesture-required", "--allow-file-access-from-files",
                 f"--user-data-dir={profile}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))
    try:
        driver.get(page.as_uri())
        state = {}
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            state = driver.execute_script(
                "const v = document.getElementById('v');"
                "if (v.readyState >= 2 && v.paused && !v.ended) v.play();"
                "return {ready: v.readyState, duration: v.duration, time: v.currentTime,"
                " width: v.videoWidth, error: v.error && v.error.code};")
            if state["error"] or (state["ready"] >= 2 and state["time"] > 0.3):
                break
            time.sleep(0.2)
        assert not state["error"], f"Chromium refused the MP4: {state}"
        assert state["ready"] >= 2 and state["width"] == 768, state
        assert abs(state["duration"] - SOURCE_DURATION_S) < PERIOD_S, state
        assert state["time"] > 0.3, f"the video did not play: {state}"
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def test_records_outside_the_window_are_reported(recorded, tmp_path, capsys):
    out = tmp_path / "part"
    assert main(["export", "--topics", "camera.front", "--start", str(recorded.start_ns), "--end",
                 str(recorded.end_ns), "--out", str(out), "--endpoint", recorded.endpoint, "-q", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    inside = len(recorded.topics["camera.front"].timestamps)
    assert result["written"] == inside < SOURCE_FRAMES
    assert result["outside_window"] == SOURCE_FRAMES - inside
    assert main(["export", "--topics", "camera.front", "--start", str(recorded.start_ns), "--end",
                 str(recorded.end_ns), "--out", str(tmp_path / "again"), "--endpoint", recorded.endpoint,
                 "-q"]) == 0
    assert f"outside the window (not exported): {SOURCE_FRAMES - inside} records" in capsys.readouterr().out


def length_prefixed(annex_b: bytes) -> bytes:
    """An Annex B access unit as MP4 stores it: each NAL unit after a 4-byte length."""
    import re

    units = [u for u in re.split(rb"\x00\x00\x00\x01|\x00\x00\x01", annex_b) if u]
    return b"".join(len(u).to_bytes(4, "big") + u for u in units)


def test_h264_records_starting_mid_gop_export_from_the_first_keyframe(shared_data, tmp_path):
    """A window that starts between keyframes: the deltas before the first keyframe cannot
    be decoded; they are refused (reported as corrupt by the export) and counted. From the
    keyframe on, the MP4 holds the recorded bytes (remuxed, not re-encoded), faststart."""
    import av

    from broker.records import Record
    from drivers.camera.passthrough import encode_passthrough
    from drivers.camera.sources import open_camera_source
    from edge.export.directory import DirectoryWriter
    from edge.export.kinds import CAMERA

    with open_camera_source(shared_data / "car-detection.mp4", rate="max", passthrough=True, epoch_ns=0) as source:
        frames = [f for _, f in zip(range(130), source, strict=False)]  # the first 130
    writer = DirectoryWriter(tmp_path)
    refused = []
    recorded = []
    for frame in frames[5:]:  # keyframes at 0, 60, 120
        value, headers = encode_passthrough(frame)
        recorded.append(bytes(value))
        record = Record(frame.seq, frame.capture_ns, None, value, {k: v.encode() for k, v in headers.items()},
                        "camera.h264", 0)
        try:
            writer.write(record, CAMERA)
        except ValueError as exc:
            refused.append((frame.seq, str(exc)))
    topic = writer.finish()["camera.h264"]
    assert [seq for seq, _ in refused] == list(range(5, 60)) and "before the first keyframe" in refused[0][1]
    assert topic["skipped_before_keyframe"] == 55 and topic["frames"] == 70 and topic["first_ns"] == 60 * 80_000_000
    info = ffprobe(tmp_path / "camera.h264.mp4")
    assert info["streams"][0]["codec_name"] == "h264" and int(info["streams"][0]["nb_read_frames"]) == 70
    assert abs(float(info["streams"][0]["duration"]) - 70 * PERIOD_S) < PERIOD_S
    boxes = top_level_boxes(tmp_path / "camera.h264.mp4")
    assert boxes.index("moov") < boxes.index("mdat"), boxes
    assert topic["remuxed"] is True and topic["codec"] == "h264"
    with av.open(str(tmp_path / "camera.h264.mp4")) as mp4:
        stored = [(bytes(p), p.is_keyframe) for p in mp4.demux(video=0) if p.size]
    assert [data for data, _ in stored] == [length_prefixed(v) for v in recorded[55:]]  # stream copy: same bytes
    assert [i for i, (_, key) in enumerate(stored) if key] == [0, 60]  # the keyframes at 60 and 120


def test_h264_with_b_frames_is_re_encoded_in_presentation_order(tmp_path):
    """Records of a B-frame stream are stamped in decoding order (times go back and forth):
    they cannot be remuxed with dts = pts, so they are decoded and encoded, each frame at its time."""
    from broker.records import Record
    from drivers.camera.passthrough import encode_passthrough
    from drivers.camera.sources import open_camera_source
    from edge.export.directory import DirectoryWriter
    from edge.export.kinds import CAMERA

    offsets_ms = [0, 40, 80, 280, 320, 440]
    source_path = tmp_path / "b-frames.mp4"
    writer = Mp4Writer(source_path, 64, 48)  # libx264 veryfast: B-frames
    rng = np.random.default_rng(5)
    for ms in offsets_ms:
        writer.add(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8), ms * 1_000_000)
    writer.finish()
    with open_camera_source(source_path, rate="max", epoch_ns=0, passthrough=True) as source:
        frames = list(source)
    assert [f.capture_ns for f in frames] != sorted(f.capture_ns for f in frames)
    (tmp_path / "out").mkdir()
    out = DirectoryWriter(tmp_path / "out")
    for frame in frames:
        value, headers = encode_passthrough(frame)
        out.write(Record(frame.seq, frame.capture_ns, None, value, {k: v.encode() for k, v in headers.items()},
                         "camera.b", 0), CAMERA)
    topic = out.finish()["camera.b"]
    assert topic["remuxed"] is False and topic["frames"] == 6 and topic["undecodable"] == 0
    assert np.allclose(frame_times(tmp_path / "out" / "camera.b.mp4"), np.array(offsets_ms) / 1000, atol=1e-3)
