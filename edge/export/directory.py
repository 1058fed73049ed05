"""Directory export: an MP4 per camera topic, a folder of PCD or PLY files per LiDAR topic.

Layout (inside the directory being written; edge.export.core makes it atomic)::

    manifest.json                    counts, window, files (written last by the caller)
    <topic>.mp4                      OpenCV VideoWriter, mp4v, one per camera topic
    <topic>.frames.csv               index,capture_ns,offset (one row per video frame)
    <topic>/<capture_ns>.pcd|.ply    open3d, one file per cloud (binary)
    <topic>/index.csv                index,capture_ns,offset,points,file

Guarantees:
- Memory is bounded: one VideoWriter per camera topic; before it opens, at most
  ``PROBE_FRAMES`` encoded frames (and at most ``PROBE_BYTES``) of that topic are held to
  measure the frame rate (the median inter-frame interval, clamped to [1, 120] fps);
  clouds are written one at a time.
- Frame ``i`` of the MP4 is row ``i`` of its frames CSV: the MP4 plays at a constant rate,
  the CSV keeps every frame's true capture time and offset. A frame whose size differs
  from the topic's first frame is resized to it (counted in ``resized``).
- A PCD/PLY file holds every point of its cloud: ``x, y, z`` as positions (float32) and
  every other field as a named attribute of its own type; its name carries the capture
  time in ns (zero padded, so names sort by time).
- A record that does not decode raises ValueError from ``write`` and leaves no row and no
  file (the caller counts it as corrupt and goes on).
"""

from __future__ import annotations

import csv
import re
import statistics
from pathlib import Path
from typing import Any, Callable

import numpy as np

from broker.records import Record

from .errors import ExportError
from .kinds import CAMERA, POINTCLOUD

PROBE_FRAMES = 16
PROBE_BYTES = 64 * 1024 * 1024
DEFAULT_FPS = 10.0
CLOUD_FORMATS = ("pcd", "ply")
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


def safe_name(topic: str) -> str:
    """A file name for a topic (topic names are already file-safe; this is belt and braces)."""
    name = _UNSAFE.sub("_", topic).lstrip(".")
    return name or "topic"


def fps_from_stamps(stamps: list[int]) -> float:
    """Frames per second from the median inter-frame interval of capture times (ns)."""
    gaps = [b - a for a, b in zip(stamps, stamps[1:]) if b > a]
    if not gaps:
        return DEFAULT_FPS
    return float(min(120.0, max(1.0, 1e9 / statistics.median(gaps))))


class VideoTrack:
    """One camera topic's MP4 and frames CSV."""

    def __init__(self, root: Path, topic: str):
        self.topic = topic
        self.video_name = f"{safe_name(topic)}.mp4"
        self.index_name = f"{safe_name(topic)}.frames.csv"
        self.video_path = root / self.video_name
        self._csv_file = open(root / self.index_name, "w", newline="", encoding="utf-8")
        self._csv = csv.writer(self._csv_file)
        self._csv.writerow(["index", "capture_ns", "offset"])
        self._probe: list[tuple[int, int, bytes, dict[str, bytes]]] = []
        self._probe_bytes = 0
        self.writer: Any = None
        self.frames = 0
        self.resized = 0
        self.size: tuple[int, int] | None = None
        self.fps: float | None = None
        self.first_ns: int | None = None
        self.last_ns: int | None = None

    def add(self, record: Record) -> None:
        from drivers.camera.encoding import decode_frame

        if self.writer is None:
            image = decode_frame(record.value, record.headers)  # validate now: a corrupt frame is refused here
            if self.size is None:
                self.size = (image.shape[1], image.shape[0])
            del image
            value = bytes(record.value)
            self._probe.append((int(record.timestamp), record.offset, value, dict(record.headers)))
            self._probe_bytes += len(value)
            if len(self._probe) >= PROBE_FRAMES or self._probe_bytes >= PROBE_BYTES:
                self._open()
            return
        self._write(decode_frame(record.value, record.headers), int(record.timestamp), record.offset)

    def _open(self) -> None:
        import cv2

        self.fps = fps_from_stamps([ts for ts, *_ in self._probe])
        if self.size is None:
            raise ExportError(f"{self.topic}: no frame to size the video")
        self.writer = cv2.VideoWriter(str(self.video_path), cv2.VideoWriter_fourcc(*"mp4v"), self.fps, self.size)
        if not self.writer.isOpened():
            self.writer = None
            raise ExportError(f"OpenCV cannot write an mp4v video at {self.video_path} (no FFmpeg in this OpenCV?)")
        from drivers.camera.encoding import decode_frame

        probe, self._probe = self._probe, []
        for ts, offset, value, headers in probe:
            self._write(decode_frame(value, headers), ts, offset)
        self._probe_bytes = 0

    def _write(self, image: np.ndarray, ts: int, offset: int) -> None:
        import cv2

        if (image.shape[1], image.shape[0]) != self.size:
            image = cv2.resize(image, self.size, interpolation=cv2.INTER_AREA)
            self.resized += 1
        self.writer.write(np.ascontiguousarray(image))
        self._csv.writerow([self.frames, ts, offset])
        self.frames += 1
        if self.first_ns is None:
            self.first_ns = ts
        self.last_ns = ts

    def finish(self) -> dict[str, Any]:
        if self.writer is None and self._probe:
            self._open()
        self.close()
        return {"kind": CAMERA, "frames": self.frames, "video": self.video_name if self.frames else None,
                "index": self.index_name,
                "fps": round(self.fps, 3) if self.fps else None,
                "width": self.size[0] if self.size else None, "height": self.size[1] if self.size else None,
                "resized": self.resized, "first_ns": self.first_ns, "last_ns": self.last_ns}

    def close(self) -> None:
        if self.writer is not None:
            self.writer.release()
            self.writer = None
        if not self._csv_file.closed:
            self._csv_file.close()
        self._probe = []


