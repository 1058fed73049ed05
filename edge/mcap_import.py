"""``edge import FILE.mcap``: bring a Foxglove or rosbag2 MCAP recording into topics, the
reverse of ``edge export`` (edge/export/mcap_file.py).

Mapping (one record per MCAP message, stamped with the message's own time -- a Foxglove
``timestamp`` or a ROS ``header.stamp`` -- when it has one, else its ``log_time``):
- rosbag2 (``cdr`` messages with ``ros2msg`` schemas, decoded by ``mcap-ros2-support``):
  ``sensor_msgs/msg/CompressedImage`` (jpeg/png) becomes a camera record with the image
  bytes as recorded; ``sensor_msgs/msg/Image`` in ``bgr8``, ``rgb8`` or ``mono8`` a ``bgr8``
  camera record (rows unpadded, channels reordered or gray repeated: every pixel value kept);
  ``sensor_msgs/msg/PointCloud2`` a point-cloud record whose fields are the message's
  names, types and byte order (padding between fields and rows dropped, fields with
  ``count`` > 1 refused). ``header.frame_id`` becomes the ``frame`` header (the sensor's
  name, as the drivers write it);
- ``foxglove.CompressedImage`` (jpeg/png) and ``foxglove.RawImage`` (bgr8) become camera
  records (drivers/camera contract: ``encoding``, ``width``, ``height`` headers; the image
  bytes as recorded, sizes read from the JPEG/PNG header, nothing re-encoded);
- ``foxglove.PointCloud`` becomes a point-cloud record (drivers/pointcloud.py) with the
  message's field names, offsets and types;
- ``foxglove.CompressedVideo`` (h264/h265) becomes a video record (drivers/camera/video.py):
  the access unit as recorded, ``keyframe`` from its NAL unit types (an IDR / IRAP picture),
  ``width``/``height`` from the SPS of the channel's last keyframe (read by FFmpeg's parser);
  delta frames before a channel's first keyframe have no known size and are imported raw;
- every other channel (other ROS 2 messages, JSON, ...) becomes
  raw records: the message bytes as value, headers ``mcap.schema`` and ``mcap.encoding``.
Topic names: the channel's topic with leading ``/`` dropped and ``/`` turned into ``.``
(``/camera/front`` -> ``camera.front``), after ``--prefix``. Records are produced with
``acks=durable``; the summary counts records per topic and kind. A message that cannot be
converted (a corrupt image header) is imported raw and counted, never dropped.
"""

from __future__ import annotations

import functools
import io
import re
import struct
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import IO, Any

import numpy as np

from broker.errors import InvalidTopicError
from broker.storage.layout import validate_topic_name

#: foxglove PackedElementField.NumericType -> numpy type
NUMPY_TYPES = {1: "|u1", 2: "|i1", 3: "<u2", 4: "<i2", 5: "<u4", 6: "<i4", 7: "<f4", 8: "<f8"}
#: sensor_msgs/msg/PointField datatype -> numpy kind and size (the byte order comes from is_bigendian)
ROS_POINT_TYPES = {1: "i1", 2: "u1", 3: "i2", 4: "u2", 5: "i4", 6: "u4", 7: "f4", 8: "f8"}
#: sensor_msgs/msg/Image encodings a bgr8 camera record holds without losing a pixel value
ROS_IMAGE_CHANNELS = {"bgr8": 3, "rgb8": 3, "mono8": 1}
#: the ROS 2 types that become camera or point-cloud records (any other is imported raw)
ROS_CONVERTED = ("sensor_msgs/CompressedImage", "sensor_msgs/Image", "sensor_msgs/PointCloud2")
#: what one MCAP message becomes: (kind, record value, record headers, timestamp ns)
Converted = tuple[str, bytes, dict[str, str], int]
#: NAL unit types of a picture a decoder can start at: H.264 IDR; H.265 IRAP (BLA, IDR, CRA)
KEYFRAME_NAL_TYPES = {"h264": {5}, "h265": {16, 17, 18, 19, 20, 21}}
_FFMPEG_PARSERS = {"h264": "h264", "h265": "hevc"}
_JPEG_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


class McapImportError(ValueError):
    """An MCAP file that cannot be imported (not MCAP, a topic name that cannot be one)."""


@dataclass
class ImportResult:
    records: int = 0
    by_topic: Counter[str] = field(default_factory=Counter)
    by_kind: Counter[str] = field(default_factory=Counter)
    raw_fallbacks: int = 0

    def to_json(self) -> dict[str, Any]:
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
        return int(stamp.seconds) * 1_000_000_000 + int(stamp.nanos)
    return fallback


def _ros_type(schema_name: str) -> str:
    """``sensor_msgs/msg/Image`` (rosbag2) and ``sensor_msgs/Image`` (older writers) alike."""
    return schema_name.replace("/msg/", "/")


def _ros_stamp_ns(message: Any, fallback: int) -> int:
    stamp = message.header.stamp
    stamp_ns = int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)
    return stamp_ns if stamp_ns > 0 else fallback


def _ros_frame(message: Any, headers: dict[str, str]) -> dict[str, str]:
    if message.header.frame_id:
        headers["frame"] = str(message.header.frame_id)
    return headers


