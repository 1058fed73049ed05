"""What PyAV (FFmpeg) reads from a video container besides its pixels.

Owns: ``recorded_start_ns(path)``, the recording's start on the Unix clock from the
container's ``creation_time`` tag (MP4 ``mvhd``, Matroska ``DateUTC``), or None when the
file has none, is not a readable container, or PyAV is missing. It never raises: a file
that cannot be read fails later, with its own clear error, where it is decoded.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime


def parse_creation_time(text: str) -> int | None:
    """ns since the epoch of an FFmpeg ``creation_time`` (ISO-8601, UTC when unzoned)."""
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    delta = moment - datetime(1970, 1, 1, tzinfo=UTC)
    ns = (delta.days * 86_400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1_000
    return ns if ns > 0 else None  # 1904/1970 placeholders of muxers that had no clock


def recorded_start_ns(path: str | os.PathLike[str]) -> int | None:
    try:
        import av
    except ImportError:
        return None
    try:
        with av.open(os.fspath(path)) as container:
            text = container.metadata.get("creation_time")
            if text is None:
                for stream in container.streams.video:
                    text = stream.metadata.get("creation_time")
                    if text is not None:
                        break
    except (av.FFmpegError, OSError, ValueError):
        return None
    return parse_creation_time(text) if text else None
