"""Ouster OS0 / OS1 / OS2 / OSDome lidar packets + sensor metadata JSON → full rotations.

Owns: the Ouster metadata (both the legacy flat JSON of firmware ≤ 2.1 and the nested
JSON of 2.2+) and the lidar data packets of the profiles below, decoded with numpy, in
batches. Matches ``ouster-sdk`` (Ouster's own decoder; not a dependency: its pinned
Flask / psutil / click conflict with ours): the tests compare point positions with its
``XYZLut`` on real captures from its repository.

Packet (``OusterFormat``), little-endian, columns_per_packet columns of H pixels:

    LEGACY (no packet header or footer)
        column: timestamp u64 ns | measurement_id u16 | frame_id u16 | encoder u32 |
                H pixels × 12 bytes | status u32 (bit 0: valid)
        pixel:  range bits 0-19 (mm) | reflectivity byte 4 | signal u16 @6 | near-IR u16 @8
    current profiles: packet header 32 bytes (packet_type u16, frame_id u16 @2, ...),
        column: timestamp u64 | measurement_id u16 | status u16 (bit 0: valid) | H pixels,
        packet footer 32 bytes
        RNG19_RFL8_SIG16_NIR16       12-byte pixel: range bits 0-18 | reflectivity @4 |
                                      signal u16 @6 | near-IR u16 @8
        RNG19_RFL8_SIG16_NIR16_DUAL  16-byte pixel: range bits 0-18 | reflectivity @3 |
                                      range2 bits 32-50 | reflectivity2 @7 | signal @8 |
                                      signal2 @10 | near-IR @12
        RNG15_RFL8_NIR8              4-byte pixel: range bits 0-14 × 8 mm | reflectivity @2

Points (``SENSOR_POINT_DTYPE``) in the sensor frame (Ouster's, which is REP-103: x forward
away from the connector, y left, z up; metres): for the pixel of beam (row) i in column
c of a W-column frame, θe = 2π(1 − c/W), θa = −azimuth_i, φ = altitude_i, n = the lidar
origin to beam origin distance:
    p = (r − n)·(cos(θe+θa)·cos φ, sin(θe+θa)·cos φ, sin φ) + n·(cos θe, sin θe, 0)
then the metadata's lidar_to_sensor_transform (mm → m). ``ring`` = beam rank by altitude
(0 lowest), ``laser`` = the beam (row), ``intensity`` = reflectivity, ``time`` = column
timestamp − the frame's first, ``return_type`` strongest (range) / second (range2, dual
profiles). Zero ranges and columns not flagged valid are dropped.

Packet loss and reordering are counted in ``loss`` (loss.py) from each packet's frame_id
and first measurement_id.

Frames: a new one starts when the packet's frame_id changes. ``capture_ns`` is the frame's
first column timestamp when the sensor clock agrees with the arrival clock within
``max_clock_skew_s`` (PTP / GPS), else the arrival time of its first packet.
Bad packets are skipped and counted in ``stats.skipped`` (wrong_size) like the Velodyne
decoder's; a metadata file that cannot be used raises ``CalibrationError`` naming it.
"""

from __future__ import annotations

import itertools
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeGuard

import numpy as np

from ..pointcloud import RETURN_SECOND, RETURN_STRONGEST, SENSOR_POINT_DTYPE
from .calibration import CalibrationError, read_calibration_text
from .frame import LidarFrame
from .identify import ModelEvidence
from .loss import PacketLoss

DEFAULT_OUSTER_PORT = 7502
# profile -> (pixel bytes, [(range byte offset, range bits, range unit mm, reflectivity offset, return type)])
PROFILES = {
    "LEGACY": (12, [(0, 20, 1, 4, RETURN_STRONGEST)]),
    "RNG19_RFL8_SIG16_NIR16": (12, [(0, 19, 1, 4, RETURN_STRONGEST)]),
    "RNG19_RFL8_SIG16_NIR16_DUAL": (16, [(0, 19, 1, 3, RETURN_STRONGEST), (4, 19, 1, 7, RETURN_SECOND)]),
    "RNG15_RFL8_NIR8": (4, [(0, 15, 8, 2, RETURN_STRONGEST)]),
}


