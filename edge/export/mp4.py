"""H.264 MP4 files that browsers play, timed by the frames' capture times (PyAV, FFmpeg).

Owns: turning a sequence of (BGR image, capture time) into one MP4 file (``Mp4Writer``,
encoded), or a sequence of recorded H.264 access units into one (``Mp4Remuxer``, stream
copy: the bytes the camera sent, no decode, no re-encode, no quality lost).

Format and invariants:
- Video: H.264, in an MP4 container written with ``movflags=+faststart`` so the ``moov``
  box comes before ``mdat`` and a browser starts playing before the whole file has
  arrived. Encoded: libx264, ``preset`` veryfast, ``crf`` 23, 4:2:0 (``yuv420p``: what
  every browser decodes). Remuxed: the codec parameters are those of the first access
  unit (a keyframe with its SPS/PPS, drivers/camera/video.py), and FFmpeg's MP4 muxer
  turns the Annex B units into MP4's length-prefixed form. The container is FFmpeg's,
  through PyAV; no container is built by hand.
- Timing (``FrameTimer``): the stream's time base is 1/90000 s (the usual video clock).
  Frame ``i`` is presented at ``capture_ns[i] - capture_ns[0]`` (rounded to the tick) and
  lasts until the next frame, so a variable frame rate is kept as recorded; the last frame
  lasts the median interval of the others (a 12.5 fps capture of N frames plays N x 80 ms,
  as its source does). A frame whose capture time is not after the previous frame's
  (clock step, out of order) is shown one tick after it and counted in ``retimed``. A
  remuxed unit is decoded at its presentation time (dts = pts): streams with B-frames are
  not remuxed (edge.export.directory decodes and encodes those).
- Size: every encoded frame has the first frame's size (callers resize); odd sizes lose
  their last row or column (4:2:0 needs even sides).
- One frame is held back (its duration is known only when the next frame arrives); memory
  does not grow with the number of frames.

Errors: a missing PyAV, or FFmpeg refusing to open, encode, parse or write, raise
``ExportError`` naming the file and FFmpeg's reason.
"""

from __future__ import annotations

import abc
import io
import statistics
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from .errors import ExportError

TICKS_PER_SECOND = 90_000
TIME_BASE = Fraction(1, TICKS_PER_SECOND)
CODEC = "h264"
DEFAULT_FRAME_TICKS = TICKS_PER_SECOND // 10  # a lone frame lasts 100 ms
ENCODER_OPTIONS = {"preset": "veryfast", "crf": "23"}


def require_av() -> Any:
    """The ``av`` module (PyAV), or ExportError saying how to install it."""
    try:
        import av
    except ImportError:
        raise ExportError("MP4 export needs PyAV (pip install edge-appliance[sensors])") from None
    return av


def ns_to_ticks(delta_ns: int) -> int:
    return (delta_ns * TICKS_PER_SECOND + 500_000_000) // 1_000_000_000


class FrameTimer:
    """Presentation times in ticks from capture times (module docstring, Timing)."""

    def __init__(self) -> None:
        self.first_ns: int | None = None
        self.last_pts: int | None = None
        self.retimed = 0
        self._durations: list[int] = []  # a bounded sample, for the last frame's duration

    def pts(self, capture_ns: int) -> int:
        if self.first_ns is None:
            self.first_ns = capture_ns
        pts = ns_to_ticks(capture_ns - self.first_ns)
        if self.last_pts is not None:
            if pts <= self.last_pts:
                pts = self.last_pts + 1
                self.retimed += 1
            if len(self._durations) < 4096:
                self._durations.append(pts - self.last_pts)
        self.last_pts = pts
        return pts

    def last_duration(self) -> int:
        return max(1, int(statistics.median(self._durations))) if self._durations else DEFAULT_FRAME_TICKS


class _HeldBackMp4(abc.ABC):
    """What both writers share: the container, the frame held back until its successor
    gives its duration, the facts of the finished file."""

    REMUXED = False  # whether the file holds the recorded bytes (stream copy) or encoded images

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self.frames = 0
        self.duration_ticks = 0
        self.timer = FrameTimer()
        self._held: Any = None  # (item, pts) waiting for its successor
        self._container: Any = None

    @property
    def retimed(self) -> int:
        return self.timer.retimed

    def _open_container(self) -> Any:
        av = require_av()
        return av.open(str(self.path), "w", format="mp4", options={"movflags": "+faststart"})

    def _queue(self, item: Any, capture_ns: int) -> None:
        pts = self.timer.pts(capture_ns)
        if self._held is not None:
            self._write(self._held[0], self._held[1], pts - self._held[1])
        self._held = (item, pts)

    @abc.abstractmethod
    def _write(self, item: Any, pts: int, duration: int) -> None:
        """Put ``item`` into the container at ``pts`` lasting ``duration`` (time base units)."""

    def _flush(self) -> None:  # noqa: B027 - an optional hook: writers that hold nothing keep this no-op
        """Whatever the writer still holds after the last frame went out."""

    def finish(self) -> dict[str, Any]:
        """Write the held frame, flush, write the index first; the file's facts."""
        av = require_av()
        if self._held is not None:
            self._write(self._held[0], self._held[1], self.timer.last_duration())
            self._held = None
        self._flush()
        try:
            self._container.close()
        except av.FFmpegError as exc:
            raise ExportError(f"FFmpeg could not finish {self.path.name}: {exc}") from None
        return {"codec": CODEC, "frames": self.frames, "duration_s": round(self.duration_ticks / TICKS_PER_SECOND, 6),
                "retimed": self.retimed, "remuxed": self.REMUXED}

    def abort(self) -> None:
        """Release FFmpeg's resources without finishing (the caller discards the file)."""
        self._held = None
        try:
            self._container.close()
        except Exception:  # any error: nothing is left to save in a discarded file
            pass


