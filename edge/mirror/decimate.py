"""Decimation and transcoding on the uplink only: the vehicle's log keeps every record at full
resolution; what goes to the cloud may be less, and says so.

Per topic (``[mirror] sampling`` and ``[mirror.transcode."PATTERN"]``):
- ``sampling = N``: every Nth record (offset % N == 0) ships, the others are passed over;
- camera frames (``encoding`` jpeg/png/bgr8, drivers/camera/encoding.py; OpenCV, the
  ``sensors`` extra, needed only when such a rule is configured): ``scale`` resizes
  (INTER_AREA), ``jpeg_quality`` re-encodes as JPEG (without it a rescaled frame keeps its
  encoding); the ``encoding``/``width``/``height`` headers are rewritten to match;
- point clouds (``encoding = pointcloud``, drivers/pointcloud.py): ``voxel_m`` keeps one real
  point per voxel (all its fields), the voxels found by open3d (``voxel_down_sample_and_trace``)
  or, only when open3d is not installed, by a numpy voxel grid; ``points`` is rewritten.

Every shipped record that was touched carries the header ``edge.uplink`` (UTF-8 text,
space-separated ``name=value`` items in the order applied), e.g. ``every=10``,
``scale=0.5 jpeg_quality=40 from=1920x1080:jpeg``, ``voxel_m=0.2 points=28800->3120``. A record
that is not what its rule expects (no camera/cloud headers, bytes that do not decode) ships
unchanged with ``edge.uplink = unchanged:<why>``: the uplink never drops data it cannot read.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from broker.base.names import (
    HEADER_CAPTURE,
    HEADER_EPOCH,
    HEADER_UPLINK,
    HEADER_VEHICLE,
    IMAGE_ENCODINGS,
)
from broker.base.names import HEADER_SOURCE_OFFSET as HEADER_OFFSET
from broker.base.names import HEADER_SOURCE_PARTITION as HEADER_PARTITION
from broker.base.names import HEADER_SOURCE_TOPIC as HEADER_TOPIC
from broker.base.names import POINTCLOUD_ENCODING as CLOUD_ENCODING
from drivers.pointcloud import decode_cloud, encode_cloud

from .config import MirrorConfig, TranscodeRule
from .reject import DestinationLimits


@functools.cache
def _open3d() -> Any:
    """open3d (pip install edge-appliance[pointcloud]), imported at the first voxel rule (it is
    large, and a mirror without LiDAR rules never needs it); None when not installed."""
    try:
        import open3d
    except ImportError:  # pragma: no cover - depends on the install
        return None
    return open3d


def _text(headers: Mapping[str, Any], name: str) -> str:
    raw = headers.get(name)
    return bytes(raw).decode("utf-8", "replace") if isinstance(raw, (bytes, bytearray, memoryview)) else str(raw or "")


def transcode(rule: TranscodeRule, value: bytes, headers: Mapping[str, Any]) -> tuple[bytes, dict[str, str], str]:
    """(new value, payload headers to replace, what was done) for one record."""
    encoding = _text(headers, "encoding")
    try:
        if rule.voxel_m is not None:
            if encoding != CLOUD_ENCODING:
                return value, {}, f"unchanged:encoding={encoding or 'none'}"
            return _voxel(rule.voxel_m, value, headers)
        if encoding not in IMAGE_ENCODINGS:
            return value, {}, f"unchanged:encoding={encoding or 'none'}"
        return _camera(rule, value, headers, encoding)
    except ValueError as exc:  # a record that does not decode ships as it is, marked
        return value, {}, "unchanged:" + str(exc).replace(" ", "_")[:120]


def _camera(rule: TranscodeRule, value: bytes, headers: Mapping[str, Any],
            encoding: str) -> tuple[bytes, dict[str, str], str]:
    # OpenCV (the sensors extra) only when a camera rule is configured: the mirror runs without it
    import cv2

    from drivers.camera.encoding import decode_frame, encode_frame

    image = decode_frame(value, headers)
    height, width = image.shape[:2]
    done = []
    if rule.scale is not None and rule.scale < 1:
        size = (max(1, round(width * rule.scale)), max(1, round(height * rule.scale)))
        image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
        done.append(f"scale={rule.scale:g}")
    target = "jpeg" if rule.jpeg_quality is not None else encoding
    quality = rule.jpeg_quality if rule.jpeg_quality is not None else 90
    if rule.jpeg_quality is not None:
        done.append(f"jpeg_quality={rule.jpeg_quality}")
    new_value, payload = encode_frame(image, target, quality)
    done.append(f"from={width}x{height}:{encoding}")
    return bytes(new_value), payload, " ".join(done)


def voxel_keep(xyz: np.ndarray, voxel_m: float) -> np.ndarray:
    """Indices of one real point per occupied voxel of edge ``voxel_m`` (sorted)."""
    if len(xyz) == 0:
        return np.zeros(0, dtype=np.int64)
    o3d = _open3d()
    if o3d is not None:
        cloud = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(xyz.astype(np.float64)))
        _down, _cubes, traced = cloud.voxel_down_sample_and_trace(voxel_m, cloud.get_min_bound(),
                                                                  cloud.get_max_bound())
        return np.sort(np.fromiter((members[0] for members in traced), dtype=np.int64, count=len(traced)))
    cells = np.floor((xyz - xyz.min(axis=0)) / voxel_m).astype(np.int64)
    _cells, first = np.unique(cells, axis=0, return_index=True)
    return np.sort(first)


def _voxel(voxel_m: float, value: bytes, headers: Mapping[str, Any]) -> tuple[bytes, dict[str, str], str]:
    points = decode_cloud(value, headers)
    finite = np.isfinite(points["x"]) & np.isfinite(points["y"]) & np.isfinite(points["z"])
    kept_all = points[finite]
    xyz = np.stack([kept_all["x"], kept_all["y"], kept_all["z"]], axis=1)
    kept = kept_all[voxel_keep(xyz, voxel_m)]
    packed, payload = encode_cloud(np.ascontiguousarray(kept))
    model = headers.get("model")
    if model is not None:
        payload["model"] = _text(headers, "model")
    return bytes(packed), payload, f"voxel_m={voxel_m:g} points={len(points)}->{len(kept)}"


@dataclass(frozen=True)
class Outgoing:
    """A record as it goes up: value, all headers (mirror's, payload's, ``edge.uplink``), its
    size with overhead as the destination counts it, and whether that is above its limit."""
    offset: int
    value: bytes
    headers: list[tuple[str, bytes]]
    size: int
    too_large: bool


class UplinkShaper:
    """What each record becomes on the uplink; the head record of a partition that waits (cap,
    budget) is kept, so it is transcoded once."""

    def __init__(self, config: MirrorConfig, vehicle: str):
        self.config = config
        self.vehicle = vehicle.encode()
        self.epoch = b""  # set by the mirror once its identity is loaded (edge/mirror/resume.py)
        self.transcoded = 0  # records shipped changed by a transcode rule
        self._waiting: dict[tuple[str, int], Outgoing] = {}

    def outgoing(self, record: Any, limit: DestinationLimits) -> Outgoing | None:
        """None: the topic's sampling passes ``record`` over."""
        tp = (record.topic, record.partition)
        cached = self._waiting.get(tp)
        if cached is not None and cached.offset == record.offset:
            return cached
        internal = record.topic.startswith("_")  # the drive catalog ships whole, whatever "*" rules say
        every = 1 if internal else self.config.every(record.topic)
        if every > 1 and record.offset % every:
            return None
        value = bytes(record.value)
        payload = {k: bytes(v) for k, v in record.headers.items()}
        done = [f"every={every}"] if every > 1 else []
        rule = None if internal else self.config.transcode_rule(record.topic)
        if rule is not None:
            value, replaced, note = transcode(rule, value, payload)
            payload.update({k: v.encode() for k, v in replaced.items()})
            done.append(note)
            self.transcoded += not note.startswith("unchanged:")
        if done:
            payload[HEADER_UPLINK] = " ".join(done).encode()
        headers = [(HEADER_VEHICLE, self.vehicle), (HEADER_TOPIC, record.topic.encode()),
                   (HEADER_PARTITION, str(record.partition).encode()), (HEADER_OFFSET, str(record.offset).encode()),
                   (HEADER_CAPTURE, str(record.timestamp).encode()), (HEADER_EPOCH, self.epoch), *payload.items()]
        size = limit.record_bytes(record.key, value, headers)
        shaped = Outgoing(record.offset, value, headers, size, size > limit.max_message_bytes)
        self._waiting[tp] = shaped
        return shaped

    def set_epoch(self, epoch: str) -> None:
        self.epoch = epoch.encode()
        self._waiting.clear()

    def forget(self, tp: tuple[str, int]) -> None:
        self._waiting.pop(tp, None)

    def forget_all(self) -> None:
        self._waiting.clear()
