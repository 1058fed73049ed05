"""LiDAR frame sources: iterables of ``LidarFrame`` for the driver runtime.

Owns: where clouds come from and how fast. Four sources, one contract — iterate to get
``LidarFrame(capture_ns, points, model, seq, axes)``; ``seq`` counts from 0 and
keeps counting across loops; a ``stop`` event (optional) ends the iteration promptly,
even mid-sleep:

The packet decoder follows the calibration: an Ouster sensor metadata JSON selects the
Ouster decoder (ouster.py), anything else the Velodyne one (velodyne.py, which identifies
the model from the packets). The decoder's ``evidence`` is exposed as ``model_evidence``.

- ``PcapSource``: a Velodyne or Ouster pcap capture played back at the recorded pace ("recorded"),
  as fast as possible ("max") or at a fixed frame rate (Hz), once or in a loop. Frames
  are stamped with the host clock at emission unless ``keep_timestamps`` (then the
  recorded times, shifted by whole capture lengths on each loop so they keep
  increasing).
- ``UdpSource``: live Velodyne or Ouster packets from a UDP socket (large SO_RCVBUF, ``recv_into``
  a preallocated numpy buffer), decoded in batches; stamped from the packets (sensor
  clock when it is synchronised, else host arrival time). No packet for ``timeout_s``
  raises ``LidarTimeoutError`` so the runtime reports the sensor gone and reconnects.
- ``PcdDirSource``: the .pcd/.ply files of a directory in name order, read with open3d
  (imported lazily, only by this source); unreadable files are skipped with a warning.
- ``SimSource``: the synthetic scanner of ``sim.py`` at ``rate_hz``.

Bad input raises ``LidarInputError`` naming the source (missing or unreadable file, not a
pcap, no data packets, empty directory, bad calibration); both errors subclass the
runtime's ``SensorError``. A pcap that ends inside a record is played up to the damage,
then logged as a warning and treated as the end of the file.

``open_lidar_source(spec, ...)`` builds a source from a config string: ``sim``,
``udp://HOST:PORT``, ``pcap:PATH`` or ``pcd-dir:PATH``.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from broker.logs import log_event

from ..pointcloud import POINT_DTYPE
from .calibration import Calibration, CalibrationError, resolve_calibration
from .clock import TimeSource
from .frame import LidarFrame, LidarInputError, LidarSourceError, LidarTimeoutError
from .identify import ModelEvidence
from .ouster import OusterDecoder, is_ouster_metadata, load_ouster_metadata
from .pcap import PcapCorruptRecordError, PcapError, PcapReader, PcapTruncatedError
from .sim import SyntheticScan
from .velodyne import DEFAULT_PORT, DecoderStats, VelodyneDecoder, iter_pcap_frames

logger = logging.getLogger("drivers.lidar")

Rate = str | float  # "recorded" | "max" | frames per second


def parse_rate(rate: Rate, allow_recorded: bool = True) -> str | float:
    """``"recorded"``, ``"max"`` or a positive frame rate (a number or its text)."""
    if isinstance(rate, str) and rate in ("recorded", "max"):
        if rate == "recorded" and not allow_recorded:
            raise ValueError("this source has no recorded timing: give a rate in Hz or 'max'")
        return rate
    try:
        value = float(rate)
    except (TypeError, ValueError):
        raise ValueError(f"rate must be 'recorded', 'max' or a frame rate in Hz, not {rate!r}") from None
    if not (0 < value <= 1000):
        raise ValueError(f"rate must be a frame rate in (0, 1000] Hz, not {rate!r}")
    return value


class _Pacer:
    """Sleeps to put frames on a schedule: their recorded spacing or a fixed period. Far
    behind schedule (a slow consumer, a paused process) it starts over from now instead
    of bursting to catch up."""

    def __init__(self, rate: str | float, stop: threading.Event | None,
                 monotonic: Callable[[], float] = time.monotonic):
        self.rate = rate
        self.stop = stop or threading.Event()
        self.monotonic = monotonic
        self._anchor_wall: float | None = None  # when the anchor frame was due
        self._anchor_recorded_ns: int | None = None  # its recorded time
        self._last_due: float | None = None

    def restart(self, gap_s: float) -> None:
        """A new pass over the file: its first frame is due ``gap_s`` after the last one."""
        if self._last_due is not None:
            self._anchor_wall, self._anchor_recorded_ns = self._last_due + gap_s, None

    def wait(self, recorded_ns: int | None = None) -> bool:
        """Sleep until the next frame is due; False when stopped meanwhile."""
        if self.rate == "max":
            return not self.stop.is_set()
        now = self.monotonic()
        if self.rate == "recorded":
            if recorded_ns is None:
                raise ValueError("pacing at the recorded rate needs each frame's recorded time")
            if self._anchor_wall is None:
                self._anchor_wall = now
            if self._anchor_recorded_ns is None:
                self._anchor_recorded_ns = recorded_ns
            due = self._anchor_wall + (recorded_ns - self._anchor_recorded_ns) / 1e9
        else:
            due = now if self._last_due is None else self._last_due + 1.0 / float(self.rate)
        if now - due > 1.0:
            self._anchor_wall, self._anchor_recorded_ns, due = now, recorded_ns, now
        self._last_due = due
        if due > now:
            return not self.stop.wait(due - now)
        return not self.stop.is_set()


def _calibration_or_error(calibration: Calibration | str | os.PathLike[str] | None, model: str | None,
                          source: str) -> Calibration | str | os.PathLike[str] | None:
    """Check the calibration early (a clear error before any packet); Velodyne files are
    resolved again by the decoder, against the packets (identify.py)."""
    try:
        if is_ouster_metadata(calibration):
            if model is not None:
                raise CalibrationError(
                    f"{calibration} is Ouster metadata: the model comes from it, not --model {model}")
            load_ouster_metadata(calibration)
            return calibration
        if calibration is None:
            return None
        if isinstance(calibration, Calibration):
            return resolve_calibration(calibration, model)
        VelodyneDecoder(calibration, model)  # reads and checks the file (laser count, model)
        return calibration
    except CalibrationError as exc:
        raise LidarInputError(f"{source}: {exc}") from None


def _decoder(calibration: Calibration | str | os.PathLike[str] | None, model: str | None, source: str,
             time_source: TimeSource) -> VelodyneDecoder | OusterDecoder:
    """The packet decoder a calibration calls for: Ouster metadata JSON → Ouster, else Velodyne."""
    if is_ouster_metadata(calibration):
        return OusterDecoder(calibration, source=source)
    return VelodyneDecoder(calibration, model, source=source, time_source=time_source)


class _PacketSource:
    """What a packet-decoding source tells about its stream (its decoder owns the facts)."""

    _decoder: VelodyneDecoder | OusterDecoder | None = None

    @property
    def model_evidence(self) -> ModelEvidence | None:
        """What the stream was identified as and why (identify.py); None before its first packets."""
        return self._decoder.evidence if self._decoder is not None else None

    @property
    def packet_counts(self) -> dict[str, Any] | None:
        """Packets received, lost and out of order (loss.py) and skipped (by reason)."""
        if self._decoder is None:
            return None
        return {**self._decoder.loss.as_dict(), "skipped": dict(self._decoder.stats.skipped)}

    @property
    def clock_offset_ns(self) -> int | None:
        """Host − sensor clock at the last packet, where the decoder knows both (Velodyne)."""
        return getattr(self._decoder, "clock_offset_ns", None)


class PcapSource(_PacketSource):
    """Rotations of a Velodyne or Ouster pcap capture, paced like the recording (see module doc)."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        calibration: Calibration | str | os.PathLike[str] | None = None,
        model: str | None = None,
        rate: Rate = "recorded",
        loop: bool = False,
        keep_timestamps: bool = False,
        *,
        port: int | None = None,  # default: the sensor's (Velodyne 2368, Ouster per its metadata)
        time_source: TimeSource = "auto",
        stop: threading.Event | None = None,
        clock_ns: Callable[[], int] = time.time_ns,
    ):
        self.path = Path(path)
        self.name = f"pcap:{self.path}"
        try:
            self.rate = parse_rate(rate)
        except ValueError as exc:
            raise LidarInputError(f"{self.name}: {exc}") from None
        self.loop, self.keep_timestamps = loop, keep_timestamps
        self.port, self.time_source = port, time_source
        self.model = model
        self.calibration = _calibration_or_error(calibration, model, self.name)
        self.stop = stop
        self.clock_ns = clock_ns
        self.stats: DecoderStats | None = None  # of the playback in progress (all loops)
        self._decoder: VelodyneDecoder | OusterDecoder | None = None
        self._check_readable()

    def _check_readable(self) -> None:
        if not self.path.exists():
            raise LidarInputError(f"{self.name}: file not found")
        if not self.path.is_file():
            raise LidarInputError(f"{self.name}: not a regular file")
        try:
            PcapReader(self.path).close()
        except PcapError as exc:
            raise LidarInputError(f"{self.name}: {exc}") from None

    def __iter__(self) -> Iterator[LidarFrame]:
        pacer = _Pacer(self.rate, self.stop)
        seq = 0
        shift_ns = 0  # added to recorded times on each loop so they keep increasing
        decoder = _decoder(self.calibration, self.model, self.name, self.time_source)
        self.stats = decoder.stats  # accumulates over loops; each pass ends with a flush
        self._decoder = decoder
        while True:
            self._check_readable()
            frames_before = decoder.stats.frames
            first_ns: int | None = None
            last_ns = 0  # set with first_ns
            frames = iter_pcap_frames(self.path, decoder, self.port)
            while True:
                try:
                    frame = next(frames)
                except StopIteration:
                    break
                except (PcapTruncatedError, PcapCorruptRecordError) as exc:  # a damaged tail, played up to it
                    log_event(logger, logging.WARNING, "pcap_damaged", source=self.name, offset=exc.offset,
                              error=exc, action="treated as the end of the capture")
                    break
                except PcapError as exc:
                    raise LidarInputError(f"{self.name}: {exc}") from None
                first_ns = frame.capture_ns if first_ns is None else first_ns
                last_ns = frame.capture_ns
                if not pacer.wait(frame.capture_ns):
                    return
                capture_ns = frame.capture_ns + shift_ns if self.keep_timestamps else self.clock_ns()
                yield LidarFrame(capture_ns, frame.points, frame.model, seq)
                seq += 1
            if first_ns is None:
                raise LidarInputError(
                    f"{self.name}: no {'Ouster' if isinstance(decoder, OusterDecoder) else 'Velodyne'} data packets "
                    f"({decoder.packet_size}-byte UDP payloads to port {self.port or decoder.port}); "
                    f"skipped: {dict(decoder.stats.skipped) or 'none'}"
                )
            if not self.loop:
                return
            period_ns = max((last_ns - first_ns) // max(decoder.stats.frames - frames_before - 1, 1), 1)
            shift_ns += last_ns - first_ns + period_ns
            pacer.restart(period_ns / 1e9)


class UdpSource(_PacketSource):
    """Rotations from live Velodyne packets on a UDP socket (see module doc)."""

    def __init__(
        self,
        host: str = "0.0.0.0",
        port: int = DEFAULT_PORT,
        calibration: Calibration | str | os.PathLike[str] | None = None,
        model: str | None = None,
        *,
        timeout_s: float = 2.0,
        receive_buffer_bytes: int = 8 * 1024 * 1024,
        batch_packets: int = 64,
        max_batch_delay_s: float = 0.01,
        time_source: TimeSource = "auto",
        stop: threading.Event | None = None,
    ):
        self.host, self.port = host, int(port)
        self.name = f"udp://{host}:{port}"
        if not (0 <= self.port < 65536):
            raise LidarInputError(f"{self.name}: port must be 0..65535 (0: any free port, see bound_port)")
        if not timeout_s > 0:
            raise LidarInputError(f"{self.name}: timeout_s must be positive")
        self.model = model
        self.calibration = _calibration_or_error(calibration, model, self.name)
        self.timeout_s = float(timeout_s)
        self.receive_buffer_bytes = int(receive_buffer_bytes)
        self.batch_packets = max(1, int(batch_packets))
        self.max_batch_delay_s = float(max_batch_delay_s)
        self.time_source = time_source
        self.stop = stop or threading.Event()
        self.stats: DecoderStats | None = None
        self._decoder: VelodyneDecoder | OusterDecoder | None = None
        self.bound_port: int | None = None  # the actual port (useful with port 0 in tests)

    def _open_socket(self) -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self.receive_buffer_bytes)
            sock.bind((self.host, self.port))
        except OSError as exc:
            sock.close()
            raise LidarInputError(f"{self.name}: cannot listen: {exc.strerror or exc}") from None
        granted = sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
        if granted < self.receive_buffer_bytes:  # Linux reports twice what it grants
            log_event(logger, logging.WARNING, "udp_receive_buffer_small", source=self.name,
                      requested=self.receive_buffer_bytes, granted=granted,
                      hint="raise net.core.rmem_max to absorb bursts")
        self.bound_port = sock.getsockname()[1]
        self.name = f"udp://{self.host}:{self.bound_port}"
        return sock

    def __iter__(self) -> Iterator[LidarFrame]:
        sock = self._open_socket()
        decoder = _decoder(self.calibration, self.model, self.name, self.time_source)
        self.stats = decoder.stats
        self._decoder = decoder
        packet_size = decoder.packet_size
        row_bytes = max(2048, packet_size + 64)  # wider than a data packet, so oversized datagrams show their size
        buffer = np.empty((self.batch_packets, row_bytes), np.uint8)
        rows = [memoryview(buffer[i]) for i in range(self.batch_packets)]
        sizes = np.empty(self.batch_packets, np.int64)
        arrival_ns = np.empty(self.batch_packets, np.int64)
        last_packet = time.monotonic()
        seq = 0
        poll_s = min(0.2, self.timeout_s)
        try:
            while not self.stop.is_set():
                count, deadline = 0, None
                while count < self.batch_packets:
                    wait = poll_s if deadline is None else deadline - time.monotonic()
                    if wait <= 0:
                        break
                    sock.settimeout(wait)
                    try:
                        sizes[count] = sock.recv_into(rows[count], row_bytes)
                    except TimeoutError:
                        break
                    except OSError as exc:
                        raise LidarSourceError(f"{self.name}: receive failed: {exc.strerror or exc}") from None
                    arrival_ns[count] = time.time_ns()
                    count += 1
                    if deadline is None:
                        deadline = time.monotonic() + self.max_batch_delay_s
                if count == 0:
                    silent = time.monotonic() - last_packet
                    if silent >= self.timeout_s:
                        raise LidarTimeoutError(
                            f"{self.name}: no packets for {silent:.1f} s (sensor gone or not sending here?)")
                    continue
                last_packet = time.monotonic()
                right = sizes[:count] == packet_size
                if not right.all():
                    wrong = sorted(set(sizes[:count][~right].tolist()))
                    decoder.reject("wrong_size", int(np.count_nonzero(~right)),
                                   f"datagram of {', '.join(map(str, wrong))} bytes, a data packet is {packet_size}")
                payloads = buffer[:count, :packet_size][right] if not right.all() else buffer[:count, :packet_size]
                for frame in decoder.decode(payloads, arrival_ns[:count][right]):
                    yield LidarFrame(frame.capture_ns, frame.points, frame.model, seq)
                    seq += 1
        finally:
            sock.close()