class CloudFolder:
    """One LiDAR topic's folder of clouds and its index."""

    def __init__(self, root: Path, topic: str, cloud_format: str):
        self.topic = topic
        self.cloud_format = cloud_format
        self.folder_name = safe_name(topic)
        self.folder = root / self.folder_name
        self.folder.mkdir()
        self._csv_file = open(self.folder / "index.csv", "w", newline="", encoding="utf-8")
        self._csv = csv.writer(self._csv_file)
        self._csv.writerow(["index", "capture_ns", "offset", "points", "file"])
        self.clouds = 0
        self.points = 0
        self.first_ns: int | None = None
        self.last_ns: int | None = None

    def add(self, record: Record) -> None:
        import open3d as o3d

        from drivers.pointcloud import decode_cloud

        cloud = decode_cloud(record.value, record.headers)
        names = cloud.dtype.names or ()
        if not {"x", "y", "z"} <= set(names):
            raise ValueError(f"cloud has fields {', '.join(names)}, not x, y, z")
        ts = int(record.timestamp)
        file_name = f"{ts:019d}.{self.cloud_format}"
        pc = o3d.t.geometry.PointCloud()
        xyz = np.empty((len(cloud), 3), dtype=np.float32)
        for column, axis in enumerate("xyz"):
            xyz[:, column] = cloud[axis]
        pc.point.positions = o3d.core.Tensor(xyz)
        for name in names:
            if name in ("x", "y", "z"):
                continue
            column = np.ascontiguousarray(cloud[name].astype(cloud.dtype[name].newbyteorder("=")).reshape(-1, 1))
            pc.point[name] = o3d.core.Tensor(column)
        path = self.folder / file_name
        if not o3d.t.io.write_point_cloud(str(path), pc, write_ascii=False, compressed=False):
            path.unlink(missing_ok=True)
            raise ExportError(f"open3d could not write {path}")
        self._csv.writerow([self.clouds, ts, record.offset, len(cloud), file_name])
        self.clouds += 1
        self.points += len(cloud)
        if self.first_ns is None:
            self.first_ns = ts
        self.last_ns = ts

    def finish(self) -> dict[str, Any]:
        self.close()
        return {"kind": POINTCLOUD, "clouds": self.clouds, "points": self.points, "folder": self.folder_name,
                "format": self.cloud_format, "index": f"{self.folder_name}/index.csv",
                "first_ns": self.first_ns, "last_ns": self.last_ns}

    def close(self) -> None:
        if not self._csv_file.closed:
            self._csv_file.close()


class DirectoryWriter:
    """Routes records to their topic's track; ``finish`` returns the per-topic manifest."""

    def __init__(self, root: Path, *, cloud_format: str = "pcd",
                 warn: Callable[[str], None] | None = None):
        if cloud_format not in CLOUD_FORMATS:
            raise ExportError(f"cloud format {cloud_format!r} is not one of {', '.join(CLOUD_FORMATS)}")
        self.root = Path(root)
        self.cloud_format = cloud_format
        self.warn = warn
        self.tracks: dict[str, VideoTrack | CloudFolder] = {}
        self._check_libraries()

    @staticmethod
    def _check_libraries() -> None:
        missing = []
        for module, extra in (("cv2", "sensors"), ("open3d", "pointcloud")):
            try:
                __import__(module)
            except ImportError:
                missing.append(f"{module} (pip install edge-appliance[{extra}])")
        if missing:
            raise ExportError("directory export needs " + " and ".join(missing))

    def write(self, record: Record, kind: str) -> None:
        track = self.tracks.get(record.topic)
        if track is None:
            if kind == CAMERA:
                track = VideoTrack(self.root, record.topic)
            elif kind == POINTCLOUD:
                track = CloudFolder(self.root, record.topic, self.cloud_format)
            else:
                raise ValueError(f"{kind} records are not exported to a directory")
            self.tracks[record.topic] = track
        elif track_kind(track) != kind:
            raise ValueError(f"a {kind} record on {record.topic}, whose earlier records were {track_kind(track)}")
        track.add(record)

    def finish(self) -> dict[str, dict[str, Any]]:
        return {topic: track.finish() for topic, track in sorted(self.tracks.items())}

    def close(self) -> None:
        for track in self.tracks.values():
            track.close()


def track_kind(track: VideoTrack | CloudFolder) -> str:
    return CAMERA if isinstance(track, VideoTrack) else POINTCLOUD
