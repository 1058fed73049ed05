"""MCAP export of the real captures, checked with the mcap reader and decoded independently
(message classes built from the schemas embedded in the file, not from our code)."""

from __future__ import annotations

import cv2
import numpy as np
from mcap.reader import make_reader
from mcap_protobuf.decoder import DecoderFactory

from edge.cli import main


def _export(recorded, out, *extra, capsys=None):
    code = main(["export", "--topics", "camera.front,lidar.*", "--start", str(recorded.start_ns),
                 "--end", str(recorded.end_ns), "--out", str(out), "--endpoint", recorded.endpoint, *extra])
    return code


def test_mcap_export_matches_the_records(recorded, tmp_path, capsys):
    out = tmp_path / "drive.mcap"
    assert _export(recorded, out) == 0
    printed = capsys.readouterr()
    cam, lidar = recorded.topics["camera.front"], recorded.topics["lidar.top"]
    assert f"exported {len(cam.timestamps) + len(lidar.timestamps)} of" in printed.out
    assert "%" in printed.err and "records" in printed.err  # the progress bar
    assert sorted(p.name for p in tmp_path.iterdir()) == ["drive.mcap"]  # no temp left

    with open(out, "rb") as fh:
        reader = make_reader(fh, decoder_factories=[DecoderFactory()])
        summary = reader.get_summary()
        assert summary is not None and summary.statistics is not None
        channels = {c.id: c for c in summary.channels.values()}
        by_topic = {c.topic: c for c in channels.values()}
        assert set(by_topic) == {"camera.front", "lidar.top"}
        schemas = {by_topic[t].topic: summary.schemas[by_topic[t].schema_id].name for t in by_topic}
        assert schemas == {"camera.front": "foxglove.CompressedImage", "lidar.top": "foxglove.PointCloud"}
        assert all(c.message_encoding == "protobuf" for c in channels.values())
        assert all(s.encoding == "protobuf" for s in summary.schemas.values())
        counts = summary.statistics.channel_message_counts
        assert counts[by_topic["camera.front"].id] == len(cam.timestamps)
        assert counts[by_topic["lidar.top"].id] == len(lidar.timestamps)
        assert summary.chunk_indexes and all(ci.compression == "zstd" for ci in summary.chunk_indexes)
        assert summary.statistics.message_start_time == cam.timestamps[0]

        seen = {"camera.front": [], "lidar.top": []}
        decoded_image = False
        for _schema, channel, message, proto in reader.iter_decoded_messages():
            topic = channel.topic
            seen[topic].append(message.log_time)
            assert message.publish_time == message.log_time
            assert proto.timestamp.seconds * 1_000_000_000 + proto.timestamp.nanos == message.log_time
            assert proto.frame_id == topic.split(".", 1)[1]  # the sensor's frame: its name (front, top)
            if topic == "camera.front":
                assert proto.format == "jpeg"
                if not decoded_image:
                    image = cv2.imdecode(np.frombuffer(proto.data, np.uint8), cv2.IMREAD_COLOR)
                    assert (image.shape[1], image.shape[0]) == cam.size
                    decoded_image = True
            else:
                index = len(seen[topic]) - 1
                assert proto.point_stride == 25  # drivers.pointcloud.SENSOR_POINT_DTYPE
                assert len(proto.data) // proto.point_stride == lidar.points[index]
                fields = [(f.name, f.offset, f.type) for f in proto.fields]
                assert fields == [("x", 0, 7), ("y", 4, 7), ("z", 8, 7), ("intensity", 12, 7), ("ring", 16, 3),
                                  ("time", 18, 7), ("laser", 22, 3), ("return_type", 24, 1)]
                assert proto.pose.orientation.w == 1.0
        assert decoded_image
        assert seen["camera.front"] == cam.timestamps
        assert seen["lidar.top"] == lidar.timestamps


def test_mcap_cloud_values_survive(recorded, tmp_path):
    """The points in the file are the points in the broker, field for field."""
    from drivers.pointcloud import decode_cloud
    from tests.edge.export.conftest import read_all

    out = tmp_path / "lidar.mcap"
    assert main(["export", "--topics", "lidar.top", "--start", str(recorded.start_ns), "--end",
                 str(recorded.end_ns), "--out", str(out), "--endpoint", recorded.endpoint, "-q"]) == 0
    first = read_all(recorded.endpoint, "lidar.top")[2]
    expected = decode_cloud(first.value, first.headers)
    with open(out, "rb") as fh:
        messages = list(make_reader(fh, decoder_factories=[DecoderFactory()]).iter_decoded_messages())
    proto = messages[2][3]
    layout = np.dtype({"names": [f.name for f in proto.fields], "offsets": [f.offset for f in proto.fields],
                       "formats": [{7: "<f4", 3: "<u2", 1: "u1"}[f.type] for f in proto.fields],
                       "itemsize": proto.point_stride})
    got = np.frombuffer(proto.data, dtype=layout)
    for name in expected.dtype.names:
        assert np.array_equal(got[name], expected[name])


def test_other_and_corrupt_records_are_counted_not_fatal(recorded, tmp_path, capsys):
    out = tmp_path / "mixed.mcap"
    code = main(["export", "--topics", "camera.bad,gnss.*", "--start", str(recorded.start_ns), "--end",
                 str(recorded.end_ns), "--out", str(out), "--endpoint", recorded.endpoint, "--json", "-q"])
    assert code == 0
    captured = capsys.readouterr()
    import json

    result = json.loads(captured.out)
    assert result["written"] == 4 and result["records"] == 12
    assert result["corrupt"] == {"camera.bad": 2} and result["skipped"] == {"gnss.fix": 6}
    assert "corrupt record camera.bad:2" in captured.err and "camera.bad:4" in captured.err
    with open(out, "rb") as fh:
        assert sum(1 for _ in make_reader(fh).iter_messages()) == 4
