"""What every LiDAR source yields, and the errors a source raises.

Owns: ``LidarFrame`` (one full rotation, or one file of a PCD/PLY directory, as a
``POINT_DTYPE``-compatible array, Velodyne and sim: ``SENSOR_POINT_DTYPE`` in REP-103 axes,
stamped with its capture time) and the typed errors of the LiDAR
sources. The errors subclass the driver runtime's ``SensorError`` so the runtime reports
them (``sensor_lost``) and reopens the source with backoff; the message always names the
source (file, directory or ``udp://host:port``) and what was wrong.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from drivers.runtime import SensorError


@dataclass(frozen=True, eq=False)
class LidarFrame:
    """One point cloud: ``points`` holds at least the ``drivers.pointcloud.POINT_DTYPE`` fields; its
    ``time`` field is each point's offset in seconds from ``capture_ns``."""

    capture_ns: int  # capture time of the first firing of the frame (ns since the Unix epoch)
    points: np.ndarray  # POINT_DTYPE, in the sensor's firing order
    model: str  # "VLP-16", "HDL-32E", "pcd", "sim:VLP-16", ...
    seq: int  # per-source frame counter from 0, monotonic across loops of a file source
    axes: str | None = "REP-103"  # the points' axes (pointcloud.py ``axes`` header); None: as the file has them


class LidarSourceError(SensorError):
    """A LiDAR source failed; the message names the source and what was wrong."""


class LidarInputError(LidarSourceError):
    """Bad input: missing or unreadable file, not a pcap, empty directory, bad calibration."""


class LidarTimeoutError(LidarSourceError):
    """A live source received no packets for the configured time (sensor gone?)."""


class LidarModelMismatchError(LidarInputError):
    """The packets come from another model than the given calibration is for (laser counts
    differ): decoding would give a wrong cloud, so the source stops instead."""
