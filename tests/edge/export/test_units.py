"""Pieces of export without a broker: cloud layouts for Foxglove, atomic
outputs, the progress line."""

from __future__ import annotations

import io
import os

import numpy as np
import pytest

from broker.records import Record
from drivers.pointcloud import POINT_DTYPE, encode_cloud
from edge.commands.export import ProgressBar
from edge.export import AtomicOutput, ExportError, infer_format
from edge.export.kinds import CAMERA, OTHER, POINTCLOUD, check_camera, record_kind
from edge.export.mcap_file import cloud_layout


def test_cloud_layout_of_the_driver_dtype():
    packed, fields = cloud_layout(POINT_DTYPE)
    assert packed == POINT_DTYPE and packed.itemsize == 22
    assert fields == [("x", 0, 7), ("y", 4, 7), ("z", 8, 7), ("intensity", 12, 7), ("ring", 16, 3), ("time", 18, 7)]


def test_cloud_layout_repacks_what_foxglove_lacks():
    dtype = np.dtype([("x", ">f4"), ("y", "<f8"), ("z", "<f2"), ("n", "<i8"), ("u", "u1"), ("s", "<i2")])
    packed, fields = cloud_layout(dtype)
    assert packed != dtype
    assert fields == [("x", 0, 7), ("y", 4, 8), ("z", 12, 7), ("n", 16, 8), ("u", 24, 1), ("s", 25, 4)]
    assert all(packed[name].byteorder in ("<", "|", "=") for name in packed.names)


def test_mcap_writer_repacks_values(tmp_path):
    from mcap.reader import make_reader
    from mcap_protobuf.decoder import DecoderFactory

    from edge.export.mcap_file import McapFileWriter

    points = np.zeros(3, dtype=[("x", ">f4"), ("y", ">f4"), ("z", "<f2")])
    points["x"], points["y"], points["z"] = [1, 2, 3], [4, 5, 6], [0.5, 1.5, 2.5]
    value, headers = encode_cloud(points)
    record = Record(7, 1_795_000_000_123_456_789, None, bytes(value),
                    {k: v.encode() for k, v in headers.items()}, "lidar.x", 0)
    with open(tmp_path / "c.mcap", "wb") as fh:
        writer = McapFileWriter(fh)
        writer.write(record, POINTCLOUD)
        writer.finish()
    with open(tmp_path / "c.mcap", "rb") as fh:
        [(_s, _c, message, proto)] = list(make_reader(fh, decoder_factories=[DecoderFactory()]).iter_decoded_messages())
    assert message.log_time == record.timestamp and message.sequence == 7
    assert proto.point_stride == 12
    got = np.frombuffer(proto.data, dtype=[("x", "<f4"), ("y", "<f4"), ("z", "<f4")])
    assert got["x"].tolist() == [1, 2, 3] and got["z"].tolist() == [0.5, 1.5, 2.5]


def test_bgr8_frames_become_raw_images(tmp_path):
    from mcap.reader import make_reader
    from mcap_protobuf.decoder import DecoderFactory

    from edge.export.mcap_file import McapFileWriter

    image = np.arange(4 * 6 * 3, dtype=np.uint8).reshape(4, 6, 3)
    record = Record(0, 1_795_000_000_000_000_000, None, image.tobytes(),
                    {"encoding": b"bgr8", "width": b"6", "height": b"4"}, "camera.raw", 0)
    with open(tmp_path / "r.mcap", "wb") as fh:
        writer = McapFileWriter(fh)
        writer.write(record, CAMERA)
        with pytest.raises(ValueError, match="does not match"):
            writer.write(Record(1, 1, None, b"xx", record.headers, "camera.raw", 0), CAMERA)
        writer.finish()
    with open(tmp_path / "r.mcap", "rb") as fh:
        [(schema, _c, _m, proto)] = list(make_reader(fh, decoder_factories=[DecoderFactory()]).iter_decoded_messages())
    assert schema.name == "foxglove.RawImage"
    assert (proto.width, proto.height, proto.step, proto.encoding) == (6, 4, 18, "bgr8")
    assert proto.data == image.tobytes()


def test_record_kinds_and_camera_checks():
    def rec(headers, value=b""):
        return Record(0, 0, None, value, {k: v.encode() for k, v in headers.items()}, "t", 0)

    assert record_kind(rec({"encoding": "jpeg"})) == CAMERA
    assert record_kind(rec({"encoding": "pointcloud"})) == POINTCLOUD
    assert record_kind(rec({})) == OTHER and record_kind(rec({"encoding": "json"})) == OTHER
    good = rec({"encoding": "png", "width": "2", "height": "2"}, b"\x89PNG\r\n\x1a\n....")
    assert check_camera(good).width == 2
    with pytest.raises(ValueError, match="does not start like a jpeg"):
        check_camera(rec({"encoding": "jpeg", "width": "2", "height": "2"}, b"\x89PNG\r\n\x1a\n...."))
    with pytest.raises(ValueError, match="'height'"):
        check_camera(rec({"encoding": "jpeg", "width": "2"}, b"\xff\xd8\xff\xe0"))