def _ros_image(image: Any) -> bytes:
    """Packed bgr8 bytes of a ``sensor_msgs/msg/Image`` (see the module docstring)."""
    channels = ROS_IMAGE_CHANNELS.get(image.encoding)
    if channels is None:
        raise ValueError(f"image encoding {image.encoding!r} has no camera record form "
                         f"(takes {', '.join(ROS_IMAGE_CHANNELS)})")
    width, height, step = int(image.width), int(image.height), int(image.step)
    if width <= 0 or height <= 0 or step < width * channels or len(image.data) < step * height:
        raise ValueError(f"image {width}x{height} step {step} does not fit its {len(image.data)} bytes")
    rows = np.frombuffer(image.data, dtype=np.uint8, count=step * height).reshape(height, step)
    pixels = rows[:, :width * channels].reshape(height, width, channels)
    if image.encoding == "rgb8":
        pixels = pixels[:, :, ::-1]
    elif image.encoding == "mono8":
        pixels = np.repeat(pixels, 3, axis=2)
    return np.ascontiguousarray(pixels).tobytes()


def _ros_points(cloud: Any) -> np.ndarray:
    """The 1-D structured point array of a ``sensor_msgs/msg/PointCloud2``."""
    order = ">" if cloud.is_bigendian else "<"
    names, offsets, formats = [], [], []
    for point_field in cloud.fields:
        kind = ROS_POINT_TYPES.get(int(point_field.datatype))
        if kind is None:
            raise ValueError(f"point field {point_field.name!r} has unknown datatype {point_field.datatype}")
        if int(point_field.count) > 1:
            raise ValueError(f"point field {point_field.name!r} has count {point_field.count} (only 1 is taken)")
        names.append(str(point_field.name))
        offsets.append(int(point_field.offset))
        formats.append(("|" if kind.endswith("1") else order) + kind)
    width, height, point_step, row_step = (int(cloud.width), int(cloud.height), int(cloud.point_step),
                                           int(cloud.row_step))
    if not names or point_step <= 0 or row_step < width * point_step or len(cloud.data) < row_step * height:
        raise ValueError(f"point cloud {width}x{height} (point step {point_step}, row step {row_step}) does not "
                         f"fit its {len(cloud.data)} bytes and {len(names)} fields")
    dtype = np.dtype({"names": names, "offsets": offsets, "formats": formats, "itemsize": point_step})
    rows = np.frombuffer(cloud.data, dtype=np.uint8, count=row_step * height).reshape(height, row_step)
    packed_rows = np.ascontiguousarray(rows[:, :width * point_step])
    return packed_rows.view(dtype).reshape(-1)


def convert_ros2(schema_name: str, message: Any, log_time: int) -> Converted | None:
    """(kind, value, headers, timestamp) for a decoded ROS 2 image or cloud; None for any other type."""
    ros_type = _ros_type(schema_name)
    if ros_type == "sensor_msgs/CompressedImage":
        data = bytes(message.data)
        text = str(message.format).lower()
        encoding = "png" if "png" in text else "jpeg" if ("jpeg" in text or "jpg" in text) else ""
        if not encoding:
            encoding = "png" if data.startswith(b"\x89PNG") else "jpeg"
        width, height = image_size(encoding, data)
        headers = {"encoding": encoding, "width": str(width), "height": str(height)}
        return "camera", data, _ros_frame(message, headers), _ros_stamp_ns(message, log_time)
    if ros_type == "sensor_msgs/Image":
        headers = {"encoding": "bgr8", "width": str(message.width), "height": str(message.height)}
        return "camera", _ros_image(message), _ros_frame(message, headers), _ros_stamp_ns(message, log_time)
    if ros_type == "sensor_msgs/PointCloud2":
        from drivers.pointcloud import encode_cloud

        value, headers = encode_cloud(_ros_points(message))
        return "pointcloud", bytes(value), _ros_frame(message, headers), _ros_stamp_ns(message, log_time)
    return None


def coded_size(encoding: str, keyframe: bytes) -> tuple[int, int]:
    """(width, height) from the SPS of an Annex B keyframe, read by FFmpeg's parser (PyAV)."""
    try:
        import av
    except ImportError:
        raise ValueError("reading a video's size needs PyAV (pip install edge-appliance[sensors])") from None

    try:
        with av.open(io.BytesIO(keyframe), format=_FFMPEG_PARSERS[encoding]) as probe:
            context = probe.streams.video[0].codec_context
            width, height = int(context.width), int(context.height)
    except (av.FFmpegError, IndexError) as exc:
        raise ValueError(f"{encoding} keyframe FFmpeg cannot parse: {exc}") from None
    if width <= 0 or height <= 0:
        raise ValueError(f"{encoding} keyframe without a readable SPS (no picture size)")
    return width, height


