"""Camera frame sources: synthetic, V4L2 devices, network streams and video files.

Owns: where camera frames come from, how fast, and how they are stamped. Every source is
an iterator of ``CameraFrame(capture_ns, image, seq, source_ts_ns)`` (``frame.py``) with
``image`` an HxWx3 uint8 BGR array owned by the frame. OpenCV is imported only inside
``drivers/camera``; the broker never imports it.

``open_camera_source(spec, *, fps, width, height, rate, loop, keep_timestamps)`` picks the
source from the spec:

- ``sim``: ``SimCameraSource`` (``sim.py``): moving shapes and a scrolling gradient with
  the capture time and sequence drawn in, at ``fps`` (default 30) and ``width`` x
  ``height`` (default 1280x720).
- ``N`` or ``/dev/videoN`` (any ``/dev/`` path): a V4L2 device via
  ``cv2.VideoCapture(..., cv2.CAP_V4L2)``; ``width``, ``height`` and ``fps`` are asked of
  the device when given (what it actually chose is logged, with a warning if it differs).
- ``rtsp://``, ``rtsps://``, ``http://``, ``https://``: a network stream via FFmpeg, with
  open and read timeouts so a dead stream fails instead of hanging. A password in the URL
  (``rtsp://user:pass@host/...``) is shown as ``***`` in every message and log line.
- anything else: a video file, ``VideoFileSource``.

Live sources (device, stream) are ``LiveCameraSource``: paced by the sensor itself, each
frame stamped with ``time.time_ns()`` right after the grab, before it is decoded;
``source_ts_ns`` is the backend's own timestamp (V4L2 buffer time, stream position) when
it reports one. ``rate``, ``loop`` and ``keep_timestamps`` do not apply to them.

File sources play the file at its recorded pace (``rate="recorded"``, following each
frame's position, so variable frame rates are kept), as fast as possible (``"max"``) or
at a fixed rate in Hz (a number, or its text as in the config); ``loop`` restarts at the
end, otherwise the iteration ends. A file is not live: however fast it is read, its
frames keep the file's own timing. Stamps are ``epoch_ns + media position``, exactly:

- the media position is the frame's presentation time in the file (the container's pts,
  as ``CAP_PROP_POS_MSEC`` reports it), continued across loops (each pass starts one
  frame period after the previous pass's last frame), so stamps keep increasing;
- ``epoch_ns`` is fixed when the source is opened: the host time at open by default;
  with ``keep_timestamps`` the recording's own start, the container's ``creation_time``
  (``container.recorded_start_ns``; the host time at open when the file has none, with a
  warning); or the ``epoch_ns`` argument when given (0 gives the bare file positions).
- ``source_ts_ns`` is always the frame's position in the file (restarting each pass).

Pacing runs on a monotonic schedule (``pacing.py``: due = anchor + offset), never
"sleep a period after the work", so it does not drift.

Failures raise typed errors naming the source (``frame.py``): ``CameraInputError`` for a
missing file, a directory, an unreadable or corrupt video (retrying will not help);
``CameraUnavailableError`` for a device or stream that cannot be opened or stops
delivering frames. A file that ends well before its announced frame count (truncated,
damaged) is played up to the damage, then a warning is logged (on the first pass) and it
counts as ended.

Sensor gone — what the driver runtime does with a live source:

1. iterating raises ``CameraUnavailableError("camera /dev/video0: stopped delivering
   frames (...)")`` (a ``SensorError``; the capture is released at that point);
2. the runtime reports ``sensor_lost``, waits a backoff (0.5 s doubling to 10 s), then
   either calls ``open_camera_source`` again (what ``drivers/processes.py`` does: it
   reopens through its ``open_source`` callable) or keeps the object and calls
   ``source.reopen()`` — which raises ``CameraUnavailableError`` while the device is
   still absent — and iterates again on success (``seq`` keeps counting);
3. an error with ``retryable = False`` (``CameraInputError``) will not go away by
   retrying: a file source should stop with the message instead.

A ``stop`` event (optional) ends any source's iteration promptly, even mid-sleep, and
``close()`` (thread-safe) ends it and releases the device or file.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import threading
import time
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np

from broker.logs import log_event

from .container import recorded_start_ns
from .frame import CameraFrame, CameraInputError, CameraSource, CameraSourceError, CameraUnavailableError
from .pacing import FramePacer
from .sim import DEFAULT_FPS, DEFAULT_HEIGHT, DEFAULT_WIDTH, SimCameraSource, check_size_and_fps

if TYPE_CHECKING:  # passthrough.py (PyAV) loads only when a pass-through source is opened
    from .passthrough import EncodedFrame

__all__ = [
    "CameraFrame", "CameraInputError", "CameraSource", "CameraSourceError", "CameraUnavailableError",
    "LiveCameraSource", "SimCameraSource", "VideoFileSource", "open_camera_source", "parse_rate",
]

logger = logging.getLogger("drivers.camera")

STREAM_SCHEMES = ("rtsp://", "rtsps://", "http://", "https://")
FALLBACK_FPS = 30.0  # a file that does not state its frame rate
EARLY_END_FRACTION = 0.98  # a pass shorter than this share of the announced frames is reported
_DEVICE_INDEX = re.compile(r"^\d+$")
_URL_PASSWORD = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.-]*://[^/@:]*:)[^/]*@")

Rate = str | float  # "recorded" | "max" | frames per second (number or its text)


def parse_rate(rate: Rate, source: str = "file") -> str | float:
    """``"recorded"``, ``"max"`` or a positive frame rate in Hz; ValueError otherwise."""
    if isinstance(rate, str) and rate in ("recorded", "max"):
        return rate
    try:
        value = float(rate)
    except (TypeError, ValueError):
        value = float("nan")
    if not 0 < value <= 1000 or isinstance(rate, bool):
        raise ValueError(f"camera {source}: rate must be 'recorded', 'max' or a frame rate in (0, 1000] Hz, "
                         f"not {rate!r}")
    return value


def source_kind(spec: str) -> str:
    """``"sim"``, ``"device"``, ``"stream"`` or ``"file"`` for a source spec."""
    if spec == "sim":
        return "sim"
    if _DEVICE_INDEX.match(spec) or spec.startswith("/dev/"):
        return "device"
    if spec.lower().startswith(STREAM_SCHEMES):
        return "stream"
    return "file"


def _position_ns(capture: cv2.VideoCapture) -> int | None:
    """The backend's time for the frame just read (CAP_PROP_POS_MSEC), or None."""
    msec = capture.get(cv2.CAP_PROP_POS_MSEC)
    if not msec >= 0:  # negative or NaN: the backend does not know
        return None
    return round(msec * 1e6)


