"""Camera sources: synthetic frames, V4L2 devices, network streams and video files.

Each source is an iterator of CameraFrame(capture_ns, image (HxWx3 uint8 BGR), seq,
source_ts_ns). Pacing runs on a monotonic schedule (next_due += period), so timing does
not drift with the work done per frame.

- ``sim``: moving shapes over a moving gradient, with the capture time and sequence drawn
  in; ``fps`` (default 30) at ``width``x``height`` (default 1280x720).
- ``N`` or ``/dev/videoN``: V4L2 via OpenCV; ``rtsp://``/``http(s)://``: a stream. Live
  frames are stamped with the host clock right after the grab.
- a video file: at its own frame rate (``rate="recorded"``), as fast as possible
  (``"max"``) or at a given Hz; ``loop`` restarts it. Frames are stamped with the host
  clock at capture by default; with ``keep_timestamps`` the stamp is the first frame's
  host time plus the frame's position in the file (CAP_PROP_POS_MSEC), so spacing follows
  the file exactly.

Failures raise CameraSourceError naming the source and what was wrong; for live sources
the driver runtime treats it as "sensor gone" and reopens with backoff.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Iterator

import cv2
import numpy as np


class CameraSourceError(Exception):
    pass


@dataclass(slots=True)
class CameraFrame:
    capture_ns: int
    image: np.ndarray
    seq: int
    source_ts_ns: int | None = None


def _pace(period_s: float | None) -> Iterator[None]:
    """Yield once per period on a monotonic schedule (no drift); never sleeps for None."""
    next_due = time.monotonic()
    while True:
        if period_s:
            delay = next_due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            elif delay < -period_s:
                next_due = time.monotonic()  # fell far behind (e.g. paused): do not burst
            next_due += period_s
        yield


def sim_frames(fps: float = 30.0, width: int = 1280, height: int = 720, limit: int | None = None) -> Iterator[CameraFrame]:
    xs = np.linspace(0, 255, width, dtype=np.float32)
    ys = np.linspace(0, 255, height, dtype=np.float32)[:, None]
    seq = 0
    for _ in _pace(1.0 / fps):
        if limit is not None and seq >= limit:
            return
        t = seq / fps
        image = np.empty((height, width, 3), dtype=np.uint8)
        image[..., 0] = ((xs + 40 * t) % 256).astype(np.uint8)
        image[..., 1] = ((ys + 25 * t) % 256).astype(np.uint8)
        image[..., 2] = 64
        cx = int((0.5 + 0.4 * np.sin(t * 1.3)) * width)
        cy = int((0.5 + 0.35 * np.cos(t * 0.9)) * height)
        size = max(8, min(width, height) // 8)
        cv2.rectangle(image, (cx - size, cy - size), (cx + size, cy + size), (0, 0, 255), -1)
        cv2.circle(image, (int((t * 120) % width), height // 3), size // 2, (255, 255, 255), -1)
        capture_ns = time.time_ns()
        stamp = time.strftime("%H:%M:%S", time.gmtime(capture_ns / 1e9)) + f".{capture_ns // 1_000_000 % 1000:03d}"
        scale = max(0.4, height / 720)
        cv2.putText(image, f"sim {stamp} #{seq}", (10, int(30 * scale) + 5), cv2.FONT_HERSHEY_SIMPLEX,
                    scale, (255, 255, 255), max(1, int(2 * scale)), cv2.LINE_AA)
        yield CameraFrame(capture_ns, image, seq)
        seq += 1


def _open_capture(spec: str, *, fps, width, height) -> cv2.VideoCapture:
    if spec.isdigit() or spec.startswith("/dev/video"):
        if spec.startswith("/dev/") and not os.path.exists(spec):
            raise CameraSourceError(f"camera {spec}: no such device")
        cap = cv2.VideoCapture(int(spec) if spec.isdigit() else spec, cv2.CAP_V4L2)
    else:
        cap = cv2.VideoCapture(spec)
    if not cap.isOpened():
        cap.release()
        raise CameraSourceError(f"camera {spec}: cannot open (missing device, unreachable stream or unreadable file)")
    if width:
        cap.set(cv2.CAP_PROP_FRAME_WIDTH, width)
    if height:
        cap.set(cv2.CAP_PROP_FRAME_HEIGHT, height)
    if fps:
        cap.set(cv2.CAP_PROP_FPS, fps)
    return cap


def live_frames(spec: str, *, fps=None, width=None, height=None) -> Iterator[CameraFrame]:
    cap = _open_capture(spec, fps=fps, width=width, height=height)
    seq = 0
    try:
        while True:
            ok, image = cap.read()
            capture_ns = time.time_ns()
            if not ok or image is None:
                raise CameraSourceError(f"camera {spec}: stopped delivering frames")
            yield CameraFrame(capture_ns, image, seq)
            seq += 1
    finally:
        cap.release()


def file_frames(path: str, *, rate: str | float = "recorded", loop: bool = False,
                keep_timestamps: bool = False) -> Iterator[CameraFrame]:
    if not os.path.isfile(path):
        raise CameraSourceError(f"video file {path}: not found")
    seq = 0
    epoch_ns: int | None = None
    loop_offset_ns = 0
    while True:
        cap = _open_capture(path, fps=None, width=None, height=None)
        file_fps = cap.get(cv2.CAP_PROP_FPS) or 0.0
        if rate == "recorded":
            period = 1.0 / file_fps if file_fps > 0 else 1.0 / 30
        elif rate == "max":
            period = None
        else:
            period = 1.0 / float(rate)
        frames_in_pass = 0
        last_pos_ns = 0
        try:
            for _ in _pace(period):
                ok, image = cap.read()
                if not ok or image is None:
                    break
                now = time.time_ns()
                pos_ns = int(cap.get(cv2.CAP_PROP_POS_MSEC) * 1e6)
                if epoch_ns is None:
                    epoch_ns = now - pos_ns
                last_pos_ns = pos_ns
                capture_ns = epoch_ns + loop_offset_ns + pos_ns if keep_timestamps else now
                yield CameraFrame(capture_ns, image, seq, pos_ns)
                seq += 1
                frames_in_pass += 1
        finally:
            cap.release()
        if frames_in_pass == 0:
            raise CameraSourceError(f"video file {path}: no decodable frames (corrupt or not a video)")
        if not loop:
            return
        loop_offset_ns += last_pos_ns + (int(1e9 / file_fps) if file_fps > 0 else 0)


def open_camera_source(spec: str, *, fps: float | None = None, width: int | None = None, height: int | None = None,
                       rate: str | float = "recorded", loop: bool = False,
                       keep_timestamps: bool = False) -> Iterator[CameraFrame]:
    """The frames of ``spec``: ``sim``, a device index or /dev/videoN, a URL, or a file."""
    if spec == "sim":
        return sim_frames(fps or 30.0, width or 1280, height or 720)
    if spec.isdigit() or spec.startswith(("/dev/", "rtsp://", "http://", "https://")):
        return live_frames(spec, fps=fps, width=width, height=height)
    if rate not in ("recorded", "max"):
        try:
            if float(rate) <= 0:
                raise ValueError
        except ValueError:
            raise CameraSourceError(f"rate must be 'recorded', 'max' or a positive Hz, not {rate!r}") from None
    return file_frames(spec, rate=rate, loop=loop, keep_timestamps=keep_timestamps)