class VideoSizes:
    """Each video channel's picture size, from its last keyframe (delta frames carry no SPS)."""

    def __init__(self) -> None:
        self._sizes: dict[str, tuple[int, int]] = {}

    def size(self, channel: str, encoding: str, data: bytes, keyframe: bool) -> tuple[int, int]:
        if keyframe:
            self._sizes[channel] = coded_size(encoding, data)
        found = self._sizes.get(channel)
        if found is None:
            raise ValueError(f"{encoding} delta frame before the channel's first keyframe: its size is unknown")
        return found


def _video(video: Any, log_time: int, size: Callable[[str, bytes, bool], tuple[int, int]]) -> Converted:
    from drivers.camera.video import KEYFRAME_HEADER, VIDEO_ENCODINGS, nal_unit_types

    encoding, data = str(video.format), bytes(video.data)
    if encoding not in VIDEO_ENCODINGS:
        raise ValueError(f"video format {encoding!r} is not one of {', '.join(VIDEO_ENCODINGS)}")
    keyframe = bool(KEYFRAME_NAL_TYPES[encoding] & set(nal_unit_types(data, encoding)))
    width, height = size(encoding, data, keyframe)
    headers = {"encoding": encoding, "width": str(width), "height": str(height),
               KEYFRAME_HEADER: "1" if keyframe else "0"}
    return "camera", data, headers, _stamp_ns(video, log_time)


def convert(schema_name: str, message_encoding: str, data: bytes, log_time: int, *,
            decode_cdr: Callable[[bytes], Any] | None = None,
            video_size: Callable[[str, bytes, bool], tuple[int, int]] | None = None) -> Converted:
    """(kind, value, headers, timestamp) for one MCAP message; ``decode_cdr`` decodes a ROS 2
    message of this channel (None: the channel is not ROS 2 or its schema is not ``ros2msg``);
    ``video_size`` gives the picture size of a video channel's frame (``VideoSizes.size``)."""
    raw = ("raw", data, {"mcap.schema": schema_name or "-", "mcap.encoding": message_encoding or "-"}, log_time)
    if message_encoding == "cdr" and decode_cdr is not None and _ros_type(schema_name) in ROS_CONVERTED:
        return convert_ros2(schema_name, decode_cdr(data), log_time) or raw
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
    if schema_name == "foxglove.CompressedVideo" and video_size is not None:
        from foxglove_schemas_protobuf.CompressedVideo_pb2 import CompressedVideo

        return _video(CompressedVideo.FromString(data), log_time, video_size)
    if schema_name == "foxglove.PointCloud":
        from foxglove_schemas_protobuf.PointCloud_pb2 import PointCloud

        from drivers.pointcloud import encode_cloud

        cloud = PointCloud.FromString(data)
        layout = np.dtype({"names": [f.name for f in cloud.fields], "offsets": [f.offset for f in cloud.fields],
                           "formats": [NUMPY_TYPES[f.type] for f in cloud.fields], "itemsize": cloud.point_stride})
        points = np.frombuffer(cloud.data, dtype=layout)
        value, headers = encode_cloud(points)
        return "pointcloud", bytes(value), headers, _stamp_ns(cloud, log_time)
    return raw


def _cdr_decoders() -> tuple[Callable[[Any], Callable[[bytes], Any] | None], tuple[type[Exception], ...]]:
    """(decoder for a ``ros2msg`` schema or None, the errors decoding may raise), cached per schema;
    without ``mcap-ros2-support`` installed there is no decoder (ROS 2 channels import raw)."""
    try:
        from mcap_ros2._vendor.rosidl_adapter.parser import InvalidSpecification, InvalidValue
        from mcap_ros2.decoder import DecoderFactory
    except ImportError:
        return (lambda schema: None), ()
    factory = DecoderFactory()
    cache: dict[int, Callable[[bytes], Any] | None] = {}

    def decoder(schema: Any) -> Callable[[bytes], Any] | None:
        if schema is None or schema.encoding != "ros2msg":
            return None
        if schema.id not in cache:
            try:
                cache[schema.id] = factory.decoder_for("cdr", schema)
            except (InvalidSpecification, InvalidValue) as exc:
                raise ValueError(f"schema {schema.name!r} is not a ROS 2 message definition: {exc}") from None
        return cache[schema.id]

    return decoder, (InvalidSpecification, InvalidValue)


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
    cdr_decoder, cdr_errors = _cdr_decoders()
    video_sizes = VideoSizes()
    # what a message that cannot be converted raises: it is imported raw and counted
    unconvertible = (ValueError, KeyError, TypeError, IndexError, AttributeError, struct.error, DecodeError,
                     McapError, *cdr_errors)
    with Producer(endpoint, acks="durable", linger_ms=20) as producer:
        try:
            for schema, channel, message in make_reader(stream).iter_messages(log_time_order=True):
                topic = topics.get(channel.topic) or topics.setdefault(channel.topic, topic_for(channel.topic, prefix))
                schema_name = schema.name if schema is not None else ""
                try:
                    decode_cdr = cdr_decoder(schema) if channel.message_encoding == "cdr" else None
                    kind, value, headers, stamp = convert(
                        schema_name, channel.message_encoding, message.data, message.log_time, decode_cdr=decode_cdr,
                        video_size=functools.partial(video_sizes.size, channel.topic))
                except unconvertible as exc:
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