@dataclass(frozen=True, eq=False)
class OusterMetadata:
    """What decoding needs from an Ouster sensor metadata JSON."""

    prod_line: str
    profile: str
    columns_per_frame: int
    columns_per_packet: int
    pixels_per_column: int
    altitude_deg: np.ndarray
    azimuth_deg: np.ndarray
    beam_origin_mm: float
    lidar_to_sensor: np.ndarray  # (4, 4), translation in mm
    udp_port_lidar: int
    origin: str

    @property
    def packet_size(self) -> int:
        pixel = PROFILES[self.profile][0]
        if self.profile == "LEGACY":
            return self.columns_per_packet * (16 + self.pixels_per_column * pixel + 4)
        return 32 + self.columns_per_packet * (12 + self.pixels_per_column * pixel) + 32


def load_ouster_metadata(path: str | os.PathLike[str]) -> OusterMetadata:
    """Read an Ouster sensor metadata JSON (legacy flat or nested form)."""
    path = Path(path)
    text = read_calibration_text(path)
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise CalibrationError(f"Ouster metadata {path} is not JSON: {exc}") from None
    if not isinstance(document, dict):
        raise CalibrationError(f"{path} is not an Ouster sensor metadata object")
    nested = "lidar_data_format" in document
    data_format = document.get("lidar_data_format" if nested else "data_format") or {}
    beams = document.get("beam_intrinsics", {}) if nested else document
    sensor = document.get("sensor_info", {}) if nested else document
    config = document.get("config_params", {}) if nested else {}
    transform = (document.get("lidar_intrinsics", {}) if nested else document).get("lidar_to_sensor_transform")
    try:
        profile = data_format.get("udp_profile_lidar") or config.get("udp_profile_lidar") or "LEGACY"
        meta = OusterMetadata(
            prod_line=str(sensor.get("prod_line", "Ouster")), profile=str(profile),
            columns_per_frame=int(data_format["columns_per_frame"]),
            columns_per_packet=int(data_format["columns_per_packet"]),
            pixels_per_column=int(data_format["pixels_per_column"]),
            altitude_deg=np.asarray(beams["beam_altitude_angles"], np.float64),
            azimuth_deg=np.asarray(beams["beam_azimuth_angles"], np.float64),
            beam_origin_mm=float(beams["lidar_origin_to_beam_origin_mm"]),
            lidar_to_sensor=np.asarray(transform, np.float64).reshape(4, 4),
            udp_port_lidar=int(config.get("udp_port_lidar") or DEFAULT_OUSTER_PORT), origin=str(path))
    except (KeyError, TypeError, ValueError) as exc:
        raise CalibrationError(
            f"{path}: not a usable Ouster sensor metadata JSON ({type(exc).__name__}: {exc})") from None
    if meta.profile not in PROFILES:
        raise CalibrationError(f"{path}: UDP lidar profile {meta.profile!r} is not decoded here "
                               f"(have: {', '.join(PROFILES)})")
    rows = meta.pixels_per_column
    if meta.altitude_deg.shape != (rows,) or meta.azimuth_deg.shape != (rows,):
        raise CalibrationError(f"{path}: {rows} pixels per column but {meta.altitude_deg.size} altitude and "
                               f"{meta.azimuth_deg.size} azimuth angles")
    return meta


def _concatenate(parts: list[np.ndarray]) -> np.ndarray:
    """Point arrays joined as bytes (numpy joins structured arrays field by field, ~40× slower)."""
    if len(parts) == 1:
        return parts[0]
    if not parts:
        return np.empty(0, SENSOR_POINT_DTYPE)
    return np.concatenate([part.view(np.uint8) for part in parts]).view(SENSOR_POINT_DTYPE)


def is_ouster_metadata(calibration: object) -> TypeGuard[str | os.PathLike[str]]:
    return isinstance(calibration, (str, os.PathLike)) and Path(calibration).suffix.lower() == ".json"