def test_format_from_the_path():
    assert infer_format("a/b.MCAP") == "mcap" and infer_format("a/b") == "dir"
    assert infer_format("x.mcap", "dir") == "dir"
    with pytest.raises(ExportError, match="unknown export format"):
        infer_format("x", "zip")


def test_atomic_file_commit_and_discard(tmp_path):
    final = tmp_path / "out.bin"
    with AtomicOutput(final, is_dir=False) as output:
        assert output.temp.name == f".out.bin.partial-{os.getpid()}"
        output.temp.write_bytes(b"done")
        assert not final.exists()
        output.commit()
    assert final.read_bytes() == b"done" and sorted(p.name for p in tmp_path.iterdir()) == ["out.bin"]
    with pytest.raises(ExportError, match="already exists"):
        AtomicOutput(final, is_dir=False).open()
    with pytest.raises(RuntimeError), AtomicOutput(final, is_dir=False, overwrite=True) as output:
        output.temp.write_bytes(b"half")
        raise RuntimeError("boom")
    assert final.read_bytes() == b"done" and sorted(p.name for p in tmp_path.iterdir()) == ["out.bin"]
    with AtomicOutput(final, is_dir=False, overwrite=True) as output:
        output.temp.write_bytes(b"new")
        output.commit()
    assert final.read_bytes() == b"new"


def test_atomic_directory_replaces_an_empty_one(tmp_path):
    final = tmp_path / "tree"
    final.mkdir()
    with AtomicOutput(final, is_dir=True) as output:
        (output.temp / "sub").mkdir()
        (output.temp / "sub" / "f").write_text("x")
        output.commit()
    assert (final / "sub" / "f").read_text() == "x"
    with pytest.raises(ExportError, match="already exists"):
        AtomicOutput(final, is_dir=True).open()


def test_progress_line_and_warnings():
    stream = io.StringIO()
    bar = ProgressBar(stream, width=10, interval_s=0)
    assert bar.line(0.5, "5/10 records, 1.0 MB, 2.0 MB/s") == \
        "export [#####.....]  50.0%  5/10 records, 1.0 MB, 2.0 MB/s"
    assert bar.line(None, "5 records").startswith("export  5 records")
    bar(0.25, "x")
    bar.warn("careful")
    assert stream.getvalue() == "export [###.......]  25.0%  x\nedge export: warning: careful\n"


def test_mounting_becomes_a_frame_transform(tmp_path):
    from mcap.reader import make_reader
    from mcap_protobuf.decoder import DecoderFactory

    from edge.config import MountingConfig
    from edge.export.mcap_file import McapFileWriter

    mounting = MountingConfig(parent="base_link", xyz=(1.2, 0.0, 1.9), rpy_deg=(0.0, 0.0, 90.0))
    points = np.zeros(2, POINT_DTYPE)
    value, headers = encode_cloud(points)
    headers.update(frame="roof", mounting=mounting.header())
    records = [Record(i, 1_795_000_000_000_000_000 + i, None, bytes(value), {k: v.encode() for k, v in headers.items()},
                      "lidar.roof", 0) for i in range(3)]
    with open(tmp_path / "t.mcap", "wb") as fh:
        writer = McapFileWriter(fh)
        for record in records:
            writer.write(record, POINTCLOUD)
        writer.finish()
    with open(tmp_path / "t.mcap", "rb") as fh:
        messages = list(make_reader(fh, decoder_factories=[DecoderFactory()]).iter_decoded_messages())
    transforms = [(c.topic, p) for s, c, m, p in messages if s.name == "foxglove.FrameTransform"]
    clouds = [p for s, c, m, p in messages if s.name == "foxglove.PointCloud"]
    assert len(transforms) == 1 and len(clouds) == 3 and writer.transforms == 1  # written once, before the first cloud
    topic, transform = transforms[0]
    assert topic == "/tf" and (transform.parent_frame_id, transform.child_frame_id) == ("base_link", "roof")
    assert (transform.translation.x, transform.translation.y, transform.translation.z) == (1.2, 0.0, 1.9)
    half = np.sqrt(0.5)  # 90° about z
    assert (transform.rotation.x, transform.rotation.y, transform.rotation.z, transform.rotation.w) == pytest.approx(
        (0.0, 0.0, half, half))
    assert all(cloud.frame_id == "roof" for cloud in clouds)
    bad = Record(9, 1, None, bytes(value), {**records[0].headers, "frame": b"other", "mounting": b"{not json"},
                 "lidar.roof", 0)
    with open(tmp_path / "bad.mcap", "wb") as fh, pytest.raises(ValueError, match="mounting header"):
        McapFileWriter(fh).write(bad, POINTCLOUD)