class PcdDirSource:
    """The .pcd / .ply files of a directory, in name order, at ``rate`` frames a second
    ("recorded" has no meaning here and plays at 10 Hz)."""

    SUFFIXES = (".pcd", ".ply")

    def __init__(self, path: str | os.PathLike[str], rate: Rate = 10.0, loop: bool = False, *, model: str = "pcd",
                 stop: threading.Event | None = None, clock_ns: Callable[[], int] = time.time_ns):
        self.path = Path(path)
        self.name = f"pcd-dir:{self.path}"
        try:
            parsed = parse_rate(rate)
        except ValueError as exc:
            raise LidarInputError(f"{self.name}: {exc}") from None
        self.rate = 10.0 if parsed == "recorded" else parsed
        self.loop, self.model, self.stop, self.clock_ns = loop, model, stop, clock_ns
        self.skipped: dict[str, str] = {}  # file -> why it was skipped
        self.files = self._list_files()

    def _list_files(self) -> list[Path]:
        if not self.path.exists():
            raise LidarInputError(f"{self.name}: directory not found")
        if not self.path.is_dir():
            raise LidarInputError(f"{self.name}: not a directory")
        try:
            files = sorted(p for p in self.path.iterdir() if p.suffix.lower() in self.SUFFIXES and p.is_file())
        except OSError as exc:
            raise LidarInputError(f"{self.name}: cannot list: {exc.strerror or exc}") from None
        if not files:
            raise LidarInputError(f"{self.name}: no .pcd or .ply files in the directory")
        return files

    def _read(self, open3d: ModuleType, file: Path) -> np.ndarray | None:
        try:
            cloud = open3d.t.io.read_point_cloud(str(file))
        except (RuntimeError, OSError, ValueError) as exc:
            reason = str(exc)
        else:
            if not cloud.is_empty() and "positions" in cloud.point:
                positions = cloud.point["positions"].numpy().reshape(-1, 3)
                points = np.zeros(positions.shape[0], POINT_DTYPE)
                points["x"], points["y"], points["z"] = positions[:, 0], positions[:, 1], positions[:, 2]
                for field, names in (("intensity", ("intensity", "intensities", "reflectivity")),
                                     ("ring", ("ring", "laser_id")), ("time", ("time", "t", "timestamp"))):
                    for name in names:
                        if name in cloud.point:
                            points[field] = cloud.point[name].numpy().reshape(-1)[: points.shape[0]]
                            break
                return points
            reason = "no points (unreadable, or an empty cloud)"
        if str(file) not in self.skipped:
            log_event(logger, logging.WARNING, "pcd_file_skipped", source=self.name, file=file.name, reason=reason)
        self.skipped[str(file)] = reason
        return None

    def __iter__(self) -> Iterator[LidarFrame]:
        try:
            import open3d  # heavy (seconds): imported only by processes that read PCD/PLY
        except ImportError as exc:
            raise LidarInputError(f"{self.name}: open3d is needed to read PCD/PLY files ({exc}); "
                                  "install the 'pointcloud' extra") from None
        pacer = _Pacer(self.rate, self.stop)
        seq = 0
        while True:
            self.files = self._list_files()
            produced = 0
            for file in self.files:
                points = self._read(open3d, file)
                if points is None:
                    continue
                if not pacer.wait():
                    return
                yield LidarFrame(self.clock_ns(), points, self.model, seq, axes=None)
                seq += 1
                produced += 1
            if produced == 0:
                raise LidarInputError(f"{self.name}: none of the {len(self.files)} .pcd/.ply files could be read")
            if not self.loop:
                return


