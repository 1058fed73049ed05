"""Pass-through camera sources: record what the camera sends when it is already compressed.

Owns: ``PassthroughSource``, an iterator of ``EncodedFrame`` read with PyAV (FFmpeg's
demuxers) without decoding: H.264 / H.265 from a file or an RTSP/HTTP stream, MJPEG from a
V4L2 device (``input_format=mjpeg``) or a file. Nothing is decoded or re-encoded, so the
recorded bytes are the camera's and the CPU cost is a copy.

What it yields (see ``video.py`` for the record format):

- H.264 / H.265: one packet (access unit) per frame in Annex B form. A stream that is
  already Annex B (RTSP, MPEG-TS, raw ``.h264``) is passed byte for byte; MP4/Matroska
  store length-prefixed NAL units, which FFmpeg's ``h264_mp4toannexb`` /
  ``hevc_mp4toannexb`` filter rewrites to Annex B (start codes, parameter sets in front
  of each keyframe) — the same bytes ``ffmpeg -c copy -bsf:v h264_mp4toannexb`` writes.
  ``keyframe`` is FFmpeg's keyframe flag of the packet. A keyframe without an SPS (an
  RTSP camera that sends its parameter sets only in the SDP) gets the stream header's
  parameter sets in front, so decoding can start at every keyframe (counted in
  ``parameter_sets_added``); nothing else is changed.
- MJPEG: every packet is a whole JPEG image, passed as an ordinary ``jpeg`` record
  (``keyframe`` always 1), so everything that reads JPEG records reads these.
- Anything else (raw YUYV from a webcam, MPEG-4 part 2, VP9, ...) is refused at open with
  ``CameraInputError`` naming the codec: use ``encoding = "jpeg"`` for such a source.

Stamps and pacing follow the decoding sources (``sources.py``): a file's frames are
stamped ``epoch_ns + pts`` (``keep_timestamps``: the container's ``creation_time``) and
released at the recorded pace, as fast as possible or at a rate in Hz; a live device or
stream's frames are stamped with the host clock when the packet arrives (its pts in
``source_ts_ns``). ``loop`` is not offered here: a looped compressed stream would need
its timestamps rewritten, which is not pass-through.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass
from typing import Any

from broker.logs import log_event

from .container import recorded_start_ns
from .frame import CameraInputError, CameraSource, CameraUnavailableError
from .pacing import FramePacer
from .video import ANNEX_B_START, KEYFRAME_HEADER, with_parameter_sets

logger = logging.getLogger("drivers.camera")

# FFmpeg codec name -> record encoding, and the filter that makes length-prefixed NAL units Annex B
PASSTHROUGH_CODECS = {"h264": "h264", "hevc": "h265", "mjpeg": "jpeg"}
TO_ANNEX_B = {"h264": "h264_mp4toannexb", "hevc": "hevc_mp4toannexb"}


@dataclass(slots=True, eq=False)
class EncodedFrame:
    """One compressed frame as the camera sent it (``data``), stamped like ``CameraFrame``."""

    capture_ns: int
    data: bytes
    encoding: str
    keyframe: bool
    width: int
    height: int
    seq: int
    source_ts_ns: int | None = None


def encode_passthrough(frame: EncodedFrame) -> tuple[memoryview, dict[str, str]]:
    """The record value and payload headers of a pass-through frame (the runtime's encoder)."""
    headers = {"encoding": frame.encoding, "width": str(frame.width), "height": str(frame.height),
               KEYFRAME_HEADER: "1" if frame.keyframe else "0"}
    return memoryview(frame.data), headers


class PassthroughSource(CameraSource[EncodedFrame]):
    """Compressed frames of a file, device or stream, not decoded (see the module doc)."""

    def __init__(self, spec: str, *, kind: str, name: str, rate: str | float = "recorded",
                 keep_timestamps: bool = False, epoch_ns: int | None = None, fps: float | None = None,
                 width: int | None = None, height: int | None = None, open_timeout_s: float = 10.0,
                 stop: threading.Event | None = None):
        super().__init__(stop)
        import av

        self.spec, self.kind, self.name, self.rate = spec, kind, name, rate
        self._av = av
        self._pacer = FramePacer(self.name, closed=self._closed, stop=self._stop_requested)
        self._seq = 0
        self._first_pts: int | None = None
        self._last_media_ns = -1
        self._pending: list[Any] = []
        self._container = self._open(fps, width, height, open_timeout_s)
        self._stream = self._container.streams.video[0]
        codec = self._stream.codec_context.name
        encoding = PASSTHROUGH_CODECS.get(codec)
        if encoding is None:
            self.close()
            raise CameraInputError(self.name, f"sends {codec} video, which cannot be recorded as it comes "
                                              f"(pass-through takes h264, hevc or mjpeg): use encoding jpeg")
        self.encoding: str = encoding
        self.width, self.height = self._stream.codec_context.width, self._stream.codec_context.height
        self._time_base = self._stream.time_base
        extradata = self._stream.codec_context.extradata or b""
        self._filter = None
        self._parameter_sets = b""  # Annex B SPS/PPS from the stream's header, for keyframes without them
        self.parameter_sets_added = 0
        if codec in TO_ANNEX_B and extradata[:1] == b"\x01":  # avcC / hvcC: length-prefixed NAL units
            self._filter = av.bitstream.BitStreamFilterContext(TO_ANNEX_B[codec], self._stream)
        elif codec in TO_ANNEX_B and extradata.startswith(ANNEX_B_START):
            self._parameter_sets = bytes(extradata)
        self._packets = self._container.demux(self._stream)
        if kind == "file":
            self.epoch_ns = int(epoch_ns) if epoch_ns is not None else self._file_epoch_ns(keep_timestamps)
        log_event(logger, logging.INFO, "camera_opened", source=self.name, kind=kind, mode="passthrough",
                  codec=codec, width=self.width, height=self.height, annex_b_filter=self._filter is not None)

    def _open(self, fps: float | None, width: int | None, height: int | None, open_timeout_s: float) -> Any:
        av = self._av
        options: dict[str, str] = {}
        fmt = None
        if self.kind == "file":
            if not os.path.isfile(self.spec):
                raise CameraInputError(self.name, "video file not found" if not os.path.exists(self.spec)
                                       else "not a regular file")
        elif self.kind == "device":
            fmt = "v4l2"
            options["input_format"] = "mjpeg"  # the compressed format UVC cameras offer
            if width and height:
                options["video_size"] = f"{width}x{height}"
            if fps:
                options["framerate"] = f"{fps:g}"
        else:
            options["timeout"] = str(round(open_timeout_s * 1e6))  # µs; also bounds reads
            if self.spec.lower().startswith(("rtsp://", "rtsps://")):
                options["rtsp_transport"] = "tcp"
        try:
            container = av.open(self.spec, format=fmt, options=options, timeout=open_timeout_s)
        except (av.FFmpegError, OSError) as exc:
            error = CameraInputError if self.kind == "file" else CameraUnavailableError
            problem = str(exc).replace(self.spec, self.name)  # the name hides a stream's password
            raise error(self.name, f"cannot open for pass-through: {problem}") from None
        if not container.streams.video:
            container.close()
            raise CameraInputError(self.name, "has no video stream")
        return container

    def _file_epoch_ns(self, keep_timestamps: bool) -> int:
        opened_ns = time.time_ns()
        if keep_timestamps:
            recorded = recorded_start_ns(self.spec)
            if recorded is not None:
                return recorded
            log_event(logger, logging.WARNING, "camera_file_start_unknown", source=self.name,
                      reason="no creation_time in the container", epoch="the time the file was opened")
        return opened_ns

    def close(self) -> None:
        super().close()
        container = getattr(self, "_container", None)
        if container is not None:
            self._container = None
            container.close()

    def _next_packet(self) -> Any | None:
        """The next Annex B packet with data, or None at the end of the input."""
        av = self._av
        while not self._pending:
            if self._container is None:
                return None
            try:
                packet = next(self._packets, None)
            except av.FFmpegError as exc:
                if self.kind == "file":
                    log_event(logger, logging.WARNING, "camera_file_ended_early", source=self.name,
                              frames=self._seq, error=exc)
                    return None
                raise CameraUnavailableError(self.name, f"stopped delivering frames: {exc}") from None
            if packet is None:  # the end of the input: what the filter still holds, then done
                if self._filter is None:
                    return None
                self._pending.extend(p for p in self._filter.filter(None) if p.size)
                self._filter = None
                continue
            if packet.size == 0:  # the demuxer's flush packet
                continue
            self._pending.extend(self._filter.filter(packet) if self._filter is not None else [packet])
        return self._pending.pop(0)

    def _media_ns(self, packet: Any) -> int:
        """The packet's presentation time from the first packet's. Packets come in decoding
        order, so with B-frames these times go back and forth: each record keeps its own
        frame's time (a decoder puts them in order again)."""
        pts = packet.pts
        if pts is None:  # no time in the container: one nanosecond after the last
            media = self._last_media_ns + 1
        else:
            if self._first_pts is None:
                self._first_pts = pts
            media = round((pts - self._first_pts) * self._time_base * 1_000_000_000)
        self._last_media_ns = media
        return media

    def __next__(self) -> EncodedFrame:
        if self._should_stop():
            self.close()
            raise StopIteration
        packet = self._next_packet()
        if packet is None:
            log_event(logger, logging.INFO, "camera_file_finished" if self.kind == "file" else "camera_lost",
                      source=self.name, frames=self._seq)
            self.close()
            if self.kind != "file":
                raise CameraUnavailableError(self.name, f"stream ended after {self._seq} frames")
            raise StopIteration
        seq = self._seq
        media_ns = self._media_ns(packet)
        if self.kind == "file":
            if not self._pacer.frame_due(self.rate, seq, media_ns):
                self.close()
                raise StopIteration
            capture_ns, source_ts_ns = self.epoch_ns + media_ns, media_ns
        else:
            capture_ns, source_ts_ns = time.time_ns(), media_ns
        self._seq += 1
        data, keyframe = bytes(packet), bool(packet.is_keyframe) or self.encoding == "jpeg"
        if keyframe and self._parameter_sets:
            completed = with_parameter_sets(data, self._parameter_sets, self.encoding)
            if completed is not data:
                self.parameter_sets_added += 1
                if self.parameter_sets_added == 1:
                    log_event(logger, logging.INFO, "camera_parameter_sets_added", source=self.name,
                              reason="keyframes arrive without SPS/PPS: the stream header's are put in front")
                data = completed
        return EncodedFrame(capture_ns, data, self.encoding, keyframe, self.width, self.height, seq, source_ts_ns)
