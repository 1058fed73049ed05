"""``edge import FILE.mcap``: bring a Foxglove or rosbag2 MCAP recording into topics, the
reverse of ``edge export`` (edge/export/mcap_file.py).

Mapping (one record per MCAP message, stamped with the message's ``log_time``):
- ``foxglove.CompressedImage`` (jpeg/png) and ``foxglove.RawImage`` (bgr8) become camera
  records (drivers/camera contract: ``encoding``, ``width``, ``height`` headers; the image
  bytes as recorded, sizes read from the JPEG/PNG header, nothing re-encoded);
- ``foxglove.PointCloud`` becomes a point-cloud record (drivers/pointcloud.py) with the
  message's field names, offsets and types;
- every other channel (``foxglove.CompressedVideo``, ROS 2 CDR messages, JSON, ...) becomes
  raw records: the message bytes as value, headers ``mcap.schema`` and ``mcap.encoding``.
Topic names: the channel's topic with leading ``/`` dropped and ``/`` turned into ``.``
(``/camera/front`` -> ``camera.front``), after ``--prefix``. Records are produced with
``acks=durable``; the summary counts records per topic and kind. A message that cannot be
converted (a corrupt image header) is imported raw and counted, never dropped.
"""

from __future__ import annotations

import re
import struct
from collections import Counter
from dataclasses import dataclass, field
from typing import IO, Any, Callable

import numpy as np

from broker.errors import InvalidTopicError
from broker.storage.layout import validate_topic_name

#: foxglove PackedElementField.NumericType -> numpy type
NUMPY_TYPES = {1: "|u1", 2: "|i1", 3: "<u2", 4: "<i2", 5: "<u4", 6: "<i4", 7: "<f4", 8: "<f8"}
_JPEG_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


class McapImportError(ValueError):
    """An MCAP file that cannot be imported (not MCAP, a topic name that cannot be one)."""


@dataclass
class ImportResult:
    records: int = 0
    by_topic: Counter = field(default_factory=Counter)
    by_kind: Counter = field(default_factory=Counter)
    raw_fallbacks: int = 0

    def to_json(self) -> dict:
        return {"records": self.records, "topics": dict(self.by_topic), "kinds": dict(self.by_kind),
                "raw_fallbacks": self.raw_fallbacks}


def image_size(encoding: str, data: bytes) -> tuple[int, int]:
    """(width, height) from a PNG's IHDR or a JPEG's start-of-frame; ValueError otherwise."""
    if encoding == "png":
        if len(data) < 24 or data[:8] != b"\x89PNG\r\n\x1a\n" or data[12:16] != b"IHDR":
            raise ValueError("not a PNG image")
        return struct.unpack(">II", data[16:24])
    if encoding in ("jpeg", "jpg"):
        i = 2
        if data[:2] != b"\xff\xd8":
            raise ValueError("not a JPEG image")
        while i + 9 < len(data):
            if data[i] != 0xFF:
                raise ValueError("JPEG marker expected")
            marker, length = data[i + 1], struct.unpack(">H", data[i + 2:i + 4])[0]
            if marker in _JPEG_SOF:
                height, width = struct.unpack(">HH", data[i + 5:i + 9])
                return width, height
            i += 2 + length
        raise ValueError("JPEG without a start-of-frame")
    raise ValueError(f"no size reader for {encoding!r}")


def topic_for(channel_topic: str, prefix: str) -> str:
    name = prefix + re.sub(r"/+", ".", channel_topic.strip("/"))
    try:
        return validate_topic_name(name)
    except InvalidTopicError as exc:
        raise McapImportError(f"channel {channel_topic!r} cannot be a topic ({exc.message}): use --prefix") from None


def _stamp_ns(message: Any, fallback: int) -> int:
    stamp = getattr(message, "timestamp", None)
    if stamp is not None and (stamp.seconds or stamp.nanos):
        return stamp.seconds * 1_000_000_000 + stamp.nanos
    return fallback