class Mp4Writer(_HeldBackMp4):
    """One H.264 MP4 at ``path`` encoded from images; ``add`` frames in order, then ``finish`` (or ``abort``)."""

    def __init__(self, path: Path | str, width: int, height: int):
        super().__init__(path)
        av = require_av()
        self.width, self.height = width - width % 2, height - height % 2
        if self.width < 2 or self.height < 2:
            raise ExportError(f"{self.path.name}: a {width}x{height} frame is too small for H.264")
        self._packet_durations: dict[int, int] = {}  # pts -> ticks, until the packet leaves the encoder
        try:
            self._container = self._open_container()
            self._stream = self._container.add_stream("libx264")
            self._stream.width, self._stream.height = self.width, self.height
            self._stream.pix_fmt = "yuv420p"
            self._stream.time_base = TIME_BASE
            self._stream.codec_context.time_base = TIME_BASE
            self._stream.options = dict(ENCODER_OPTIONS)
        except av.FFmpegError as exc:
            raise ExportError(f"cannot write an H.264 MP4 at {self.path}: {exc}") from None

    def add(self, image: np.ndarray, capture_ns: int) -> None:
        """Queue one BGR frame (HxWx3 uint8, the writer's size or one pixel more)."""
        av = require_av()
        image = image[:self.height, :self.width]
        self._queue(av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="bgr24"), capture_ns)

    def _write(self, frame: Any, pts: int, duration: int) -> None:
        frame.pts = pts
        frame.time_base = TIME_BASE
        self._packet_durations[pts] = duration
        self.duration_ticks = pts + duration
        self.frames += 1
        self._encode(frame)

    def _flush(self) -> None:
        self._encode(None)

    def _encode(self, frame: Any) -> None:
        av = require_av()
        try:
            for packet in self._stream.encode(frame):
                packet.duration = self._packet_durations.pop(packet.pts, 0)
                self._container.mux(packet)
        except av.FFmpegError as exc:
            raise ExportError(f"FFmpeg could not encode {self.path.name}: {exc}") from None


class Mp4Remuxer(_HeldBackMp4):
    """One H.264 MP4 at ``path`` holding recorded access units as they are (stream copy);
    ``keyframe`` is the first unit (a keyframe with its parameter sets), which gives the
    stream's codec parameters. ``add`` units in decoding order (the first one too), then
    ``finish`` (or ``abort``)."""

    REMUXED = True

    def __init__(self, path: Path | str, keyframe: bytes):
        super().__init__(path)
        av = require_av()
        try:
            self._parameters = av.open(io.BytesIO(keyframe), format="h264")  # FFmpeg's parser reads the SPS
            template = self._parameters.streams.video[0]
            self.width, self.height = template.codec_context.width, template.codec_context.height
            if not self.width or not self.height:
                raise ExportError(f"{self.path.name}: the first keyframe has no readable SPS (no picture size)")
            self._container = self._open_container()
            self._stream = self._container.add_stream_from_template(template)
            self._stream.time_base = TIME_BASE
        except (av.FFmpegError, IndexError) as exc:
            raise ExportError(f"cannot remux H.264 into an MP4 at {self.path}: {exc}") from None

    def add(self, access_unit: bytes, capture_ns: int, keyframe: bool) -> None:
        self._queue((bytes(access_unit), keyframe), capture_ns)

    def _write(self, unit: tuple[bytes, bool], pts: int, duration: int) -> None:
        av = require_av()
        packet = av.Packet(unit[0])
        packet.stream = self._stream
        packet.time_base = TIME_BASE
        packet.pts = packet.dts = pts
        packet.duration = duration
        packet.is_keyframe = unit[1]
        try:
            self._container.mux(packet)
        except av.FFmpegError as exc:
            raise ExportError(f"FFmpeg could not write {self.path.name}: {exc}") from None
        self.duration_ticks = pts + duration
        self.frames += 1

    def _flush(self) -> None:
        self._parameters.close()

    def abort(self) -> None:
        super().abort()
        self._parameters.close()
