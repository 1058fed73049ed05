"""Directory export: an MP4 per camera topic, a folder of PCD or PLY files per LiDAR topic.

Layout (inside the directory being written; edge.export.core makes it atomic)::

    manifest.json                    counts, window, files (written last by the caller)
    <topic>.mp4                      H.264, faststart, timed by capture times (edge.export.mp4)
    <topic>.frames.csv               index,capture_ns,offset (one row per video frame)
    <topic>/<capture_ns>.pcd|.ply    open3d, one file per cloud (binary)
    <topic>/index.csv                index,capture_ns,offset,points,file

Guarantees:
- Memory is bounded: one MP4 writer per camera topic, holding one frame back (see
  edge.export.mp4); clouds are written one at a time.
- Frame ``i`` of the MP4 is row ``i`` of its frames CSV. The MP4 shows frame ``i`` at its
  capture time relative to the first frame (variable frame rate kept, so its duration is
  the recording's); the CSV keeps every frame's exact capture time and offset. A frame
  whose size differs from the topic's first frame is resized to it (counted in
  ``resized``); the manifest gives ``codec``, ``duration_s``, ``fps`` (frames over
  duration) and ``retimed`` (frames whose capture time did not increase).
- H.264/H.265 records (drivers/camera/video.py) are taken in offset order, starting at
  the topic's first keyframe: delta frames before it cannot be decoded, are refused as
  corrupt (ValueError, reported) and counted in ``skipped_before_keyframe``. H.264 is
  remuxed (edge.export.mp4 ``Mp4Remuxer``: the recorded bytes in the MP4, no re-encode;
  ``remuxed`` true in the manifest) when the first ``REMUX_PROBE_FRAMES`` units from the
  keyframe have increasing capture times (no B-frames); H.265 (which browsers do not all
  play) and B-frame streams are decoded and encoded as H.264. Those units are held until
  the choice is made (bounded: a few compressed frames).
- A PCD/PLY file holds every point of its cloud: ``x, y, z`` as positions (float32) and
  every other field as a named attribute of its own type; its name carries the capture
  time in ns (zero padded, so names sort by time).
- A record that does not decode raises ValueError from ``write`` and leaves no row and no
  file (the caller counts it as corrupt and goes on).
"""

from __future__ import annotations

import csv
import itertools
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from broker.records import Record

from .errors import ExportError
from .kinds import CAMERA, POINTCLOUD, VIDEO_ENCODINGS
from .mp4 import Mp4Remuxer, Mp4Writer

CLOUD_FORMATS = ("pcd", "ply")
REMUX_PROBE_FRAMES = 16  # H.264 units looked at, from the first keyframe, before choosing remux or re-encode
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


def safe_name(topic: str) -> str:
    """A file name for a topic (topic names are already file-safe; this is belt and braces)."""
    name = _UNSAFE.sub("_", topic).lstrip(".")
    return name or "topic"


