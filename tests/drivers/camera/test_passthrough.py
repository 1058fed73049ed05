"""Pass-through sources on the real footage: H.264 recorded as the file holds it (byte
for byte, keyframes marked), MJPEG as JPEG records, other codecs refused by name; and
the decoder that turns the records back into images."""

from __future__ import annotations

import shutil
import subprocess

import av
import numpy as np
import pytest

from drivers.camera.encoding import decode_frame
from drivers.camera.frame import CameraInputError
from drivers.camera.passthrough import PassthroughSource, encode_passthrough
from drivers.camera.sources import open_camera_source
from drivers.camera.video import VideoDecoder

FRAMES, WIDTH, HEIGHT, PERIOD_NS, KEYFRAMES = 377, 768, 432, 80_000_000, 7


@pytest.fixture(scope="module")
def footage(shared_data):
    return shared_data / "car-detection.mp4"


@pytest.fixture(scope="module")
def transport_stream(footage, tmp_path_factory):
    """car-detection.mp4's H.264 remuxed (not re-encoded) into MPEG-TS, which stores Annex B."""
    path = tmp_path_factory.mktemp("ts") / "car.ts"
    with av.open(str(footage)) as src, av.open(str(path), "w") as dst:
        stream = dst.add_stream_from_template(src.streams.video[0])
        for packet in src.demux(src.streams.video[0]):
            if packet.dts is not None:
                packet.stream = stream
                dst.mux(packet)
    return path


def demuxed(path):
    """(bytes, keyframe, pts) of every packet as FFmpeg's demuxer reads it."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        return [(bytes(p), bool(p.is_keyframe), p.pts) for p in container.demux(stream) if p.size]


def test_h264_transport_stream_is_stored_byte_identical(transport_stream):
    packets = demuxed(transport_stream)
    assert len(packets) == FRAMES
    with open_camera_source(transport_stream, rate="max", passthrough=True, epoch_ns=0) as source:
        assert isinstance(source, PassthroughSource)
        frames = list(source)
    assert [f.data for f in frames] == [p[0] for p in packets]  # byte for byte, in order
    assert [f.keyframe for f in frames] == [p[1] for p in packets]
    assert sum(f.keyframe for f in frames) == KEYFRAMES and frames[0].keyframe
    assert {(f.encoding, f.width, f.height) for f in frames} == {("h264", WIDTH, HEIGHT)}
    # stamped with the container's pts (from the first), not with when they were read
    assert [f.capture_ns for f in frames] == [i * PERIOD_NS for i in range(FRAMES)]
    value, headers = encode_passthrough(frames[0])
    assert bytes(value) == frames[0].data
    assert headers == {"encoding": "h264", "width": "768", "height": "432", "keyframe": "1"}
    assert encode_passthrough(frames[1])[1]["keyframe"] == "0"


def test_h264_in_mp4_becomes_what_ffmpeg_writes_as_annex_b(footage, tmp_path):
    if shutil.which("ffmpeg") is None:
        pytest.fail("ffmpeg is required (Debian package ffmpeg; scripts/test installs it)")
    reference = tmp_path / "ref.h264"
    subprocess.run(["ffmpeg", "-v", "error", "-i", str(footage), "-c", "copy", "-bsf:v", "h264_mp4toannexb",
                    "-f", "h264", str(reference)], check=True, timeout=60)
    with open_camera_source(footage, rate="max", passthrough=True, keep_timestamps=True) as source:
        frames = list(source)
    assert len(frames) == FRAMES and sum(f.keyframe for f in frames) == KEYFRAMES
    assert b"".join(f.data for f in frames) == reference.read_bytes()
    assert frames[0].data.startswith(b"\x00\x00\x00\x01\x67")  # keyframes carry their SPS
    assert frames[0].capture_ns == 1_524_177_960_000_000_000  # the file's creation_time


def test_records_decode_back_to_the_footage(transport_stream, footage):
    with open_camera_source(transport_stream, rate="max", passthrough=True) as source:
        records = [encode_passthrough(f) for f in source]
    decoder = VideoDecoder("h264")
    images = []
    for index, (value, headers) in enumerate(records):
        images += decoder.decode(value, headers, index)
    images += decoder.flush()
    assert [tag for _image, tag in images] == list(range(FRAMES))
    with av.open(str(footage)) as container:
        reference = [f.to_ndarray(format="bgr24") for f in container.decode(video=0)]
    np.testing.assert_array_equal(images[100][0], reference[100])  # same decoder, same pixels

    late = VideoDecoder("h264")  # joining mid-GOP: deltas are refused until a keyframe
    with pytest.raises(ValueError, match="before the first keyframe"):
        late.decode(*records[1])
    first_key = next(i for i, (_v, h) in enumerate(records) if i > 1 and h["keyframe"] == "1")
    assert len(late.decode(*records[first_key])) == 1 and late.skipped_before_keyframe == 1


def reencode(footage, path, codec, pix_fmt, frames):
    """The footage's first ``frames`` frames encoded with ``codec`` into ``path``."""
    with av.open(str(footage)) as src, av.open(str(path), "w") as dst:
        stream = dst.add_stream(codec, rate=12)
        stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, pix_fmt
        for index, frame in enumerate(src.decode(video=0)):
            if index == frames:
                break
            for packet in stream.encode(frame.reformat(format=pix_fmt)):
                dst.mux(packet)
        for packet in stream.encode(None):
            dst.mux(packet)
    return path