def convert(schema_name: str, message_encoding: str, data: bytes, log_time: int) -> tuple[str, bytes, dict, int]:
    """(kind, value, headers, timestamp) for one MCAP message."""
    raw = ("raw", data, {"mcap.schema": schema_name or "-", "mcap.encoding": message_encoding or "-"}, log_time)
    if message_encoding != "protobuf":
        return raw
    if schema_name == "foxglove.CompressedImage":
        from foxglove_schemas_protobuf.CompressedImage_pb2 import CompressedImage

        image = CompressedImage.FromString(data)
        encoding = "jpeg" if image.format in ("jpeg", "jpg") else image.format
        width, height = image_size(encoding, image.data)
        return ("camera", image.data, {"encoding": encoding, "width": str(width), "height": str(height)},
                _stamp_ns(image, log_time))
    if schema_name == "foxglove.RawImage":
        from foxglove_schemas_protobuf.RawImage_pb2 import RawImage

        image = RawImage.FromString(data)
        if image.encoding != "bgr8" or len(image.data) != image.width * image.height * 3:
            raise ValueError(f"raw image {image.encoding} {image.width}x{image.height} is not packed bgr8")
        return ("camera", image.data, {"encoding": "bgr8", "width": str(image.width), "height": str(image.height)},
                _stamp_ns(image, log_time))
    if schema_name == "foxglove.PointCloud":
        from foxglove_schemas_protobuf.PointCloud_pb2 import PointCloud

        from drivers.pointcloud import encode_cloud

        cloud = PointCloud.FromString(data)
        layout = {"names": [f.name for f in cloud.fields], "offsets": [f.offset for f in cloud.fields],
                  "formats": [NUMPY_TYPES[f.type] for f in cloud.fields], "itemsize": cloud.point_stride}
        points = np.frombuffer(cloud.data, dtype=np.dtype(layout))
        value, headers = encode_cloud(points)
        return "pointcloud", bytes(value), headers, _stamp_ns(cloud, log_time)
    return raw


def import_mcap(stream: IO[bytes], endpoint: str, *, prefix: str = "",
                progress: Callable[[int, int, int], None] | None = None) -> ImportResult:
    """Produce every message of the MCAP ``stream`` (see the module docstring); ``progress``
    gets (records, bytes read, file size) every 100 records."""
    from google.protobuf.message import DecodeError
    from mcap.exceptions import McapError
    from mcap.reader import make_reader

    from broker.client import Producer

    result = ImportResult()
    total = stream.seek(0, 2)
    stream.seek(0)
    futures = []
    topics: dict[str, str] = {}
    with Producer(endpoint, acks="durable", linger_ms=20) as producer:
        try:
            for schema, channel, message in make_reader(stream).iter_messages(log_time_order=True):
                topic = topics.get(channel.topic) or topics.setdefault(channel.topic, topic_for(channel.topic, prefix))
                schema_name = schema.name if schema is not None else ""
                try:
                    kind, value, headers, stamp = convert(schema_name, channel.message_encoding, message.data,
                                                          message.log_time)
                except (ValueError, KeyError, TypeError, DecodeError) as exc:
                    kind, value, headers, stamp = convert("", channel.message_encoding, message.data, message.log_time)
                    headers["mcap.schema"], headers["import.error"] = schema_name, str(exc)[:200]
                    result.raw_fallbacks += 1
                futures.append(producer.send(topic, value, headers=headers, timestamp_ns=stamp))
                result.records += 1
                result.by_topic[topic] += 1
                result.by_kind[kind] += 1
                if progress is not None and result.records % 100 == 0:
                    progress(result.records, stream.tell(), total)
        except (McapError, struct.error, EOFError) as exc:
            raise McapImportError(f"not a readable MCAP file: {exc}") from None
        producer.flush(60)
    for future in futures:
        future.result(60)  # raises the broker's typed error for a record not stored
    return result