class VideoTrack:
    """One camera topic's MP4 (edge.export.mp4: H.264, timed by capture times) and frames CSV."""

    def __init__(self, root: Path, topic: str):
        self.topic = topic
        self.video_name = f"{safe_name(topic)}.mp4"
        self.index_name = f"{safe_name(topic)}.frames.csv"
        self.video_path = root / self.video_name
        # the index lives as long as the track (closed by close()), not one block
        self._csv_file = open(root / self.index_name, "w", newline="", encoding="utf-8")  # noqa: SIM115
        self._csv = csv.writer(self._csv_file)
        self._csv.writerow(["index", "capture_ns", "offset"])
        self.writer: Mp4Writer | Mp4Remuxer | None = None
        self.frames = 0
        self.resized = 0
        self.size: tuple[int, int] | None = None
        self.first_ns: int | None = None
        self.last_ns: int | None = None
        self.video: dict[str, Any] = {}
        self.decoder: Any = None  # a VideoDecoder once H.265 or B-frame H.264 is being re-encoded
        self.video_encoding: str | None = None
        self.skipped_before_keyframe = 0
        self.undecodable = 0  # held units that did not decode once decoding was chosen
        self._probe: list[Record] = []  # video units from the first keyframe, until remux or decode is chosen

    def add(self, record: Record) -> None:
        encoding = record.header("encoding")
        if encoding in VIDEO_ENCODINGS or self.video_encoding is not None:
            self._add_video(record, encoding or "")
            return
        from drivers.camera.encoding import decode_frame

        image = decode_frame(record.value, record.headers)  # a corrupt frame is refused here, before any row
        self._write(image, int(record.timestamp), record.offset)

    def _add_video(self, record: Record, encoding: str) -> None:
        from drivers.camera.video import is_keyframe

        if self.video_encoding is None:
            if not is_keyframe(record.headers):
                self.skipped_before_keyframe += 1
                raise ValueError(f"{encoding} delta frame before the first keyframe: cannot be decoded")
            if self.writer is not None:
                raise ValueError(f"a {encoding} record on {self.topic}, whose earlier frames were images")
            self.video_encoding = encoding
        elif encoding != self.video_encoding:
            raise ValueError(f"a {encoding or 'non-video'} record in a {self.video_encoding} video")
        if self.writer is None and self.decoder is None:
            self._probe.append(record)
            if len(self._probe) >= REMUX_PROBE_FRAMES and (errors := self._choose_remux_or_decode()):
                raise ValueError(f"{len(errors)} of the first {REMUX_PROBE_FRAMES} frames did not decode ({errors[0]})")
        elif isinstance(self.writer, Mp4Remuxer):
            self._remux(record)
        else:
            self._decode(record)

    def _choose_remux_or_decode(self) -> list[str]:
        """Remux or decode the held units (module docstring); the errors of those that did not decode."""
        held, self._probe = self._probe, []
        stamps = [r.timestamp for r in held]
        if self.video_encoding == "h264" and all(a < b for a, b in itertools.pairwise(stamps)):
            self.writer = Mp4Remuxer(self.video_path, bytes(held[0].value))
            self.size = (self.writer.width, self.writer.height)
            for record in held:
                self._remux(record)
            return []
        from drivers.camera.video import VideoDecoder

        self.decoder = VideoDecoder(self.video_encoding or "")
        errors = []
        for record in held:
            try:
                self._decode(record)
            except ValueError as exc:
                errors.append(f"offset {record.offset}: {exc}")
        self.undecodable += len(errors)
        return errors

    def _remux(self, record: Record) -> None:
        from drivers.camera.video import is_keyframe

        remuxer = self.writer
        if not isinstance(remuxer, Mp4Remuxer):
            raise ExportError(f"{self.topic}: remuxing without a remuxer")
        ts = int(record.timestamp)
        remuxer.add(bytes(record.value), ts, is_keyframe(record.headers))
        self._row(ts, record.offset)

    def _decode(self, record: Record) -> None:
        # decoded frames may come out later than their record: each carries its record's time and offset
        for image, (ts, offset) in self.decoder.decode(record.value, record.headers,
                                                       (int(record.timestamp), record.offset)):
            self._write(image, ts, offset)

    def _write(self, image: np.ndarray, ts: int, offset: int) -> None:
        if isinstance(self.writer, Mp4Remuxer):
            raise ValueError(f"an image record in the remuxed {self.video_encoding} video of {self.topic}")
        if self.writer is None:
            self.size = (image.shape[1], image.shape[0])
            self.writer = Mp4Writer(self.video_path, *self.size)
        if (image.shape[1], image.shape[0]) != self.size:
            import cv2

            image = cv2.resize(image, self.size, interpolation=cv2.INTER_AREA)
            self.resized += 1
        self.writer.add(image, ts)
        self._row(ts, offset)

    def _row(self, ts: int, offset: int) -> None:
        self._csv.writerow([self.frames, ts, offset])
        self.frames += 1
        if self.first_ns is None:
            self.first_ns = ts
        self.last_ns = ts

    def finish(self) -> dict[str, Any]:
        if self._probe:
            self._choose_remux_or_decode()
        if self.decoder is not None:
            for image, (ts, offset) in self.decoder.flush():
                self._write(image, ts, offset)
        if self.writer is not None:
            self.video = self.writer.finish()
            self.writer = None
        self.close()
        duration = self.video.get("duration_s")
        return {"kind": CAMERA, "frames": self.frames, "video": self.video_name if self.frames else None,
                "index": self.index_name, "codec": self.video.get("codec"), "duration_s": duration,
                "fps": round(self.frames / duration, 3) if duration else None,
                "retimed": self.video.get("retimed", 0),
                "width": self.size[0] if self.size else None, "height": self.size[1] if self.size else None,
                "resized": self.resized, "first_ns": self.first_ns, "last_ns": self.last_ns,
                "remuxed": self.video.get("remuxed", False),
                "skipped_before_keyframe": self.skipped_before_keyframe, "undecodable": self.undecodable}

    def close(self) -> None:
        if self.writer is not None:
            self.writer.abort()
            self.writer = None
        if not self._csv_file.closed:
            self._csv_file.close()


class CloudFolder:
    """One LiDAR topic's folder of clouds and its index."""

    def __init__(self, root: Path, topic: str, cloud_format: str):
        self.topic = topic
        self.cloud_format = cloud_format
        self.folder_name = safe_name(topic)
        self.folder = root / self.folder_name
        self.folder.mkdir()
        # the index lives as long as the folder (closed by close()), not one block
        self._csv_file = open(self.folder / "index.csv", "w", newline="", encoding="utf-8")  # noqa: SIM115
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
        for index, axis in enumerate("xyz"):
            xyz[:, index] = cloud[axis]
        pc.point.positions = o3d.core.Tensor.from_numpy(xyz)
        for name in names:
            if name in ("x", "y", "z"):
                continue
            column = np.ascontiguousarray(cloud[name].astype(cloud.dtype[name].newbyteorder("=")).reshape(-1, 1))
            pc.point[name] = o3d.core.Tensor.from_numpy(column)
        path = self.folder / file_name
        if not o3d.t.io.write_point_cloud(path, pc, write_ascii=False, compressed=False):
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
        for module, extra in (("cv2", "sensors"), ("av", "sensors"), ("open3d", "pointcloud")):
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
