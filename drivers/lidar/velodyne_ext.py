"""Velodyne models decoded by the reference decoder ``velodyne_decoder`` (PyPI, C++ core).

Owns: VLP-32C, HDL-64E S2/S3, VLS-128 and Alpha Prime streams, whose packet layouts our
vectorised decoder (velodyne.py: VLP-16 / Puck / HDL-32E) does not implement. The
``velodyne_decoder`` package (the ``velodyne`` extra) is imported only when such a stream
appears; without it the stream is refused with a ``LidarInputError`` naming the extra.

Guarantees, matching velodyne.py's contract:

- points come out as ``SENSOR_POINT_DTYPE`` in REP-103 axes (x forward, y left, z up:
  the reference's own frame), ``ring`` = beam by elevation (0 lowest, the reference's
  numbering), ``laser`` = the laser id of that ring in the calibration, ``return_type``
  mapped to pointcloud.py's codes, ``intensity`` as reported; returns nearer than
  ``MIN_RANGE_M`` or farther than ``MAX_RANGE_M`` are dropped (the reference's filter,
  opened wide: only zero-distance "no return" slots go).
- frames are full rotations: a new one starts at the packet whose first block azimuth is
  below the previous packet's (per packet, not per block as VeloView's rule for the
  models velodyne.py decodes).
- time: ``capture_ns`` is the frame's first firing on the clock of the packets' arrival
  (pcap record or host receive time); each point's ``time`` is from it, in seconds.
- packets the reference decoder refuses (damaged) are counted in ``stats.skipped``
  (``reference_refused``) with a warning; the stream goes on.
- calibration: the reference's bundled table for the model, or a ROS velodyne YAML file
  (``--calibration x.yaml``; required for the HDL-64E, whose table is per unit).
"""

from __future__ import annotations

import logging
import os
from types import ModuleType
from typing import TYPE_CHECKING, Any

import numpy as np

from broker.logs import log_event

from ..pointcloud import RETURN_BOTH, RETURN_LAST, RETURN_STRONGEST, RETURN_UNKNOWN, SENSOR_POINT_DTYPE
from .frame import LidarFrame, LidarInputError

if TYPE_CHECKING:
    from .velodyne import DecoderStats

logger = logging.getLogger("drivers.lidar.velodyne")

# our model name -> (velodyne_decoder.Model member, lasers)
EXTERNAL_MODELS = {"VLP-32C": ("VLP32C", 32), "HDL-64E S2": ("HDL64E_S2", 64), "HDL-64E S3": ("HDL64E_S3", 64),
                   "VLS-128": ("VLS128", 128), "Alpha Prime": ("AlphaPrime", 128)}
MIN_RANGE_M, MAX_RANGE_M = 0.0, 1000.0
# the distance unit fixed by these models' packet format, whatever a calibration table says
# (ROS and Autoware drivers hard-code it too; nebula's VLS128.yaml says 0.007: ranges 1.75x long)
FIXED_DISTANCE_RESOLUTION_M = {"VLP-32C": 0.004, "VLS-128": 0.004, "Alpha Prime": 0.004}
# velodyne_decoder's ReturnMode values (STRONGEST 1, LAST 2, BOTH 3) -> ours (the same codes)
_REFERENCE_RETURN = np.full(256, RETURN_UNKNOWN, np.uint8)
_REFERENCE_RETURN[1], _REFERENCE_RETURN[2], _REFERENCE_RETURN[3] = RETURN_STRONGEST, RETURN_LAST, RETURN_BOTH


def _laser_of_ring(calibration: Any) -> np.ndarray:  # a velodyne_decoder.Calibration (untyped library)
    """Laser id of each ring (beam rank by elevation, 0 lowest) of a reference calibration."""
    import yaml  # a dependency of velodyne_decoder

    lasers = yaml.safe_load(calibration.to_string())["lasers"]
    vertical = np.array([laser["vert_correction"] for laser in sorted(lasers, key=lambda laser: laser["laser_id"])])
    return np.argsort(vertical, kind="stable").astype(np.uint16)


def _import_reference() -> ModuleType:
    try:
        import velodyne_decoder
    except ImportError as exc:
        raise LidarInputError(f"decoding this model needs the 'velodyne' extra (velodyne-decoder): {exc}") from None
    module: ModuleType = velodyne_decoder  # untyped library: its attributes are Any
    return module