def test_mjpeg_is_recorded_as_jpeg_records(footage, tmp_path):
    path = reencode(footage, tmp_path / "cam.mkv", "mjpeg", "yuvj420p", 5)  # a UVC camera's MJPEG, in a file
    packets = demuxed(path)
    with open_camera_source(path, rate="max", passthrough=True) as source:
        frames = list(source)
    assert [f.data for f in frames] == [p[0] for p in packets] and len(frames) == 5
    value, headers = encode_passthrough(frames[2])
    assert headers["encoding"] == "jpeg" and headers["keyframe"] == "1"
    assert decode_frame(value, headers).shape == (HEIGHT, WIDTH, 3)  # an ordinary JPEG record


def test_uncompressed_or_other_codecs_are_refused_by_name(footage, tmp_path):
    path = reencode(footage, tmp_path / "part2.mkv", "mpeg4", "yuv420p", 3)
    with pytest.raises(CameraInputError, match=r"mpeg4.*use encoding jpeg") as info:
        open_camera_source(path, passthrough=True)
    assert str(path) in str(info.value)
    with pytest.raises(CameraInputError, match="not found"):
        open_camera_source(tmp_path / "none.mp4", passthrough=True)
    with pytest.raises(ValueError, match="loop"):
        open_camera_source(footage, passthrough=True, loop=True)


def test_keyframes_without_parameter_sets_get_the_stream_header_ones(transport_stream):
    """What an RTSP camera that announces SPS/PPS only in its SDP sends: the same keyframe
    without them. They are put back from the stream header, byte for byte."""
    from drivers.camera.video import nal_unit_types, with_parameter_sets

    keyframe = demuxed(transport_stream)[0][0]
    assert nal_unit_types(keyframe, "h264")[:3] == [9, 7, 8]  # access unit delimiter, SPS, PPS, then the IDR
    starts = [keyframe.find(b"\x00\x00\x00\x01", 1), keyframe.find(b"\x00\x00\x01\x65")]
    sps_pps = keyframe[starts[0]:starts[1]]
    bare = keyframe[:starts[0]] + keyframe[starts[1]:]
    assert 7 not in nal_unit_types(bare, "h264")
    completed = with_parameter_sets(bare, sps_pps, "h264")
    assert completed == sps_pps + bare and nal_unit_types(completed, "h264").count(7) == 1
    assert with_parameter_sets(keyframe, sps_pps, "h264") is keyframe  # in-band already: untouched
    decoder = VideoDecoder("h264")
    assert len(decoder.decode(completed, {"encoding": "h264", "keyframe": "1"})) == 1
    with pytest.raises(ValueError):
        VideoDecoder("h264").decode(bare, {"encoding": "h264", "keyframe": "1"})


def test_an_unreachable_stream_is_unavailable_and_its_password_hidden():
    from drivers.camera.frame import CameraUnavailableError

    with pytest.raises(CameraUnavailableError, match="cannot open for pass-through") as info:
        open_camera_source("rtsp://user:secret@127.0.0.1:9/stream", passthrough=True)
    assert "secret" not in str(info.value) and "user:***@127.0.0.1" in str(info.value)
    assert info.value.retryable
