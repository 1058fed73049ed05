"""Velodyne data packets → points → full rotations, vectorised with numpy.

Owns: the meaning of a Velodyne data packet and the assembly of rotations. Decoded here:
VLP-16, Puck LITE, Puck Hi-Res (one layout) and HDL-32E; VLP-32C, HDL-64E S2/S3, VLS-128
and Alpha Prime streams are handed to velodyne_ext.py (the reference decoder). Which model
a stream is comes from its packets (identify.py), ``model`` only overriding; a calibration
whose laser count contradicts the packets raises ``LidarModelMismatchError``. Guarantees:

- output matches VeloView (the vendor viewer): same calibration model, same azimuth
  interpolation (VeloView's median block-to-block azimuth step, its firing-time ratios and
  its rounding), same frame split rule (a new frame at the block where the block azimuth
  stops increasing), same point order (packet, block, channel), zero-distance returns
  dropped. The test suite checks this against VeloView's published regression values
  (VLP-16 and HDL-32E captures) and against velodyne_decoder (same points, same rings).
- points are ``SENSOR_POINT_DTYPE`` in the sensor frame by ROS REP-103 (x forward = azimuth
  0, y left, z up). Azimuth α is measured clockwise from forward seen from above,
  elevation ω up from the horizontal; with r the corrected distance and the laser's
  vertical / horizontal offsets v, h:
      x =  (r·cos ω − v·sin ω)·cos α + h·sin α
      y = −(r·cos ω − v·sin ω)·sin α + h·cos α
      z =   r·sin ω + v
  (VeloView's axes: x_vv = −y, y_vv = x.) ``ring``: beam rank by elevation (0 lowest, as
  ROS numbers it); ``laser``: laser id; ``return_type``: the mode byte's strongest / last,
  or in dual return last / both (the last was the strongest; an identical twin dropped) /
  strongest / second (strongest other than the last), judged by reflectivity; a lone return
  (the pair's other slot empty) is both.
- every packet is decoded in batches: one numpy expression per step over all packets of a
  batch, a Python loop only over the (few) azimuth runs when splitting frames.
- packets that cannot be decoded are skipped and counted by reason in ``stats.skipped``,
  warned about (source, problem) at the 1st, 10th, 100th, ... occurrence: wrong size, bad
  block flag or azimuth, another product id than the stream's, unsupported or unknown
  model. Never an exception for bad sensor data (a calibration contradicting the packets
  is a configuration error, not bad data). ``loss`` counts lost / reordered packets.
- time: a frame's ``capture_ns`` is the time of its first firing; each point's ``time`` is
  its firing time minus ``capture_ns``, in seconds, from the model's firing table. Packet
  times come from the sensor's clock, absolute when it agrees with the host / pcap time (a
  GPS/PTP-synchronised sensor), else anchored to the host clock (see clock.py).

Packet layout (1206-byte UDP payload, little-endian), ``PACKET_DTYPE``:

    blocks[12]                                      BLOCK_DTYPE, 100 bytes each
        flag           <u2   0xEEFF (bytes FF EE): a block of lasers 0..31
        azimuth        <u2   hundredths of a degree, 0..35999, of the block's first firing
        returns[32]                                 RETURN_DTYPE, 3 bytes each
            distance       <u2   2 mm units (calibration distLSB), 0 = no return
            reflectivity   u1    0..255
    timestamp_us   <u4   µs past the top of the hour of the first firing of block 0
    return_mode    u1    0x37 strongest | 0x38 last | 0x39 dual (blocks in pairs)
    product_id     u1    0x21 HDL-32E | 0x22 VLP-16, Puck LITE | 0x24 Puck Hi-Res | 0x28 VLP-32C |
                         0xA1 VLS-128 (early VLP-16 firmware also says 0x21; see identify.py)

VLP-16: a block holds two firings of the 16 lasers (channels 16-31 = lasers 0-15 again,
55.296 µs later, azimuth interpolated); HDL-32E: one firing of 32 lasers (46.08 µs).
Channel i fires 2.304 µs (VLP-16) / 1.152 µs (HDL-32E) after channel i-1.
"""

from __future__ import annotations

import itertools
import logging
import math
import os
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from broker.logs import log_event