def redact_credentials(spec: str) -> str:
    """The spec with a URL's password hidden (``rtsp://user:***@host/...``): for messages."""
    return _URL_PASSWORD.sub(r"\1***@", spec)


def _as_bgr(image: np.ndarray) -> np.ndarray:
    """Some backends hand out grey or BGRA frames; the contract is 3-channel BGR."""
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    if image.ndim == 3 and image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    return image


# -- video files ---------------------------------------------------------------------------


class VideoFileSource(CameraSource[CameraFrame]):
    """The frames of a video file, paced and stamped as the module doc says."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        rate: Rate = "recorded",
        loop: bool = False,
        keep_timestamps: bool = False,
        epoch_ns: int | None = None,
        stop: threading.Event | None = None,
    ):
        super().__init__(stop)
        self.path = os.fspath(path)
        self.name = self.path
        self.rate = parse_rate(rate, self.name)
        self.loop, self.keep_timestamps = bool(loop), bool(keep_timestamps)
        self.epoch_ns = int(epoch_ns) if epoch_ns is not None else self._epoch_ns()
        self._lock = threading.Lock()  # serialises read() and release() (close() may come from another thread)
        self._pacer = FramePacer(self.name, closed=self._closed, stop=self._stop_requested)
        self._seq = 0
        self._passes = 0
        self._media_shift_ns = 0  # added to this pass's positions so the media time keeps increasing
        self._last_media_ns: int | None = None
        self._frames_in_pass = 0
        self._finished = False
        self._capture: cv2.VideoCapture | None = self._open()
        self.file_fps = self._capture.get(cv2.CAP_PROP_FPS) or 0.0
        self.frame_count = int(self._capture.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        if not 0 < self.file_fps <= 1000:
            log_event(logger, logging.WARNING, "camera_file_fps_unknown", source=self.name,
                      reported=self.file_fps, assumed=FALLBACK_FPS)
            self.file_fps = FALLBACK_FPS
        self.frame_period_ns = round(1e9 / self.file_fps)
        # Read the first frame now: a file that opens but does not decode fails here, at open
        self._pending = self._read_frame()
        if self._pending is None:
            self._release()
            raise CameraInputError(self.name, "no decodable frames (corrupt or not a video)")
        height, width = self._pending[0].shape[:2]
        self.width, self.height = width, height
        log_event(logger, logging.INFO, "camera_opened", source=self.name, kind="file", width=width, height=height,
                  fps=f"{self.file_fps:g}", frames=self.frame_count, rate=self.rate, loop=self.loop,
                  keep_timestamps=self.keep_timestamps)

    @property
    def pacing_resyncs(self) -> int:
        return self._pacer.resyncs

    def _epoch_ns(self) -> int:
        """Where media position 0 lies on the Unix clock (see the module doc)."""
        opened_ns = time.time_ns()
        if not self.keep_timestamps:
            return opened_ns
        recorded = recorded_start_ns(self.path)
        if recorded is None:
            log_event(logger, logging.WARNING, "camera_file_start_unknown", source=self.name,
                      reason="no creation_time in the container", epoch="the time the file was opened")
            return opened_ns
        return recorded

    def _open(self) -> cv2.VideoCapture:
        if not os.path.exists(self.path):
            raise CameraInputError(self.name, "video file not found")
        if not os.path.isfile(self.path):
            raise CameraInputError(self.name, "not a regular file")
        if not os.access(self.path, os.R_OK):
            raise CameraInputError(self.name, "video file not readable (permission denied)")
        capture = cv2.VideoCapture(self.path)
        if not capture.isOpened():
            capture.release()
            raise CameraInputError(self.name, "cannot open as a video (corrupt, truncated or unsupported format)")
        return capture

    def _release(self) -> None:
        with self._lock:
            if self._capture is not None:
                self._capture.release()
                self._capture = None

    def close(self) -> None:
        super().close()
        self._release()

    def _read_frame(self) -> tuple[np.ndarray, int | None] | None:
        """The next decoded frame and its position in the file, or None at the end."""
        with self._lock:
            if self._capture is None:
                return None
            ok, image = self._capture.read()
            if not ok or image is None:
                return None
            return _as_bgr(image), _position_ns(self._capture)

    def _media_ns(self, position_ns: int | None) -> int:
        """The frame's place on the media timeline: its position, continued across passes
        and forced to increase (a missing or repeated position counts one frame period)."""
        last = self._last_media_ns
        if self._frames_in_pass == 0 and last is not None:  # first frame of a new pass
            self._media_shift_ns = last + self.frame_period_ns - (position_ns or 0)
        if position_ns is None:
            media = (last + self.frame_period_ns) if last is not None else 0
        else:
            media = self._media_shift_ns + position_ns
            if last is not None and media <= last:
                media = last + self.frame_period_ns
        self._last_media_ns = media
        return media

    def _next_pass(self) -> bool:
        """End of the file: start the next pass (True) or end the iteration (False)."""
        frames = self._frames_in_pass
        if self._passes == 0 and self.frame_count and frames < EARLY_END_FRACTION * self.frame_count:
            log_event(logger, logging.WARNING, "camera_file_ended_early", source=self.name, frames=frames,
                      announced=self.frame_count, action="treated as the end of the file")
        self._passes += 1
        if frames == 0:
            raise CameraInputError(self.name, f"no decodable frames on pass {self._passes} (file changed?)")
        if not self.loop or self._should_stop():
            log_event(logger, logging.INFO, "camera_file_finished", source=self.name, frames=self._seq,
                      passes=self._passes)
            self._finished = True
            self._release()
            return False
        self._release()
        capture = self._open()
        with self._lock:
            if self._closed.is_set():
                capture.release()
                return False
            self._capture = capture
        self._frames_in_pass = 0
        log_event(logger, logging.DEBUG, "camera_file_loop", source=self.name, passes=self._passes)
        return True

    def __next__(self) -> CameraFrame:
        if self._finished or self._should_stop():
            self._release()
            raise StopIteration
        while True:
            pending, self._pending = self._pending, None
            if pending is None:
                pending = self._read_frame()
            if pending is not None:
                break
            if self._should_stop() or not self._next_pass():
                raise StopIteration
        image, position_ns = pending
        media_ns = self._media_ns(position_ns)
        self._frames_in_pass += 1
        seq = self._seq
        if not self._pacer.frame_due(self.rate, seq, media_ns):
            self._release()
            raise StopIteration
        capture_ns = self.epoch_ns + media_ns
        self._seq += 1
        return CameraFrame(capture_ns, image, seq, position_ns)


# -- live devices and streams --------------------------------------------------------------


class LiveCameraSource(CameraSource[CameraFrame]):
    """A V4L2 device or a network stream; see the module doc for "sensor gone"."""

    def __init__(
        self,
        spec: str,
        *,
        fps: float | None = None,
        width: int | None = None,
        height: int | None = None,
        open_timeout_s: float = 10.0,
        read_timeout_s: float = 5.0,
        max_failed_reads: int = 3,
        stop: threading.Event | None = None,
    ):
        super().__init__(stop)
        self.spec = spec
        self.kind = "device" if source_kind(spec) == "device" else "stream"
        # the name goes into every message and log line: never a stream's password
        self.name = f"/dev/video{spec}" if _DEVICE_INDEX.match(spec) else redact_credentials(spec)
        if fps is not None or width is not None or height is not None:
            check_size_and_fps(width or DEFAULT_WIDTH, height or DEFAULT_HEIGHT, fps or DEFAULT_FPS, self.name)
        self.fps, self.width, self.height = fps, width, height
        self.open_timeout_s, self.read_timeout_s = open_timeout_s, read_timeout_s
        self.max_failed_reads = max(1, int(max_failed_reads))
        self._lock = threading.Lock()  # serialises grab/retrieve with release (close() from another thread)
        self._seq = 0
        self.opens = 0
        self._capture: cv2.VideoCapture | None = None
        self.reopen()

    def _open_capture(self) -> cv2.VideoCapture:
        if self.kind == "device":
            if sys.platform.startswith("linux") and not os.path.exists(self.name):
                raise CameraUnavailableError(self.name, "no such V4L2 device")
            target = int(self.spec) if _DEVICE_INDEX.match(self.spec) else self.spec
            capture = cv2.VideoCapture(target, cv2.CAP_V4L2)
        else:
            timeouts = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, round(self.open_timeout_s * 1000),
                        cv2.CAP_PROP_READ_TIMEOUT_MSEC, round(self.read_timeout_s * 1000)]
            capture = cv2.VideoCapture(self.spec, cv2.CAP_FFMPEG, timeouts)
        if not capture.isOpened():
            capture.release()
            what = "cannot open the V4L2 device (busy, no permission or not a capture device)" \
                if self.kind == "device" else "cannot open the stream (unreachable, refused or not a video stream)"
            raise CameraUnavailableError(self.name, what)
        if self.kind == "device":
            self._configure_device(capture)
        return capture

    def _configure_device(self, capture: cv2.VideoCapture) -> None:
        asked = {"width": self.width, "height": self.height, "fps": self.fps}
        props = {"width": cv2.CAP_PROP_FRAME_WIDTH, "height": cv2.CAP_PROP_FRAME_HEIGHT, "fps": cv2.CAP_PROP_FPS}
        for key, value in asked.items():
            if value is not None:
                capture.set(props[key], float(value))
        got = {key: capture.get(prop) for key, prop in props.items()}
        differs = {key: f"{got[key]:g} (asked {value:g})" for key, value in asked.items()
                   if value is not None and abs(got[key] - value) > 0.01 * value}
        if differs:
            log_event(logger, logging.WARNING, "camera_device_settings_differ", source=self.name, **differs)

    def reopen(self) -> None:
        """(Re)open the device or stream; raises CameraUnavailableError while it is absent.
        Iteration resumes after a successful reopen; ``seq`` keeps counting."""
        self._release()
        capture = self._open_capture()
        with self._lock:
            self._capture = capture
        self._closed.clear()
        self.opens += 1
        log_event(logger, logging.INFO, "camera_opened", source=self.name, kind=self.kind, opens=self.opens,
                  width=f"{capture.get(cv2.CAP_PROP_FRAME_WIDTH):g}",
                  height=f"{capture.get(cv2.CAP_PROP_FRAME_HEIGHT):g}",
                  fps=f"{capture.get(cv2.CAP_PROP_FPS):g}", backend=capture.getBackendName())

    def _release(self) -> None:
        with self._lock:
            if self._capture is not None:
                self._capture.release()
                self._capture = None

    def close(self) -> None:
        super().close()
        self._release()

    def _grab(self) -> tuple[int, np.ndarray, int | None] | None:
        with self._lock:
            capture = self._capture
            if capture is None:
                raise CameraUnavailableError(self.name, "not open (closed or lost): call reopen()")
            if not capture.grab():
                return None
            capture_ns = time.time_ns()
            ok, image = capture.retrieve()
            if not ok or image is None:
                return None
            return capture_ns, _as_bgr(image), _position_ns(capture) or None

    def __next__(self) -> CameraFrame:
        failures = 0
        while True:
            if self._should_stop():
                raise StopIteration
            grabbed = self._grab()
            if grabbed is not None:
                break
            if self._should_stop():
                raise StopIteration
            failures += 1
            if failures >= self.max_failed_reads:
                self._release()
                log_event(logger, logging.WARNING, "camera_lost", source=self.name, failed_reads=failures,
                          frames=self._seq)
                raise CameraUnavailableError(
                    self.name, f"stopped delivering frames ({failures} failed reads in a row after {self._seq} frames)")
        capture_ns, image, source_ts_ns = grabbed
        seq = self._seq
        self._seq += 1
        return CameraFrame(capture_ns, image, seq, source_ts_ns)


# -- the factory ---------------------------------------------------------------------------


def open_camera_source(
    spec: str | int | os.PathLike[str],
    *,
    fps: float | None = None,
    width: int | None = None,
    height: int | None = None,
    rate: Rate = "recorded",
    loop: bool = False,
    keep_timestamps: bool = False,
    epoch_ns: int | None = None,
    passthrough: bool = False,
    stop: threading.Event | None = None,
) -> CameraSource[Any]:  # of CameraFrame; of EncodedFrame with passthrough
    """Open the source named by ``spec`` (``sim``, ``N``, ``/dev/videoN``, a stream URL or
    a video file; see the module doc). Opening is eager: a missing file or device, a
    corrupt video or an unreachable stream raises CameraSourceError here.

    ``fps``/``width``/``height`` apply to ``sim`` and devices; ``rate``/``loop``/
    ``keep_timestamps``/``epoch_ns`` to files (``rate="max"`` also renders ``sim``
    unpaced, and a rate in Hz is the ``sim`` rate when ``fps`` is not given). Bad
    arguments raise ValueError.

    ``passthrough``: a ``PassthroughSource`` (``passthrough.py``) that yields the
    camera's compressed frames (H.264/H.265, MJPEG) undecoded instead of images; not for
    ``sim``, not with ``loop``."""
    if isinstance(spec, int) and not isinstance(spec, bool):
        spec = str(spec)
    elif isinstance(spec, (str, os.PathLike)):
        spec = os.fspath(spec)
    if not isinstance(spec, str) or not spec.strip():
        raise ValueError(f"camera source spec must be a non-empty string, not {spec!r}")
    kind = source_kind(spec)
    if passthrough:
        return _open_passthrough(spec, kind, fps=fps, width=width, height=height, rate=rate, loop=loop,
                                 keep_timestamps=keep_timestamps, epoch_ns=epoch_ns, stop=stop)
    if kind == "sim":
        rate = parse_rate(rate, "sim")
        sim_fps = fps or (rate if isinstance(rate, float) else DEFAULT_FPS)
        return SimCameraSource(sim_fps, width or DEFAULT_WIDTH, height or DEFAULT_HEIGHT,
                               rate="max" if rate == "max" else "recorded", stop=stop)
    if kind in ("device", "stream"):
        ignored = {name: value for name, value, default in (("rate", rate, "recorded"), ("loop", loop, False),
                                                             ("keep_timestamps", keep_timestamps, False))
                   if value != default}
        if ignored:
            log_event(logger, logging.WARNING, "camera_options_ignored", source=redact_credentials(spec),
                      reason="live source",
                      **{k: str(v) for k, v in ignored.items()})
        return LiveCameraSource(spec, fps=fps, width=width, height=height, stop=stop)
    if fps is not None or width is not None or height is not None:
        log_event(logger, logging.INFO, "camera_options_ignored", source=spec, reason="video file",
                  fps=fps, width=width, height=height)
    return VideoFileSource(spec, rate=rate, loop=loop, keep_timestamps=keep_timestamps, epoch_ns=epoch_ns,
                           stop=stop)


def _open_passthrough(spec: str, kind: str, *, rate: Rate, loop: bool, **options: Any) -> CameraSource[EncodedFrame]:
    from .passthrough import PassthroughSource

    if kind == "sim":
        raise ValueError("camera sim: pass-through records a camera's own compressed video; "
                         "the simulator draws images (use encoding jpeg)")
    if loop:
        raise ValueError(f"camera {redact_credentials(spec)}: loop is not offered with pass-through "
                         f"(its timestamps would need rewriting)")
    name = f"/dev/video{spec}" if _DEVICE_INDEX.match(spec) else redact_credentials(spec)
    target = f"/dev/video{spec}" if _DEVICE_INDEX.match(spec) else spec
    return PassthroughSource(target, kind=kind, name=name, rate=parse_rate(rate, name), **options)
