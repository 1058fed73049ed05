"""H.264 MP4 files that browsers play, timed by the frames' capture times (PyAV, FFmpeg).

Owns: turning a sequence of (BGR image, capture time) into one MP4 file.

Format and invariants:
- Video: H.264 (libx264, ``preset`` veryfast, ``crf`` 23), 4:2:0 (``yuv420p``: what every
  browser decodes), in an MP4 container written with ``movflags=+faststart`` so the
  ``moov`` box comes before ``mdat`` and a browser starts playing before the whole file
  has arrived. The encoder is FFmpeg's, through PyAV; no container is built by hand.
- Timing: the stream's time base is 1/90000 s (the usual video clock). Frame ``i`` is
  presented at ``capture_ns[i] - capture_ns[0]`` (rounded to the tick) and lasts until the
  next frame, so a variable frame rate is kept as recorded; the last frame lasts the median
  interval of the others (a 12.5 fps capture of N frames plays N x 80 ms, as its source
  does). A frame whose capture time is not after the previous frame's (clock step, out
  of order) is shown one tick after it and counted in ``retimed``.
- Size: every frame has the first frame's size (callers resize); odd sizes lose their last
  row or column (4:2:0 needs even sides).
- One frame is held back (its duration is known only when the next frame arrives); memory
  does not grow with the number of frames.

Errors: a missing PyAV, or FFmpeg refusing to open, encode or write, raise ``ExportError``
naming the file and FFmpeg's reason.
"""

from __future__ import annotations

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


class Mp4Writer:
    """One H.264 MP4 at ``path``; ``add`` frames in order, then ``finish`` (or ``abort``)."""

    def __init__(self, path: Path | str, width: int, height: int):
        av = require_av()
        self.path = Path(path)
        self.width, self.height = width - width % 2, height - height % 2
        if self.width < 2 or self.height < 2:
            raise ExportError(f"{self.path.name}: a {width}x{height} frame is too small for H.264")
        self.frames = 0
        self.retimed = 0
        self.duration_ticks = 0
        self._first_ns: int | None = None
        self._held: Any = None  # the frame waiting for its successor (to know its duration)
        self._durations: list[int] = []  # a bounded sample, for the last frame's duration
        self._packet_durations: dict[int, int] = {}  # pts -> ticks, until the packet leaves the encoder
        try:
            self._container = av.open(str(self.path), "w", format="mp4", options={"movflags": "+faststart"})
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
        if self._first_ns is None:
            self._first_ns = capture_ns
        pts = ns_to_ticks(capture_ns - self._first_ns)
        if self._held is not None and pts <= self._held.pts:
            pts = self._held.pts + 1
            self.retimed += 1
        image = image[:self.height, :self.width]
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="bgr24")
        frame.pts = pts
        frame.time_base = TIME_BASE
        if self._held is not None:
            duration = pts - self._held.pts
            if len(self._durations) < 4096:
                self._durations.append(duration)
            self._encode(self._held, duration)
        self._held = frame

    def _encode(self, frame: Any, duration: int | None) -> None:
        av = require_av()
        try:
            if frame is not None:
                self._packet_durations[frame.pts] = duration
                self.duration_ticks = frame.pts + duration
                self.frames += 1
            for packet in self._stream.encode(frame):
                packet.duration = self._packet_durations.pop(packet.pts, 0)
                self._container.mux(packet)
        except av.FFmpegError as exc:
            raise ExportError(f"FFmpeg could not encode {self.path.name}: {exc}") from None

    def finish(self) -> dict[str, Any]:
        """Encode the held frame, flush, write the index first; the file's facts."""
        av = require_av()
        if self._held is not None:
            last = int(statistics.median(self._durations)) if self._durations else DEFAULT_FRAME_TICKS
            self._encode(self._held, max(1, last))
            self._held = None
        self._encode(None, None)
        try:
            self._container.close()
        except av.FFmpegError as exc:
            raise ExportError(f"FFmpeg could not finish {self.path.name}: {exc}") from None
        return {"codec": CODEC, "frames": self.frames, "duration_s": round(self.duration_ticks / TICKS_PER_SECOND, 6),
                "retimed": self.retimed}

    def abort(self) -> None:
        """Release FFmpeg's resources without finishing (the caller discards the file)."""
        self._held = None
        try:
            self._container.close()
        except Exception:  # noqa: BLE001 - nothing left to save in a discarded file
            pass
