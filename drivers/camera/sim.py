"""The synthetic camera: frames with visible motion, drawn with OpenCV, at a steady rate.

Owns: ``SimCameraSource``. Each frame shows a gradient background that scrolls, a red
square on a Lissajous path, a white disc crossing the frame, a rotating clock hand, and
a text line with the capture time (UTC, milliseconds) and the sequence number, so a
viewer sees at a glance that frames move, in order, and how late they are. Motion
follows the frame's place in the schedule (``seq / fps``), not the wall clock, so it is
smooth even when a frame is late.

Guarantees: frames are ``height`` x ``width`` x 3 uint8 BGR, a new array each time; frame
``n`` is released at ``start + n / fps`` on the monotonic clock (see ``pacing.py``; no
drift); ``capture_ns`` is ``time.time_ns()`` at release and is the time drawn in;
``rate="max"`` renders as fast as possible (for benchmarks); ``limit`` ends the
iteration after that many frames.
"""

from __future__ import annotations

import logging
import math
import threading
import time

import cv2
import numpy as np

from broker.logs import log_event

from .frame import CameraFrame, CameraSource
from .pacing import FramePacer

logger = logging.getLogger("drivers.camera")

DEFAULT_WIDTH, DEFAULT_HEIGHT, DEFAULT_FPS = 1280, 720, 30.0
MIN_SIDE, MAX_SIDE, MAX_FPS = 16, 16384, 1000.0


def check_size_and_fps(width: int, height: int, fps: float, source: str) -> None:
    """ValueError naming ``source`` unless the frame size and rate are sensible."""
    for label, side in (("width", width), ("height", height)):
        if isinstance(side, bool) or not isinstance(side, int) or not MIN_SIDE <= side <= MAX_SIDE:
            raise ValueError(f"camera {source}: {label} must be an integer in [{MIN_SIDE}, {MAX_SIDE}], not {side!r}")
    if isinstance(fps, bool) or not isinstance(fps, (int, float)) or not 0 < fps <= MAX_FPS:
        raise ValueError(f"camera {source}: fps must be a number in (0, {MAX_FPS:g}], not {fps!r}")


def _utc_text(capture_ns: int) -> str:
    seconds, ns = divmod(capture_ns, 1_000_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{ns // 1_000_000:03d}Z"


class SimCameraSource(CameraSource[CameraFrame]):
    """Synthetic frames at ``fps`` (see module doc)."""

    def __init__(
        self,
        fps: float = DEFAULT_FPS,
        width: int = DEFAULT_WIDTH,
        height: int = DEFAULT_HEIGHT,
        *,
        rate: str = "recorded",
        limit: int | None = None,
        stop: threading.Event | None = None,
    ):
        super().__init__(stop)
        self.name = "sim"
        check_size_and_fps(width, height, fps, self.name)
        if rate not in ("recorded", "max"):
            raise ValueError(f"camera sim: rate must be 'recorded' (pace at fps) or 'max', not {rate!r}")
        if limit is not None and limit < 0:
            raise ValueError(f"camera sim: limit must be >= 0, not {limit!r}")
        self.fps, self.width, self.height = float(fps), width, height
        self.paced = rate != "max"
        self.limit = limit
        self._seq = 0
        self._pacer = FramePacer(self.name, closed=self._closed, stop=self._stop_requested)
        # Precomputed ramps: a frame's background is two broadcasts, not a per-pixel loop
        self._ramp_x = np.linspace(0, 255, width, dtype=np.float32)
        self._ramp_y = np.linspace(0, 255, height, dtype=np.float32)
        self._shape_size = max(4, min(width, height) // 8)
        self._text_scale = max(0.35, height / 720)
        self._text_thickness = max(1, round(2 * self._text_scale))
        self.render(0.0, 0, time.time_ns())  # pay OpenCV's first-call costs now, not in frame 1's time slot
        log_event(logger, logging.INFO, "camera_opened", source=self.name, width=width, height=height,
                  fps=f"{self.fps:g}", paced=self.paced)

    @property
    def pacing_resyncs(self) -> int:
        return self._pacer.resyncs

    def __next__(self) -> CameraFrame:
        if self.limit is not None and self._seq >= self.limit:
            raise StopIteration
        seq = self._seq
        t = seq / self.fps
        if self.paced:
            if not self._pacer.wait_until_due(t):
                raise StopIteration
        elif self._should_stop():
            raise StopIteration
        capture_ns = time.time_ns()
        image = self.render(t, seq, capture_ns)
        self._seq += 1
        return CameraFrame(capture_ns, image, seq)

    def render(self, t: float, seq: int, capture_ns: int) -> np.ndarray:
        """The frame at schedule time ``t`` seconds, labelled with ``seq`` and ``capture_ns``."""
        w, h, size = self.width, self.height, self._shape_size
        image = np.empty((h, w, 3), dtype=np.uint8)
        image[:, :, 0] = np.mod(self._ramp_x + 60.0 * t, 256.0).astype(np.uint8)[None, :]
        image[:, :, 1] = np.mod(self._ramp_y + 35.0 * t, 256.0).astype(np.uint8)[:, None]
        image[:, :, 2] = 48
        cx = round((0.5 + 0.38 * math.sin(1.3 * t)) * w)
        cy = round((0.55 + 0.3 * math.cos(0.9 * t)) * h)
        cv2.rectangle(image, (cx - size, cy - size), (cx + size, cy + size), (0, 0, 255), -1)
        disc_x = round((t * 0.25 * w) % (w + 2 * size)) - size
        cv2.circle(image, (disc_x, h * 3 // 4), max(2, size // 2), (255, 255, 255), -1)
        centre, radius = (w - size - 4, size + 40), size
        angle = 2 * math.pi * t / 4.0  # one turn every 4 s
        tip = (round(centre[0] + radius * math.sin(angle)), round(centre[1] - radius * math.cos(angle)))
        cv2.circle(image, centre, radius, (32, 32, 32), -1)
        cv2.line(image, centre, tip, (0, 255, 255), max(1, size // 12), cv2.LINE_AA)
        label = f"sim {_utc_text(capture_ns)} seq {seq}"
        scale, thickness = self._text_scale, self._text_thickness
        (text_w, text_h), baseline = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, scale, thickness)
        cv2.rectangle(image, (0, 0), (min(w - 1, text_w + 12), text_h + baseline + 12), (0, 0, 0), -1)
        cv2.putText(image, label, (6, text_h + 6), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), thickness,
                    cv2.LINE_AA)
        return image
