"""MCAP writer for Foxglove: camera frames and point clouds as foxglove protobuf schemas.

Guarantees:
- One channel per (topic, schema), named after the vehicle topic, protobuf encoded, with
  the schema's FileDescriptorSet embedded (any MCAP reader decodes without our code).
- ``jpeg``/``png`` frames become ``foxglove.CompressedImage`` (bytes passed through, no
  re-encode), ``h264``/``h265`` frames ``foxglove.CompressedVideo`` (the Annex B bytes
  as recorded, ``format`` = the encoding; every record, also deltas before the first
  keyframe, which Foxglove skips until a keyframe), ``bgr8`` frames ``foxglove.RawImage`` (step = width x 3), clouds
  ``foxglove.PointCloud`` whose ``PackedElementField`` offsets and numeric types are
  those of the record's numpy layout. Layouts Foxglove cannot describe (big-endian,
  float16, 64-bit integers) are repacked little-endian (f2 -> FLOAT32, i8/u8 ->
  FLOAT64); every other cloud is passed through byte for byte.
- Each message's ``log_time``, ``publish_time`` and its ``timestamp`` field are the
  record's capture time; ``frame_id`` is the record's ``frame`` header (the sensor's
  name), else the topic name; the sequence is the record's offset (mod 2^32).
- A record with a ``mounting`` header (JSON ``{"parent", "xyz" [m], "rpy_deg"}``, see
  edge/config.py MountingConfig) gets a ``foxglove.FrameTransform`` parent → frame on
  the ``/tf`` channel, stamped like the record, before its first message and whenever
  the mounting changes, so Foxglove places the sensor on the vehicle. A mounting header
  that is not that JSON makes the record corrupt (ValueError, nothing written).
- Zstd-compressed chunks, message/chunk indexes, statistics and the summary section are
  written (the ``mcap`` Writer's defaults), plus one ``edge.export`` metadata record.
- Records that are neither frames nor clouds are not written (the caller counts them).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import IO, Any

import numpy as np

from broker.records import Record

from .errors import ExportError
from .kinds import CAMERA, POINTCLOUD, VIDEO_ENCODINGS, check_camera

try:
    from foxglove_schemas_protobuf.CompressedImage_pb2 import CompressedImage
    from foxglove_schemas_protobuf.CompressedVideo_pb2 import CompressedVideo
    from foxglove_schemas_protobuf.FrameTransform_pb2 import FrameTransform
    from foxglove_schemas_protobuf.PackedElementField_pb2 import PackedElementField
    from foxglove_schemas_protobuf.PointCloud_pb2 import PointCloud
    from foxglove_schemas_protobuf.RawImage_pb2 import RawImage
    from google.protobuf.descriptor_pb2 import FileDescriptorSet
    from mcap.writer import CompressionType, Writer
except ImportError as _exc:  # pragma: no cover - exercised only without the extra
    _MISSING: str | None = str(_exc)
else:
    _MISSING = None

CHUNK_SIZE = 4 * 1024 * 1024
PROFILE = ""  # no ROS profile: plain protobuf channels

#: numpy kind+size -> foxglove PackedElementField.NumericType value
NUMERIC_TYPES = {"u1": 1, "i1": 2, "u2": 3, "i2": 4, "u4": 5, "i4": 6, "f4": 7, "f8": 8}
#: how a type Foxglove lacks is repacked
_WIDEN = {"f2": "<f4", "i8": "<f8", "u8": "<f8"}


def require_mcap() -> None:
    if _MISSING is not None:
        raise ExportError(f"MCAP export needs the export extra (pip install edge-appliance[export]): {_MISSING}")


def cloud_layout(dtype: np.dtype) -> tuple[np.dtype, list[tuple[str, int, int]]]:
    """The little-endian packed dtype Foxglove can read for ``dtype`` and its fields as
    (name, offset, numeric type). The returned dtype equals ``dtype`` when no repack is needed."""
    target: list[tuple[str, str]] = []
    source_fields: Mapping[str, Any] = dtype.fields or {}
    for name in sorted(dtype.names or (), key=lambda n: source_fields[n][1]):
        field_type = source_fields[name][0]
        code = f"{field_type.kind}{field_type.itemsize}"
        if code in _WIDEN:
            target.append((name, _WIDEN[code]))
        elif code in NUMERIC_TYPES:
            target.append((name, ("<" if field_type.itemsize > 1 else "|") + code))
        else:
            raise ValueError(f"cloud field {name!r} has type {field_type}, which Foxglove cannot show")
    packed = np.dtype(target)
    layout: Mapping[str, Any] = packed.fields or {}
    fields = [(name, layout[name][1], NUMERIC_TYPES[f"{layout[name][0].kind}{layout[name][0].itemsize}"])
              for name in packed.names or ()]
    return packed, fields


TRANSFORM_TOPIC = "/tf"


def _frame_id(record: Record) -> str:
    return record.header("frame") or record.topic


def parse_mounting(text: str) -> tuple[str, tuple[float, float, float], tuple[float, float, float]]:
    """(parent, xyz m, rpy degrees) of a ``mounting`` header; ValueError naming the problem."""
    import json

    try:
        value = json.loads(text)
        parent, xyz, rpy = str(value["parent"]), tuple(map(float, value["xyz"])), tuple(map(float, value["rpy_deg"]))
    except (ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"mounting header {text[:80]!r} is not {{parent, xyz, rpy_deg}} JSON: {exc}") from None
    if len(xyz) != 3 or len(rpy) != 3 or not all(np.isfinite(xyz + rpy)) or not parent:
        raise ValueError(f"mounting header {text[:80]!r}: need a parent and 3 finite xyz and rpy_deg values")
    return parent, xyz, rpy


def quaternion_from_rpy(roll: float, pitch: float, yaw: float) -> tuple[float, float, float, float]:
    """(x, y, z, w) of the rotation R = Rz(yaw)·Ry(pitch)·Rx(roll) (URDF / ROS rpy)."""
    cr, sr, cp, sp = np.cos(roll / 2), np.sin(roll / 2), np.cos(pitch / 2), np.sin(pitch / 2)
    cy, sy = np.cos(yaw / 2), np.sin(yaw / 2)
    return (float(sr * cp * cy - cr * sp * sy), float(cr * sp * cy + sr * cp * sy),
            float(cr * cp * sy - sr * sp * cy), float(cr * cp * cy + sr * sp * sy))


def _stamp(message: Any, ns: int) -> None:
    message.timestamp.seconds = ns // 1_000_000_000
    message.timestamp.nanos = ns % 1_000_000_000


def _descriptor_set(message_class: Any) -> bytes:
    files = FileDescriptorSet()
    seen: set[str] = set()

    def add(file_descriptor: Any) -> None:
        for dep in file_descriptor.dependencies:
            if dep.name not in seen:
                seen.add(dep.name)
                add(dep)
        file_descriptor.CopyToProto(files.file.add())

    add(message_class.DESCRIPTOR.file)
    return bytes(files.SerializeToString())


class McapFileWriter:
    """Writes records to an open binary stream; ``finish`` completes the file."""

    def __init__(self, stream: IO[bytes], *, metadata: Mapping[str, str] | None = None,
                 chunk_size: int = CHUNK_SIZE):
        require_mcap()
        self.writer: Any = Writer(stream, chunk_size=chunk_size, compression=CompressionType.ZSTD)  # mcap: untyped
        self.writer.start(profile=PROFILE, library="edge-appliance export")
        self._schemas: dict[str, int] = {}
        self._channels: dict[tuple[str, str], int] = {}
        self.messages: dict[str, int] = {}
        self.schemas_used: dict[str, str] = {}
        self._metadata = dict(metadata or {})
        self._layouts: dict[str, tuple[np.dtype, np.dtype, list[tuple[str, int, int]]]] = {}
        self._mountings: dict[str, str] = {}  # frame -> the mounting header last written for it
        self.transforms = 0  # FrameTransform messages written (not records: not in ``messages``)

    def _channel(self, topic: str, message_class: Any, partition: int) -> int:
        name = message_class.DESCRIPTOR.full_name
        key = (topic, name)
        channel = self._channels.get(key)
        if channel is None:
            schema = self._schemas.get(name)
            if schema is None:
                schema = self.writer.register_schema(name=name, encoding="protobuf",
                                                     data=_descriptor_set(message_class))
                self._schemas[name] = schema
            channel = self.writer.register_channel(topic=topic, message_encoding="protobuf", schema_id=schema,
                                                   metadata={"source": "edge-appliance", "partition": str(partition)})
            self._channels[key] = channel
            self.schemas_used.setdefault(topic, name)
        return channel

    def write(self, record: Record, kind: str) -> None:
        """Write one frame or cloud; ValueError when the record is corrupt (nothing written)."""
        if kind == CAMERA:
            message = self._image(record)
        elif kind == POINTCLOUD:
            message = self._cloud(record)
        else:
            raise ValueError(f"{kind} records are not exported to MCAP")
        data = message.SerializeToString()
        transform = self._transform(record, message.frame_id)
        channel = self._channel(record.topic, type(message), record.partition)
        ts = int(record.timestamp)
        if transform is not None:
            self.writer.add_message(channel_id=self._channel(TRANSFORM_TOPIC, FrameTransform, 0), log_time=ts,
                                    publish_time=ts, data=transform.SerializeToString())
            self.transforms += 1
        self.writer.add_message(channel_id=channel, log_time=ts, publish_time=ts, data=data,
                                sequence=record.offset & 0xFFFFFFFF)
        self.messages[record.topic] = self.messages.get(record.topic, 0) + 1

    def _image(self, record: Record) -> Any:
        frame = check_camera(record)
        if frame.encoding == "bgr8":
            message = RawImage(frame_id=_frame_id(record), width=frame.width, height=frame.height, encoding="bgr8",
                               step=frame.width * 3, data=bytes(record.value))
        elif frame.encoding in VIDEO_ENCODINGS:
            message = CompressedVideo(frame_id=_frame_id(record), format=frame.encoding, data=bytes(record.value))
        else:
            message = CompressedImage(frame_id=_frame_id(record), format=frame.encoding, data=bytes(record.value))
        _stamp(message, int(record.timestamp))
        return message

    def _cloud(self, record: Record) -> Any:
        from drivers.pointcloud import decode_cloud

        points = decode_cloud(record.value, record.headers)
        fields_header = record.header("fields") or ""
        cached = self._layouts.get(fields_header)
        if cached is None or cached[0] != points.dtype:
            packed, fields = cloud_layout(points.dtype)
            cached = (points.dtype, packed, fields)
            self._layouts[fields_header] = cached
        _dtype, packed, fields = cached
        if packed == points.dtype:
            data = bytes(record.value)
        else:
            repacked = np.empty(points.shape, dtype=packed)
            for name in packed.names or ():
                repacked[name] = points[name]
            data = repacked.tobytes()
        numeric_type = PackedElementField.NumericType.ValueType
        message = PointCloud(frame_id=_frame_id(record), point_stride=packed.itemsize, data=data,
                             fields=[PackedElementField(name=n, offset=o, type=numeric_type(t)) for n, o, t in fields])
        message.pose.orientation.w = 1.0  # the cloud is in its sensor's frame
        _stamp(message, int(record.timestamp))
        return message

    def _transform(self, record: Record, frame: str) -> Any:
        """The FrameTransform to write before this record's message, if its mounting is new."""
        text = record.header("mounting")
        if not text or self._mountings.get(frame) == text:
            return None
        parent, xyz, rpy_deg = parse_mounting(text)
        transform = FrameTransform(parent_frame_id=parent, child_frame_id=frame)
        _stamp(transform, int(record.timestamp))
        transform.translation.x, transform.translation.y, transform.translation.z = xyz
        (transform.rotation.x, transform.rotation.y, transform.rotation.z,
         transform.rotation.w) = quaternion_from_rpy(*np.deg2rad(rpy_deg))
        self._mountings[frame] = text
        return transform

    def set_metadata(self, name: str, value: str) -> None:
        """Add or replace one field of the ``edge.export`` metadata record (written by ``finish``)."""
        self._metadata[name] = value

    def finish(self) -> None:
        if self._metadata:
            self.writer.add_metadata("edge.export", {str(k): str(v) for k, v in self._metadata.items()})
        self.writer.finish()