from ..pointcloud import RETURN_BOTH, RETURN_LAST, RETURN_SECOND, RETURN_STRONGEST, RETURN_UNKNOWN, SENSOR_POINT_DTYPE
from .calibration import PACKET_LAYOUT, Calibration, calibration_laser_count, default_calibration, resolve_calibration
from .clock import HOUR_US, PacketClock, TimeSource
from .frame import LidarFrame, LidarSourceError
from .identify import PACKET_SPAN_US, RETURN_MODE_DUAL, ModelEvidence, identify_model, unsupported_product
from .loss import PacketLoss
from .pcap import PcapError, PcapReader
from .velodyne_ext import EXTERNAL_MODELS, ExternalVelodyneDecoder

if TYPE_CHECKING:  # ouster.py decodes its own packets; named here only as the other decoder a pcap feeds
    from .ouster import OusterDecoder

logger = logging.getLogger("drivers.lidar.velodyne")

PACKET_SIZE = 1206
BLOCKS_PER_PACKET = 12
CHANNELS_PER_BLOCK = 32
BLOCK_FLAG = 0xEEFF
BANK_FLAGS = (0xEEFF, 0xDDFF, 0xCCFF, 0xBBFF)  # HDL-64E upper/lower, VLS-128 banks of 32 lasers
DEFAULT_PORT = 2368

RETURN_DTYPE = np.dtype([("distance", "<u2"), ("reflectivity", "u1")])
BLOCK_DTYPE = np.dtype([("flag", "<u2"), ("azimuth", "<u2"), ("returns", RETURN_DTYPE, (CHANNELS_PER_BLOCK,))])
PACKET_DTYPE = np.dtype(
    [
        ("blocks", BLOCK_DTYPE, (BLOCKS_PER_PACKET,)),
        ("timestamp_us", "<u4"),
        ("return_mode", "u1"),
        ("product_id", "u1"),
    ]
)

RETURN_MODES = {0x37: "strongest", 0x38: "last", 0x39: "dual"}

CHUNK_PACKETS = 64  # packets decoded per numpy pass: the temporaries stay in the CPU cache

# cos/sin of every azimuth in hundredths of a degree, as VeloView tabulates them, indexed
# by an unsigned short (VeloView reduces modulo 36000 after the u16 wrap-around)
_AZIMUTH_RAD = (np.arange(65536, dtype=np.float64) % 36000) / 100.0 * math.pi / 180.0
_COS_AZIMUTH_65536 = np.cos(_AZIMUTH_RAD).astype(np.float32)
_SIN_AZIMUTH_65536 = np.sin(_AZIMUTH_RAD).astype(np.float32)


def _firing_times_us(model: str, dual: bool) -> tuple[np.ndarray, np.ndarray]:
    """(12, 32) firing time of each channel from the packet's first firing, in µs, and
    the (12, 32) fraction of the block-to-block azimuth step VeloView adds to the block
    azimuth for it (computed with VeloView's own arithmetic so roundings agree)."""
    blocks = np.arange(BLOCKS_PER_PACKET, dtype=np.int64)[:, None]
    channels = np.arange(CHANNELS_PER_BLOCK, dtype=np.int64)[None, :]
    step = blocks // 2 if dual else blocks
    if PACKET_LAYOUT[model] == "VLP-16":
        period, channel_gap, sequence_gap = 110.592, 2.304, 55.296
        laser, sequence = channels % 16, channels // 16
        times = (step * period + laser * channel_gap) + sequence * sequence_gap
    else:  # HDL-32E
        period, channel_gap = 46.08, 1.152
        times = step * period + channels * channel_gap
    block_start = step * period + 0.0
    next_block_start = (step + 1) * period + 0.0
    ratio = (times - block_start) / (next_block_start - block_start)
    return times.astype(np.float64), np.broadcast_to(ratio, (BLOCKS_PER_PACKET, CHANNELS_PER_BLOCK)).copy()


_SINGLE_RETURN_TYPE = np.full(256, RETURN_UNKNOWN, np.uint8)  # by the packet's return-mode byte
_SINGLE_RETURN_TYPE[0x37], _SINGLE_RETURN_TYPE[0x38] = RETURN_STRONGEST, RETURN_LAST


def _round_half_away(values: np.ndarray) -> np.ndarray:
    """vtkMath::Round: halves away from zero."""
    rounded: np.ndarray = np.trunc(values + np.where(values >= 0, 0.5, -0.5)).astype(np.int64)
    return rounded