class SimSource:
    """The synthetic scanner (``sim.py``) at ``rate_hz`` rotations a second; with
    ``realtime=False`` as fast as it generates; ``frames`` limits the count."""

    def __init__(self, model: str = "VLP-16", rate_hz: float = 10.0, *, seed: int = 0, noise_m: float = 0.01,
                 realtime: bool = True, frames: int | None = None, stop: threading.Event | None = None,
                 clock_ns: Callable[[], int] = time.time_ns):
        self.name = f"sim:{model}"
        try:
            self.scan = SyntheticScan(model, rate_hz, seed, noise_m)
        except ValueError as exc:
            raise LidarInputError(f"{self.name}: {exc}") from None
        self.model, self.rate_hz, self.realtime, self.frames = model, float(rate_hz), realtime, frames
        self.stop, self.clock_ns = stop, clock_ns

    def __iter__(self) -> Iterator[LidarFrame]:
        pacer = _Pacer(self.rate_hz if self.realtime else "max", self.stop)
        seq = 0
        while self.frames is None or seq < self.frames:
            if not pacer.wait():
                return
            capture_ns = self.clock_ns()
            yield LidarFrame(capture_ns, self.scan.rotation(seq), self.model, seq)
            seq += 1


def open_lidar_source(
    source: str,
    *,
    model: str | None = None,
    calibration: Calibration | str | os.PathLike[str] | None = None,
    rate: Rate = "recorded",
    loop: bool = False,
    keep_timestamps: bool = False,
    stop: threading.Event | None = None,
) -> PcapSource | UdpSource | PcdDirSource | SimSource:
    """A source from a config string: ``sim``, ``udp://HOST:PORT``, ``pcap:PATH``,
    ``pcd-dir:PATH``. For ``sim``, ``rate`` is the rotation rate (``recorded`` → 10 Hz)."""
    if source == "sim":
        rate_hz = 10.0 if rate in ("recorded", "max") else parse_rate(rate)
        return SimSource(model or "VLP-16", float(rate_hz), realtime=rate != "max", stop=stop)
    if source.startswith("udp://"):
        host, _, port = source[len("udp://"):].rpartition(":")
        if not host or not port.isdigit():
            raise LidarInputError(f"{source}: expected udp://HOST:PORT, e.g. udp://0.0.0.0:2368")
        return UdpSource(host, int(port), calibration, model, stop=stop)
    if source.startswith("pcap:"):
        return PcapSource(source[len("pcap:"):], calibration, model, rate, loop, keep_timestamps, stop=stop)
    if source.startswith("pcd-dir:"):
        return PcdDirSource(source[len("pcd-dir:"):], rate, loop, stop=stop)
    raise LidarInputError(f"unknown lidar source {source!r}: expected sim, udp://HOST:PORT, pcap:PATH or pcd-dir:PATH")