class ExternalVelodyneDecoder:
    """Packet → rotation decoding of one stream through ``velodyne_decoder``; the
    ``decode`` / ``flush`` contract of ``VelodyneDecoder``, which owns it."""

    def __init__(self, model: str, calibration: str | os.PathLike[str] | None, stats: DecoderStats, source: str):
        reference = _import_reference()
        if model not in EXTERNAL_MODELS:
            raise LidarInputError(f"{source}: no external decoder for {model!r}")
        self.model, self.source, self.stats = model, source, stats
        config = reference.Config(model=getattr(reference.Model, EXTERNAL_MODELS[model][0]),
                                  min_range=MIN_RANGE_M, max_range=MAX_RANGE_M)
        if calibration is not None:
            import yaml  # a dependency of velodyne_decoder

            from .calibration import read_ros_yaml_table

            try:
                table = read_ros_yaml_table(calibration)  # CalibrationError (a ValueError) naming the file
                lasers = table["lasers"]  # a non-empty list (checked by read_ros_yaml_table)
                table.setdefault("num_lasers", len(lasers) if isinstance(lasers, list) else 0)
                stated = table.get("distance_resolution")
                table["distance_resolution"] = FIXED_DISTANCE_RESOLUTION_M.get(model, stated or 0.002)
                if stated is not None and stated != table["distance_resolution"]:
                    log_event(logger, logging.WARNING, "lidar_calibration_overridden", source=source,
                              calibration=str(calibration), field="distance_resolution", stated=stated,
                              used=table["distance_resolution"], reason=f"fixed by the {model} packet format")
                config.calibration = reference.Calibration.from_string(yaml.safe_dump(table))
            except (RuntimeError, ValueError, OSError) as exc:
                raise LidarInputError(f"{source}: calibration {calibration} is not a ROS velodyne YAML the "
                                      f"{model} decoder reads: {exc}") from None
        elif model.startswith("HDL-64E"):
            raise LidarInputError(f"{source}: an {model} needs its unit's calibration file (--calibration x.yaml)")
        elif model == "Alpha Prime":  # bundled as a file, not in the compiled-in table
            config.calibration = reference.calibrations.get_bundled_calibration("Alpha Prime.yml")
        else:
            config.calibration = reference.Calibration.default_calibs[config.model]
        self._laser_of_ring = _laser_of_ring(config.calibration)
        self._reference = reference
        self._decoder = reference.ScanDecoder(config)
        self._pending: list[tuple[float, bytes]] = []
        self._last_azimuth: int | None = None
        self._seq = 0

    def decode(self, payloads: np.ndarray, arrival_ns: np.ndarray) -> list[LidarFrame]:
        first_azimuth = payloads[:, 2].astype(np.int32) | (payloads[:, 3].astype(np.int32) << 8)
        previous = np.empty_like(first_azimuth)
        previous[0] = first_azimuth[0] if self._last_azimuth is None else self._last_azimuth
        previous[1:] = first_azimuth[:-1]
        self._last_azimuth = int(first_azimuth[-1])
        starts = set(np.flatnonzero(first_azimuth < previous).tolist())
        frames = []
        for index in range(payloads.shape[0]):
            if index in starts and self._pending:
                frame = self._emit()
                if frame is not None:
                    frames.append(frame)
            self._pending.append((int(arrival_ns[index]) / 1e9, payloads[index].tobytes()))
        self.stats.decoded += payloads.shape[0]
        return frames

    def flush(self) -> LidarFrame | None:
        frame = self._emit() if self._pending else None
        self._last_azimuth = None
        return frame

    def _emit(self) -> LidarFrame | None:
        """The rotation of the pending packets; None (the packets counted as skipped,
        ``reference_refused``, with a warning) when the reference decoder refuses them."""
        packets = self._reference.PacketVector()
        for stamp, payload in self._pending:
            packets.append(self._reference.VelodynePacket(stamp, payload))
        count, self._pending = len(self._pending), []
        try:
            stamp, cloud = self._decoder.decode(packets, as_pcl_structs=True)
        except (RuntimeError, ValueError) as exc:  # damaged packets: bad data, not a failed source
            self.stats.skipped["reference_refused"] += count
            log_event(logger, logging.WARNING, "lidar_packets_skipped", source=self.source, reason="reference_refused",
                      detail=f"the {self.model} decoder refused a rotation's packets: {exc}", total=count)
            return None
        points = np.empty(cloud.shape[0], SENSOR_POINT_DTYPE)
        first = float(cloud["time"].min()) if cloud.shape[0] else 0.0
        for name in ("x", "y", "z", "intensity"):
            points[name] = cloud[name]
        points["time"] = cloud["time"] - first
        points["ring"] = cloud["ring"]
        points["laser"] = self._laser_of_ring[cloud["ring"]]
        points["return_type"] = _REFERENCE_RETURN[cloud["return_type"]]
        capture_ns = int(np.rint((stamp.host + first) * 1e9))  # numpy scalar: round() keeps its type on numpy 1.x
        frame = LidarFrame(capture_ns=capture_ns, points=points, model=self.model, seq=self._seq)
        self._seq += 1
        self.stats.frames += 1
        self.stats.points += points.shape[0]
        return frame