class OusterDecoder:
    """Stateful packet → rotation decoder for one Ouster stream; the ``decode`` /
    ``flush`` / ``stats`` / ``evidence`` contract of ``VelodyneDecoder``."""

    def __init__(self, metadata: str | os.PathLike[str] | OusterMetadata, *, source: str = "ouster",
                 max_clock_skew_s: float = 1.0):
        from .velodyne import DecoderStats  # the shared counters

        self.meta = metadata if isinstance(metadata, OusterMetadata) else load_ouster_metadata(metadata)
        self.source = source
        self.stats = DecoderStats()
        self.packet_size = self.meta.packet_size
        self.port = self.meta.udp_port_lidar
        self.max_clock_skew_ns = int(max_clock_skew_s * 1e9)
        self.evidence = ModelEvidence(model=self.meta.prod_line, decided_by="metadata", product_id=None,
                                      product_id_says=None, packet_interval_us=None, packet_interval_says=None,
                                      same_laser_pairs=None, firing_pattern_says=None,
                                      calibration_lasers=self.meta.pixels_per_column, calibration=self.meta.origin)
        self._build_tables()
        self.loss = PacketLoss(wrap=65536 * self.meta.columns_per_frame)  # from frame_id and measurement_id
        self._frame_id: int | None = None
        self._pending: list[np.ndarray] = []
        self._pending_first: tuple[int, int] | None = None  # (column timestamp ns, arrival ns)
        self._seq = 0

    @property
    def model(self) -> str:
        return self.meta.prod_line

    def _build_tables(self) -> None:
        m = self.meta
        rows, width = m.pixels_per_column, m.columns_per_frame
        columns = np.arange(width, dtype=np.float64)
        encoder = 2 * np.pi * (1 - columns / width)  # (W,)
        azimuth = -np.deg2rad(m.azimuth_deg)  # (H,)
        altitude = np.deg2rad(m.altitude_deg)
        angle = encoder[:, None] + azimuth[None, :]  # (W, H)
        direction = np.stack([np.cos(angle) * np.cos(altitude), np.sin(angle) * np.cos(altitude),
                              np.broadcast_to(np.sin(altitude), angle.shape)], axis=-1)  # (W, H, 3)
        n = m.beam_origin_mm
        offset = np.stack([np.cos(encoder)[:, None] * n - direction[..., 0] * n,
                           np.sin(encoder)[:, None] * n - direction[..., 1] * n, -direction[..., 2] * n], axis=-1)
        rotation, translation = m.lidar_to_sensor[:3, :3], m.lidar_to_sensor[:3, 3]
        self._direction = (direction @ rotation.T).astype(np.float32)  # metres per mm of range × 1000
        self._offset_m = ((offset @ rotation.T + translation) / 1000.0).astype(np.float32)
        self._ring = np.argsort(np.argsort(m.altitude_deg, kind="stable"), kind="stable").astype(np.uint16)
        self._laser = np.arange(rows, dtype=np.uint16)
        pixel_bytes, returns = PROFILES[m.profile]
        legacy = m.profile == "LEGACY"
        column_header = 16 if legacy else 12
        self._column_bytes = column_header + rows * pixel_bytes + (4 if legacy else 0)
        self._packet_header = 0 if legacy else 32
        self._pixel_bytes, self._returns, self._legacy = pixel_bytes, returns, legacy
        self._column_header = column_header

    def decode_payloads(self, packets: Iterable[tuple[int, bytes | memoryview]]) -> list[LidarFrame]:
        times, chunks, wrong = [], [], 0
        for arrival_ns, payload in packets:
            if len(payload) == self.packet_size:
                times.append(arrival_ns)
                chunks.append(payload)
            else:
                wrong += 1
        self.reject("wrong_size", wrong, f"an Ouster {self.meta.profile} lidar packet is {self.packet_size} bytes")
        if not chunks:
            return []
        return self.decode(np.frombuffer(b"".join(chunks), np.uint8).reshape(-1, self.packet_size),
                           np.asarray(times, np.int64))

    def reject(self, reason: str, count: int, detail: str) -> None:
        if count > 0:
            self.stats.packets += count
            self.stats.skipped[reason] += count

    def decode(self, payloads: np.ndarray, arrival_ns: np.ndarray) -> list[LidarFrame]:
        payloads = np.asarray(payloads)
        if payloads.dtype != np.uint8 or payloads.ndim != 2 or payloads.shape[1] != self.packet_size:
            raise ValueError(
                f"payloads must be an (N, {self.packet_size}) uint8 array, got {payloads.dtype} {payloads.shape}")
        arrival_ns = np.asarray(arrival_ns, np.int64).reshape(-1)
        n = payloads.shape[0]
        self.stats.packets += n
        if n == 0:
            return []
        m = self.meta
        cols = payloads[:, self._packet_header:self._packet_header + m.columns_per_packet * self._column_bytes]
        cols = np.ascontiguousarray(cols).reshape(n, m.columns_per_packet, self._column_bytes)
        timestamp = cols[:, :, 0:8].copy().view("<i8")[..., 0]  # (n, C) ns; signed: differences stay in range
        measurement = cols[:, :, 8:10].copy().view("<u2")[..., 0].astype(np.intp)
        if self._legacy:
            frame_id = cols[:, 0, 10:12].copy().view("<u2")[:, 0]
            status = cols[:, :, -4:].copy().view("<u4")[..., 0]
        else:
            frame_id = payloads[:, 2:4].copy().view("<u2")[:, 0]
            status = cols[:, :, 10:12].copy().view("<u2")[..., 0]
        valid_column = ((status & 1) == 1) & (measurement < m.columns_per_frame)
        self.loss.update(frame_id.astype(np.int64) * m.columns_per_frame + measurement[:, 0], m.columns_per_packet)
        pixels = cols[:, :, self._column_header:self._column_header + m.pixels_per_column * self._pixel_bytes]
        pixels = pixels.reshape(n, m.columns_per_packet, m.pixels_per_column, self._pixel_bytes)
        self.stats.decoded += n

        frames: list[LidarFrame] = []
        starts = np.flatnonzero(np.concatenate(([self._frame_id is not None and frame_id[0] != self._frame_id],
                                                frame_id[1:] != frame_id[:-1])))
        bounds = [0, *starts.tolist(), n]
        for begin, end in itertools.pairwise(bounds):
            if begin == end:
                continue
            starts_new_frame = begin > 0 or (self._frame_id is not None and frame_id[begin] != self._frame_id)
            if starts_new_frame and self._pending_first is not None:
                frames.append(self._emit(self._pending_first))
            self._frame_id = int(frame_id[begin])
            first = self._pending_first
            if first is None:  # the frame's first valid column (an azimuth window leaves others empty)
                valid = timestamp[begin:end][valid_column[begin:end]]
                first = self._pending_first = (int(valid[0] if valid.size else timestamp[begin, 0]),
                                               int(arrival_ns[begin]))
            self._pending.append(self._points(first[0], pixels[begin:end], timestamp[begin:end],
                                              measurement[begin:end], valid_column[begin:end]))
        return frames

    def _points(self, first_ns: int, pixels: np.ndarray, timestamp: np.ndarray, measurement: np.ndarray,
                valid_column: np.ndarray) -> np.ndarray:
        """The returns of (n, C) columns: dense (n, C, H) arrays per return, compressed once;
        point times relative to the frame's first column at ``first_ns``."""
        n, columns, rows = pixels.shape[:3]
        direction = self._direction.take(measurement, axis=0, mode="clip")  # (n, C, H, 3); invalid ids masked below
        offset = self._offset_m.take(measurement, axis=0, mode="clip")
        time_s = ((timestamp - first_ns) * 1e-9).astype(np.float32)
        parts = []
        for offset_bytes, bits, unit_mm, reflectivity_at, return_type in self._returns:
            raw = np.ascontiguousarray(pixels[..., offset_bytes:offset_bytes + 4]).view("<u4")[..., 0]
            range_m = (raw & ((1 << bits) - 1)).astype(np.float32)
            range_m *= unit_mm / 1000.0
            dense = np.empty((n, columns, rows), SENSOR_POINT_DTYPE)
            for axis, name in enumerate(("x", "y", "z")):
                np.multiply(direction[..., axis], range_m, out=dense[name])
                dense[name] += offset[..., axis]
            dense["intensity"] = pixels[..., reflectivity_at]
            dense["ring"] = self._ring
            dense["laser"] = self._laser
            dense["return_type"] = return_type
            dense["time"] = time_s[:, :, None]
            keep = np.flatnonzero((range_m > 0) & valid_column[:, :, None])
            parts.append(dense.reshape(-1).take(keep))
        return _concatenate(parts)

    def flush(self) -> LidarFrame | None:
        frame = self._emit(self._pending_first) if self._pending_first is not None else None
        self._frame_id = None
        return frame

    def _emit(self, first: tuple[int, int]) -> LidarFrame:
        sensor_ns, arrival_ns = first
        capture_ns = sensor_ns if abs(sensor_ns - arrival_ns) <= self.max_clock_skew_ns else arrival_ns
        points = _concatenate(self._pending)
        frame = LidarFrame(capture_ns=capture_ns, points=points, model=self.meta.prod_line, seq=self._seq)
        self._pending, self._pending_first = [], None
        self._seq += 1
        self.stats.frames += 1
        self.stats.points += points.shape[0]
        return frame