@dataclass
class DecoderStats:
    packets: int = 0  # packets offered to the decoder
    decoded: int = 0  # packets turned into points
    frames: int = 0
    points: int = 0
    skipped: Counter[str] = field(default_factory=Counter)  # reason -> packets


@dataclass
class _ModelTables:
    """Everything per model and calibration the vectorised decode looks up; per-channel
    columns are (32,) float32 so they broadcast over (n, 12, 32) blocks."""

    model: str
    resolution_m: np.float32
    channel_laser: np.ndarray  # (32,) uint16 laser id of each channel of a block
    channel_ring: np.ndarray  # (32,) uint16 its beam's rank by elevation, 0 = lowest
    cos_vertical: np.ndarray
    sin_vertical: np.ndarray
    vertical_offset: np.ndarray
    vertical_offset_sin: np.ndarray  # v·sin ω
    horizontal_offset: np.ndarray
    distance_offset: np.ndarray
    cos_rotation: np.ndarray
    sin_rotation: np.ndarray
    has_rotation: bool
    has_distance_offset: bool
    has_vertical_offset: bool
    has_horizontal_offset: bool
    azimuth_ratio: np.ndarray  # (2, 12, 32) float64, [single, dual return]
    channel_time_s: np.ndarray  # (2, 12, 32) float32, firing time from the block's first firing
    block_offset_ns: np.ndarray  # (2, 12) int64, block's first firing from the packet's
    packet_duration_ns: np.ndarray  # (2,) int64

    @classmethod
    def build(cls, calibration: Calibration) -> _ModelTables:
        model = calibration.model
        channel_laser = np.arange(CHANNELS_PER_BLOCK) % calibration.num_lasers

        def per_channel(values: np.ndarray) -> np.ndarray:
            return np.asarray(values, np.float64)[channel_laser].astype(np.float32)

        vertical = np.deg2rad(calibration.vertical_deg)
        ring_of_laser = np.argsort(np.argsort(calibration.vertical_deg, kind="stable"), kind="stable")
        rotation = np.deg2rad(calibration.rotational_deg)
        single_times, single_ratio = _firing_times_us(model, False)
        dual_times, dual_ratio = _firing_times_us(model, True)
        times_us = np.stack([single_times, dual_times])
        block_offset_us = times_us[:, :, :1]
        period_us = 110.592 if PACKET_LAYOUT[model] == "VLP-16" else 46.08
        return cls(
            model=model,
            resolution_m=np.float32(calibration.distance_resolution_m),
            channel_laser=channel_laser.astype(np.uint16),
            channel_ring=ring_of_laser[channel_laser].astype(np.uint16),
            cos_vertical=per_channel(np.cos(vertical)),
            sin_vertical=per_channel(np.sin(vertical)),
            vertical_offset=per_channel(calibration.vertical_offset_m),
            vertical_offset_sin=per_channel(calibration.vertical_offset_m * np.sin(vertical)),
            horizontal_offset=per_channel(calibration.horizontal_offset_m),
            distance_offset=per_channel(calibration.distance_offset_m),
            cos_rotation=per_channel(np.cos(rotation)),
            sin_rotation=per_channel(np.sin(rotation)),
            has_rotation=bool(np.any(calibration.rotational_deg != 0)),
            has_distance_offset=bool(np.any(calibration.distance_offset_m != 0)),
            has_vertical_offset=bool(np.any(calibration.vertical_offset_m != 0)),
            has_horizontal_offset=bool(np.any(calibration.horizontal_offset_m != 0)),
            azimuth_ratio=np.stack([single_ratio, dual_ratio]),
            channel_time_s=((times_us - block_offset_us) * 1e-6).astype(np.float32),
            block_offset_ns=np.round(block_offset_us[:, :, 0] * 1000).astype(np.int64),
            packet_duration_ns=np.round(np.array([12, 6]) * period_us * 1000).astype(np.int64),
        )


