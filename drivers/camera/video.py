"""Compressed-video camera records (H.264 / H.265) and their decoder (PyAV, FFmpeg).

Record format (compatible with ``foxglove.CompressedVideo``: the value is its ``data``,
the ``encoding`` header its ``format``):

- value: one access unit (the packets of exactly one frame) in Annex B form (start
  codes, not length prefixes), exactly as the camera or file delivered it; a keyframe
  carries its parameter sets (SPS/PPS, and VPS for H.265) so decoding can start there
  (``with_parameter_sets`` adds them from the stream's header when the camera sends them
  only out of band, as some RTSP cameras do in the SDP).
- headers: ``encoding`` ``h264`` | ``h265``, ``width``, ``height`` (coded picture size),
  ``keyframe`` ``1`` | ``0`` (``KEYFRAME_HEADER``: replay and export start at a record
  with ``keyframe: 1``, the frames before the first one cannot be decoded), plus the
  runtime's ``sensor``, ``seq``, ``capture_ns``. The record timestamp is the capture time.
- records are in decoding order, each stamped with its own frame's presentation time:
  without B-frames (what cameras send) the stamps increase; with B-frames (some files)
  they go back and forth, and a decoder puts the frames in presentation order again
  (Foxglove's CompressedVideo panel does not take B-frames; the MP4 export does).

``VideoDecoder`` turns such records back into BGR images for the dashboard and MP4
export. It is stateful (a delta frame needs the frames before it): feed one topic's
records in offset order with ``decode(value, headers, tag)``; it returns the images that
came out, each with the ``tag`` of its record; ``flush()`` returns the rest. Records before
the first keyframe are refused (``ValueError``, nothing decoded) and counted in
``skipped_before_keyframe``; undecodable bytes raise ``ValueError``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import numpy as np

from broker.base.names import HEADER_KEYFRAME as KEYFRAME_HEADER
from broker.base.names import VIDEO_ENCODINGS

FFMPEG_DECODERS: dict[str, Literal["h264", "hevc"]] = {"h264": "h264", "h265": "hevc"}  # literal: a video context
ANNEX_B_START = (b"\x00\x00\x01", b"\x00\x00\x00\x01")
SPS_NAL_TYPE = {"h264": 7, "h265": 33}


def nal_unit_types(data: bytes, encoding: str) -> list[int]:
    """The NAL unit types of an Annex B access unit, in order."""
    types, at = [], data.find(b"\x00\x00\x01")
    while at >= 0 and at + 3 < len(data):
        first = data[at + 3]
        types.append(first & 0x1F if encoding == "h264" else (first >> 1) & 0x3F)
        at = data.find(b"\x00\x00\x01", at + 3)
    return types


def with_parameter_sets(data: bytes, parameter_sets: bytes, encoding: str) -> bytes:
    """A keyframe as a decoder can start at it: when it carries no SPS (an RTSP camera that
    sends its parameter sets only in the SDP), the stream's Annex B parameter sets in front."""
    if SPS_NAL_TYPE[encoding] in nal_unit_types(data, encoding):
        return data
    return parameter_sets + data


def header_text(headers: Mapping[str, Any], name: str) -> str | None:
    raw = headers.get(name)
    if isinstance(raw, (bytes, bytearray, memoryview)):
        return bytes(raw).decode("utf-8", "replace")
    return None if raw is None else str(raw)


def is_keyframe(headers: Mapping[str, Any]) -> bool:
    return header_text(headers, KEYFRAME_HEADER) == "1"


class VideoDecoder:
    """Decodes one topic's H.264/H.265 records in order (see the module doc)."""

    def __init__(self, encoding: str):
        import av

        if encoding not in FFMPEG_DECODERS:
            raise ValueError(f"unknown video encoding {encoding!r} (allowed: {', '.join(VIDEO_ENCODINGS)})")
        self.encoding = encoding
        self._context = av.CodecContext.create(FFMPEG_DECODERS[encoding], "r")
        self._tags: dict[int, Any] = {}
        self._next_pts = 0
        self._started = False
        self.skipped_before_keyframe = 0

    @property
    def decode_started(self) -> bool:
        """Whether a keyframe has been decoded (delta frames are accepted from then on)."""
        return self._started

    def decode(self, value: bytes | memoryview, headers: Mapping[str, Any],
               tag: Any = None) -> list[tuple[np.ndarray, Any]]:
        import av

        encoding = header_text(headers, "encoding")
        if encoding != self.encoding:
            raise ValueError(f"a {encoding} record in a {self.encoding} video")
        if not self._started:
            if not is_keyframe(headers):
                self.skipped_before_keyframe += 1
                raise ValueError(f"{self.encoding} delta frame before the first keyframe: cannot be decoded")
            self._started = True
        data = bytes(value)
        if not data.startswith(ANNEX_B_START):
            raise ValueError(f"{self.encoding} record of {len(data)} bytes is not Annex B (no start code)")
        packet = av.Packet(data)
        packet.pts = packet.dts = self._next_pts
        self._tags[self._next_pts] = tag
        self._next_pts += 1
        try:
            frames = self._context.decode(packet)
        except av.FFmpegError as exc:
            self._tags.pop(packet.pts, None)
            raise ValueError(f"could not decode the {self.encoding} frame ({len(data)} bytes): {exc}") from None
        return self._images(frames)

    def flush(self) -> list[tuple[np.ndarray, Any]]:
        import av

        try:
            frames = self._context.decode(None)
        except av.FFmpegError:
            frames = []
        return self._images(frames)

    def _images(self, frames: list[Any]) -> list[tuple[np.ndarray, Any]]:
        out = []
        for frame in frames:
            tag = self._tags.pop(frame.pts, None) if frame.pts is not None else None
            out.append((frame.to_ndarray(format="bgr24"), tag))
        return out
