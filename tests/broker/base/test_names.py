"""The internal names are a contract with data already written (local logs, the cloud Kafka,
health records): their spelling is pinned here, and every user of a name takes it from
broker.base.names instead of spelling it again."""

from __future__ import annotations

from broker.base import names


def test_names_written_to_disk_and_to_the_cloud_keep_their_spelling():
    assert (names.HEALTH_TOPIC, names.DRIVES_TOPIC, names.MIRROR_GROUP) == ("_health", "_drives", "_mirror")
    assert (names.HEADER_CAPTURE, names.HEADER_VEHICLE, names.HEADER_EPOCH) == (
        "edge.capture_ns", "edge.vehicle", "edge.epoch")
    assert (names.HEADER_SOURCE_TOPIC, names.HEADER_SOURCE_PARTITION, names.HEADER_SOURCE_OFFSET) == (
        "edge.source.topic", "edge.source.partition", "edge.source.offset")
    assert (names.HEADER_ENCODING, names.HEADER_SENSOR, names.HEADER_KEYFRAME) == ("encoding", "sensor", "keyframe")
    assert names.CAMERA_ENCODINGS == ("jpeg", "png", "bgr8", "h264", "h265")
    assert (names.POINTCLOUD_ENCODING, names.JSON_ENCODING) == ("pointcloud", "json")


def test_internal_names_are_recognised_and_mirror_headers_share_the_prefix():
    assert all(names.is_internal(n) for n in (*names.INTERNAL_TOPICS, names.MIRROR_GROUP))
    assert not names.is_internal("camera.front")
    mirror_headers = (names.HEADER_CAPTURE, names.HEADER_VEHICLE, names.HEADER_EPOCH, names.HEADER_SOURCE_TOPIC,
                      names.HEADER_SOURCE_PARTITION, names.HEADER_SOURCE_OFFSET)
    assert all(h.startswith(names.MIRROR_HEADER_PREFIX) for h in mirror_headers)


def test_every_layer_uses_the_one_definition():
    from broker import records
    from drivers import pointcloud, runtime
    from drivers.camera import encoding, video
    from edge import drives
    from edge.export import kinds
    from edge.mirror import destination

    assert records.CAPTURE_HEADER is names.HEADER_CAPTURE and destination.HEADER_CAPTURE is names.HEADER_CAPTURE
    assert runtime.HEALTH_TOPIC is names.HEALTH_TOPIC and drives.DRIVES_TOPIC is names.DRIVES_TOPIC
    assert encoding.ENCODINGS is names.IMAGE_ENCODINGS and video.VIDEO_ENCODINGS is names.VIDEO_ENCODINGS
    assert kinds.CAMERA_ENCODINGS is names.CAMERA_ENCODINGS and pointcloud.ENCODING is names.POINTCLOUD_ENCODING
