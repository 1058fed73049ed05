"""What an exported record is: a camera frame, a point cloud, or something else.

The kind comes from the record contract's ``encoding`` header (drivers/camera/encoding.py,
drivers/pointcloud.py), never from the topic name. ``check_camera`` validates a camera
record cheaply (headers, image magic bytes, raw size) without decoding the image, so a
corrupt frame is counted and skipped instead of reaching a file. Every refusal is a
``ValueError`` naming what is wrong.
"""

from __future__ import annotations

from dataclasses import dataclass

from broker.base.names import CAMERA_ENCODINGS, VIDEO_ENCODINGS
from broker.records import Record

CAMERA = "camera"
POINTCLOUD = "pointcloud"
OTHER = "other"

_MAGIC = {"jpeg": b"\xff\xd8\xff", "png": b"\x89PNG\r\n\x1a\n"}
_ANNEX_B_START = (b"\x00\x00\x01", b"\x00\x00\x00\x01")


def record_kind(record: Record) -> str:
    encoding = record.header("encoding")
    if encoding in CAMERA_ENCODINGS:
        return CAMERA
    if encoding == POINTCLOUD:
        return POINTCLOUD
    return OTHER


@dataclass(frozen=True, slots=True)
class CameraFrame:
    encoding: str
    width: int
    height: int


# drivers/camera/encoding.py parses the same headers, but importing it loads OpenCV, which an
# MCAP export does not need.
def _side(record: Record, name: str) -> int:
    text = record.header(name)
    if text is None:
        raise ValueError(f"camera record lacks the {name!r} header")
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value <= 0:
        raise ValueError(f"camera record header {name!r} is {text!r}, not a positive integer")
    return value


def check_camera(record: Record) -> CameraFrame:
    """The frame's encoding and size; ValueError when the record cannot be an image."""
    encoding = record.header("encoding") or ""
    if encoding not in CAMERA_ENCODINGS:
        raise ValueError(f"unknown camera encoding {encoding!r}")
    width, height = _side(record, "width"), _side(record, "height")
    size = memoryview(record.value).nbytes
    if encoding == "bgr8":
        if size != width * height * 3:
            raise ValueError(f"bgr8 frame of {size} bytes does not match {width}x{height}x3")
    elif encoding in VIDEO_ENCODINGS:
        if not bytes(memoryview(record.value)[:4]).startswith(_ANNEX_B_START):
            raise ValueError(f"{encoding} frame of {size} bytes does not start with an Annex B start code")
    else:
        magic = _MAGIC[encoding]
        if size <= len(magic) or bytes(memoryview(record.value)[:len(magic)]) != magic:
            raise ValueError(f"{encoding} frame of {size} bytes does not start like a {encoding} image")
    return CameraFrame(encoding, width, height)