class VelodyneDecoder:
    """Stateful packet → rotation decoder for one sensor stream.

    ``decode(payloads, arrival_ns)`` takes an (N, 1206) uint8 array and returns the
    rotations completed by it; ``flush()`` returns the rotation in progress. The model
    comes from the first packets (identify.py: product id, packet interval, firing
    pattern), ``model`` overriding them; ``calibration`` (a ``Calibration`` or a VeloView
    XML path; default: the model's built-in table) must fit the packets' laser count, else
    ``decode`` raises ``LidarModelMismatchError``. ``evidence`` says what decided."""

    packet_size = PACKET_SIZE  # the datagram size a source should hand over
    port = DEFAULT_PORT  # the sensor's default destination port

    def __init__(
        self,
        calibration: Calibration | str | os.PathLike[str] | None = None,
        model: str | None = None,
        *,
        source: str = "velodyne",
        time_source: TimeSource = "auto",
        max_clock_skew_s: float = 1.0,
    ):
        self.source = source
        self._clock = PacketClock(time_source, int(max_clock_skew_s * 1e9), source)
        self._configured_model = model
        self._calibration_file = calibration if isinstance(calibration, (str, os.PathLike)) else None
        self._calibration_lasers: int | None = None
        self._given_calibration: Calibration | None = None  # for the models decoded here
        if isinstance(calibration, Calibration):
            self._given_calibration = resolve_calibration(calibration, model)
            self._calibration_lasers = calibration.num_lasers
        elif calibration is not None:
            self._calibration_lasers = calibration_laser_count(calibration)
            if model not in EXTERNAL_MODELS and (model is not None or self._calibration_lasers in (16, 32)):
                self._given_calibration = resolve_calibration(calibration, model)
        self._external: ExternalVelodyneDecoder | None = None  # VLP-32C, HDL-64E, VLS-128 (velodyne_ext.py)
        self.loss = PacketLoss(wrap=HOUR_US)  # lost / out-of-order packets, from their timestamps (loss.py)
        self._slot_us: float | None = None
        self.calibration: Calibration | None = None  # known once the stream's model is (see identify.py)
        self.evidence: ModelEvidence | None = None
        self.stats = DecoderStats()
        self._tables: _ModelTables | None = None
        self._stream_product_id: int | None = None
        self._last_azimuth: int | None = None
        self._last_slope = 0
        self._pending: list[np.ndarray] = []
        self._pending_capture_ns: int | None = None
        self._seq = 0
        self._adjustment_cache: dict[int, np.ndarray] = {}

    @property
    def model(self) -> str | None:
        return self.evidence.model if self.evidence else None

    @property
    def clock_offset_ns(self) -> int | None:
        """Host − sensor clock at the last packet (None until one, or with time_source host)."""
        return self._clock.last_offset_ns

    # -- skipping -----------------------------------------------------------------------

    def reject(self, reason: str, count: int, detail: str) -> None:
        """Count ``count`` packets received but not given to ``decode`` (e.g. a datagram of
        the wrong size) as offered and skipped for ``reason``, with the same warnings."""
        self.stats.packets += max(count, 0)
        self._skip(reason, count, detail)

    def _skip(self, reason: str, count: int, detail: str) -> None:
        """Count ``count`` packets skipped for ``reason``; warn at 1, 10, 100, ... of each."""
        if count <= 0:
            return
        before = self.stats.skipped[reason]
        after = before + count
        self.stats.skipped[reason] = after
        if before == 0 or int(math.log10(after)) > int(math.log10(max(before, 1))):
            log_event(logger, logging.WARNING, "lidar_packets_skipped", source=self.source, reason=reason,
                      detail=detail, total=after)

    # -- input forms --------------------------------------------------------------------

    def decode_payloads(self, packets: Iterable[tuple[int, bytes | memoryview]]) -> list[LidarFrame]:
        """Decode ``(arrival_ns, payload)`` pairs of any sizes: wrong sizes are skipped."""
        times: list[int] = []
        chunks: list[bytes | memoryview] = []
        wrong: Counter[int] = Counter()
        for arrival_ns, payload in packets:
            if len(payload) == PACKET_SIZE:
                times.append(arrival_ns)
                chunks.append(payload)
            else:
                wrong[len(payload)] += 1
        if wrong:
            sizes = ", ".join(f"{size} bytes ×{n}" for size, n in sorted(wrong.items()))
            self.reject("wrong_size", sum(wrong.values()), f"payload of {sizes}, a data packet is {PACKET_SIZE}")
        if not chunks:
            return []
        payloads = np.frombuffer(b"".join(chunks), np.uint8).reshape(-1, PACKET_SIZE)
        return self.decode(payloads, np.asarray(times, np.int64))

    def decode(self, payloads: np.ndarray, arrival_ns: np.ndarray) -> list[LidarFrame]:
        """Decode an (N, 1206) uint8 array of data packets received at ``arrival_ns``
        (host or pcap time of each, ns); return the rotations they complete."""
        payloads = np.asarray(payloads)
        arrival_ns = np.asarray(arrival_ns, np.int64).reshape(-1)
        if payloads.dtype != np.uint8 or payloads.ndim != 2 or payloads.shape[1] != PACKET_SIZE:
            raise ValueError(
                f"payloads must be an (N, {PACKET_SIZE}) uint8 array, got {payloads.dtype} {payloads.shape}")
        if arrival_ns.shape[0] != payloads.shape[0]:
            raise ValueError(f"{payloads.shape[0]} payloads but {arrival_ns.shape[0]} arrival times")
        self.stats.packets += payloads.shape[0]
        if payloads.shape[0] == 0:
            return []
        payloads = np.ascontiguousarray(payloads)
        packets = payloads.view(PACKET_DTYPE)[:, 0]
        keep = self._valid_packets(packets)
        if keep is not None:
            packets, arrival_ns, payloads = packets[keep], arrival_ns[keep], payloads[keep]
        if packets.shape[0] == 0 or self.evidence is None:
            return []
        if self._slot_us:
            self.loss.update(packets["timestamp_us"], self._slot_us)
        if self._external is not None:
            return self._external.decode(payloads, arrival_ns)
        self.stats.decoded += packets.shape[0]
        return self._decode_valid(packets, arrival_ns)

    def flush(self) -> LidarFrame | None:
        """The rotation in progress (a partial one), if any; the stream state (framing,
        clock anchoring) is reset, ready for another stream."""
        if self._external is not None:
            return self._external.flush()
        frame = self._emit(self._pending, self._pending_capture_ns) if self._pending_capture_ns is not None else None
        self._pending, self._pending_capture_ns = [], None
        self._last_azimuth, self._last_slope = None, 0
        self._clock.reset()
        return frame

    # -- validation ---------------------------------------------------------------------

    def _valid_packets(self, packets: np.ndarray) -> np.ndarray | None:
        """Mask of decodable packets (None: all are); counts and warns about the rest."""
        blocks = packets["blocks"]
        any_bank = np.all(np.isin(blocks["flag"], BANK_FLAGS), axis=1)
        good_azimuth = np.all(blocks["azimuth"] <= 36000, axis=1)  # 36000 = 0°, as sensors send it
        product = packets["product_id"]
        if self.evidence is None:
            candidates = packets[np.flatnonzero(any_bank & good_azimuth)]
            if not self._identify(candidates):
                ids = ", ".join(sorted({f"0x{p:02x}" for p in product.tolist()}))
                unsupported = unsupported_product(candidates) if candidates.shape[0] else None
                if unsupported:
                    self._skip("unsupported_model", packets.shape[0],
                               f"product id {ids} is a {unsupported}, which this decoder does not handle")
                else:
                    self._skip("unknown_model", packets.shape[0],
                               f"product id {ids}: nothing identifies the model (no known product id, packet "
                               "interval or firing pattern); configure it")
                return np.zeros(packets.shape[0], bool)
        good_flags = any_bank if self._external is not None else np.all(blocks["flag"] == BLOCK_FLAG, axis=1)
        ok = good_flags & good_azimuth
        same_model = product == self._stream_product_id if self._stream_product_id is not None else np.ones_like(ok)
        if ok.all() and same_model.all():
            return None
        self._skip("bad_block_flag", int(np.count_nonzero(~good_flags)),
                  f"a block flag is not a Velodyne bank flag fitting a {self.model} data packet")
        self._skip("bad_azimuth", int(np.count_nonzero(good_flags & ~good_azimuth)),
                   "a block azimuth is over 36000 (360°)")
        other = ok & ~same_model
        if other.any():
            other_ids = sorted({f"0x{p:02x}" for p in product[other].tolist()})
            self._skip("other_model", int(np.count_nonzero(other)),
                      f"product id {', '.join(other_ids)} differs from the stream's 0x{self._stream_product_id:02x}")
        decodable: np.ndarray = ok & same_model
        return decodable

    def _identify(self, packets: np.ndarray) -> bool:
        """Decide the stream's model from its first valid packets (identify.py) and build
        the decode tables; False when nothing can tell yet. Raises
        ``LidarModelMismatchError`` when the packets contradict the given calibration."""
        if packets.shape[0] == 0:
            return False
        given = self._given_calibration
        file = self._calibration_file
        origin = given.origin if given else (str(file) if file is not None else None)
        evidence = identify_model(packets, configured_model=self._configured_model,
                                  calibration_lasers=self._calibration_lasers,
                                  calibration_origin=origin,
                                  source=self.source)
        if evidence is None:
            return False
        self._stream_product_id = int(packets["product_id"][0])
        dual = bool(packets["return_mode"][0] == RETURN_MODE_DUAL)
        nominal = PACKET_SPAN_US.get(PACKET_LAYOUT.get(evidence.model, ""), 0) / (2 if dual else 1)
        self._slot_us = evidence.packet_interval_us if evidence.packet_interval_says or not nominal else nominal
        if evidence.model in EXTERNAL_MODELS:
            if evidence.model.startswith("HDL-64E"):  # its last two bytes cycle through status words
                self._stream_product_id = None
            self._external = ExternalVelodyneDecoder(evidence.model, self._calibration_file, self.stats, self.source)
            self.evidence = evidence
            return True
        self.evidence = evidence
        self.calibration = given if given is not None else default_calibration(evidence.model)
        self._tables = _ModelTables.build(self.calibration)
        self._stream_product_id = int(packets["product_id"][0])
        return True

    # -- time ---------------------------------------------------------------------------

    def _identified(self) -> tuple[ModelEvidence, _ModelTables]:
        """The stream's model and decode tables, which ``_identify`` sets together."""
        if self.evidence is None or self._tables is None:
            raise LidarSourceError(f"{self.source}: decoding before the stream's model is known")
        return self.evidence, self._tables

    def _packet_times_ns(self, tables: _ModelTables, packets: np.ndarray, arrival_ns: np.ndarray,
                         dual: np.ndarray) -> np.ndarray:
        """Time of the first firing of each packet, ns since the epoch (see clock.py)."""
        host_ns = arrival_ns - tables.packet_duration_ns[dual.astype(np.intp)]
        return self._clock.times_ns(packets["timestamp_us"], host_ns)

    # -- the vectorised decode ----------------------------------------------------------

    def _decode_valid(self, packets: np.ndarray, arrival_ns: np.ndarray) -> list[LidarFrame]:
        _, tables = self._identified()
        dual = packets["return_mode"] == RETURN_MODE_DUAL
        packet_ns = self._packet_times_ns(tables, packets, arrival_ns, dual)
        frames: list[LidarFrame] = []
        for begin in range(0, packets.shape[0], CHUNK_PACKETS):  # chunks small enough to stay in cache
            end = begin + CHUNK_PACKETS
            self._decode_chunk(tables, packets[begin:end], packet_ns[begin:end], dual[begin:end], frames)
        return frames

    def _azimuth_adjustments(self, tables: _ModelTables, azimuth_step: np.ndarray, dual: np.ndarray) -> np.ndarray:
        """(n, 12, 32) azimuth added to each channel's block azimuth: VeloView's
        round(step × firing-time ratio), tabulated per distinct (step, return mode)."""
        keys = azimuth_step.astype(np.int64) * 2 + dual
        distinct, inverse = np.unique(keys, return_inverse=True)
        adjustments = np.empty((distinct.shape[0], BLOCKS_PER_PACKET, CHANNELS_PER_BLOCK), np.int32)
        cache = self._adjustment_cache
        for row, key in enumerate(distinct.tolist()):  # a handful of distinct steps a chunk
            table = cache.get(key)
            if table is None:
                if len(cache) > 4096:
                    cache.clear()
                table = cache[key] = _round_half_away((key >> 1) * tables.azimuth_ratio[key & 1]).astype(np.int32)
            adjustments[row] = table
        return adjustments[inverse.reshape(-1)]

    def _decode_chunk(self, t: _ModelTables, packets: np.ndarray, packet_ns: np.ndarray, dual: np.ndarray,
                      frames: list[LidarFrame]) -> None:
        n_packets = packets.shape[0]
        blocks = packets["blocks"]
        azimuth = blocks["azimuth"].astype(np.int32)  # (n, 12)
        returns = blocks["returns"]
        distance = returns["distance"]  # (n, 12, 32)
        mode = dual.astype(np.intp)
        any_dual = bool(dual.any())

        # VeloView's azimuth step of a packet: element 6 of its 11 sorted block-to-block steps
        steps = (azimuth[:, 1:] - azimuth[:, :-1] + 54000) % 36000 - 18000
        azimuth_step = np.sort(steps, axis=1)[:, BLOCKS_PER_PACKET // 2]
        azimuth_index = self._azimuth_adjustments(t, azimuth_step, dual)
        azimuth_index += azimuth[:, :, None]
        azimuth_index &= 0xFFFF  # VeloView's unsigned short; the tables repeat every 36000
        cos_a = _COS_AZIMUTH_65536.take(azimuth_index)
        sin_a = _SIN_AZIMUTH_65536.take(azimuth_index)
        if t.has_rotation:  # azimuth − rotational correction
            cos_a, sin_a = (cos_a * t.cos_rotation + sin_a * t.sin_rotation,
                            sin_a * t.cos_rotation - cos_a * t.sin_rotation)

        # dense (n, 12, 32) points in firing order, compressed once at the end
        dense = np.empty((n_packets, BLOCKS_PER_PACKET, CHANNELS_PER_BLOCK), SENSOR_POINT_DTYPE)
        range_m = distance.astype(np.float32)
        returned = range_m != 0
        range_m *= t.resolution_m
        if t.has_distance_offset:
            range_m += t.distance_offset
        horizontal = range_m * t.cos_vertical
        if t.has_vertical_offset:
            horizontal -= t.vertical_offset_sin
        # REP-103: x forward (azimuth 0), y left (azimuth grows clockwise seen from above)
        np.multiply(horizontal, cos_a, out=dense["x"])
        np.multiply(horizontal, sin_a, out=dense["y"])
        np.negative(dense["y"], out=dense["y"])
        if t.has_horizontal_offset:
            dense["x"] += t.horizontal_offset * sin_a
            dense["y"] += t.horizontal_offset * cos_a
        np.multiply(range_m, t.sin_vertical, out=dense["z"])
        if t.has_vertical_offset:
            dense["z"] += t.vertical_offset
        dense["intensity"] = returns["reflectivity"]
        dense["ring"] = t.channel_ring
        dense["laser"] = t.channel_laser

        # frames: split where the block azimuth stops increasing (VeloView's rule)
        split_blocks = self._split_blocks(azimuth.reshape(-1))
        block_ns = (packet_ns[:, None] + t.block_offset_ns[mode]).reshape(-1)  # first firing of each block
        if self._pending_capture_ns is None:
            self._pending_capture_ns = int(block_ns[0])
        segment_start_ns = np.concatenate(([self._pending_capture_ns], block_ns[split_blocks]))
        block_segment = np.zeros(block_ns.shape[0], np.intp)
        block_segment[split_blocks] = 1
        np.cumsum(block_segment, out=block_segment)
        block_time_s = ((block_ns - segment_start_ns[block_segment]) * 1e-9).astype(np.float32)
        channel_time_s = t.channel_time_s[mode] if any_dual else t.channel_time_s[0]
        np.add(block_time_s.reshape(n_packets, BLOCKS_PER_PACKET, 1), channel_time_s, out=dense["time"])

        return_type = dense["return_type"]
        return_type[...] = _SINGLE_RETURN_TYPE[packets["return_mode"]][:, None, None]
        if any_dual:  # blocks in pairs: the last return, then the strongest (see the module doc)
            first, second = returns[dual, 0::2], returns[dual, 1::2]
            same = (first["distance"] == second["distance"]) & (first["reflectivity"] == second["reflectivity"])
            returned[dual, 1::2] &= ~same  # a second return identical to the first is the same point
            # an empty slot (distance 0) still carries a reflectivity byte: a lone return is both
            lone_last, lone_strongest = second["distance"] == 0, first["distance"] == 0
            last_is_strongest = same | lone_last | (first["reflectivity"] > second["reflectivity"])
            return_type[dual, 0::2] = np.where(last_is_strongest, RETURN_BOTH, RETURN_LAST)
            return_type[dual, 1::2] = np.where(lone_strongest, RETURN_BOTH,
                                               np.where(last_is_strongest, RETURN_SECOND, RETURN_STRONGEST))
        kept = np.flatnonzero(returned)  # firing order: packet, block, channel
        points = dense.reshape(-1) if kept.shape[0] == returned.size else dense.reshape(-1).take(kept)

        bounds = np.searchsorted(kept >> 5, split_blocks).tolist()  # first point of each split block
        for segment, (begin, end) in enumerate(itertools.pairwise([0, *bounds, points.shape[0]])):
            if segment > 0:
                frames.append(self._emit(self._pending, self._pending_capture_ns))
                self._pending, self._pending_capture_ns = [], int(segment_start_ns[segment])
            self._pending.append(points[begin:end])

    def _split_blocks(self, block_azimuth: np.ndarray) -> np.ndarray:
        """Indices of the blocks that start a new frame. VeloView's framing state machine:
        the first non-zero azimuth slope sets the direction; a slope of the other sign
        splits and clears it. Run over the runs of equal slope sign (about 2 a rotation)."""
        previous = np.empty_like(block_azimuth)
        previous[0] = block_azimuth[0] if self._last_azimuth is None else self._last_azimuth
        previous[1:] = block_azimuth[:-1]
        slope = block_azimuth - previous
        self._last_azimuth = int(block_azimuth[-1])
        moving = np.flatnonzero(slope)
        if moving.size == 0:
            return moving
        signs = np.sign(slope[moving])
        run_starts = np.flatnonzero(np.concatenate(([True], signs[1:] != signs[:-1])))
        run_lengths = np.diff(np.append(run_starts, signs.shape[0]))
        splits = []
        last_slope = self._last_slope
        for start, length, sign in zip(run_starts.tolist(), run_lengths.tolist(), signs[run_starts].tolist(),
                                       strict=True):
            if last_slope == 0:
                last_slope = sign
            elif sign != last_slope:
                splits.append(moving[start])
                last_slope = sign if length > 1 else 0
        self._last_slope = last_slope
        return np.asarray(splits, np.int64)

    def _emit(self, chunks: list[np.ndarray], capture_ns: int) -> LidarFrame:
        # concatenated as bytes: numpy's structured concatenate copies field by field, ~40× slower
        points = (np.concatenate([c.view(np.uint8) for c in chunks]).view(SENSOR_POINT_DTYPE) if chunks
                  else np.empty(0, SENSOR_POINT_DTYPE))
        evidence, _ = self._identified()
        frame = LidarFrame(capture_ns=int(capture_ns), points=points, model=evidence.model, seq=self._seq)
        self._seq += 1
        self.stats.frames += 1
        self.stats.points += points.shape[0]
        return frame


def iter_pcap_frames(
    path: str | os.PathLike[str], decoder: VelodyneDecoder | OusterDecoder, port: int | None = None,
    batch_packets: int = 1024,
) -> Iterator[LidarFrame]:
    """Rotations of a pcap capture, the last (partial) one included. A damaged file
    yields everything readable, then raises its ``PcapError``. Datagrams to ``port`` of
    the wrong size are counted by the decoder (``wrong_size``). ``decoder``: a
    ``VelodyneDecoder`` or an ``ouster.OusterDecoder`` (its ``packet_size`` and, by
    default, ``port`` say which datagrams are its packets)."""
    port = decoder.port if port is None else port
    with PcapReader(path, chunk_records=batch_packets) as reader:
        forwarded = 0

        def forward_wrong_sizes() -> None:
            nonlocal forwarded
            new = reader.skipped["wrong_size"] - forwarded
            forwarded += new
            decoder.reject("wrong_size", new, f"UDP payload to port {port} is not {decoder.packet_size} bytes")

        try:
            for batch in reader.udp_payload_batches(port, decoder.packet_size):
                forward_wrong_sizes()
                yield from decoder.decode(batch.payloads, batch.timestamps_ns)
        except PcapError:
            forward_wrong_sizes()
            last = decoder.flush()
            if last is not None:
                yield last
            raise
        forward_wrong_sizes()
    last = decoder.flush()
    if last is not None:
        yield last


def decode_pcap(
    path: str | os.PathLike[str],
    calibration: Calibration | str | os.PathLike[str] | None = None,
    model: str | None = None,
    port: int = DEFAULT_PORT,
    time_source: TimeSource = "auto",
) -> tuple[list[LidarFrame], DecoderStats]:
    """Every rotation of a pcap capture (first and last may be partial) and the stats."""
    decoder = VelodyneDecoder(calibration, model, source=str(path), time_source=time_source)
    frames = list(iter_pcap_frames(path, decoder, port))
    return frames, decoder.stats
