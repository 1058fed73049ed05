"""Video partitions start at a keyframe: replay and export of a window that begins mid-GOP.

A partition of H.264/H.265 camera records (drivers/camera/video.py) whose first record in
the window is a delta frame (``keyframe: 0``) cannot be decoded from there. Rule: such a
partition starts at the **previous** keyframe, the last record with ``keyframe: 1`` before
the window's first record, so every frame of the window decodes. The records from that
keyframe up to the window's first one (the "pre-roll", capture times before the window
start) are replayed and exported too; ``KeyframeStarts.preroll`` counts them per
partition. The keyframe is searched at most ``KEYFRAME_SEARCH`` records back (one bounded
read of the partition); when there is none (a longer GOP, or retention deleted it), the
start stays where it was and decoding begins at the **next** keyframe: export refuses and
counts the deltas before it (``skipped_before_keyframe``), replay passes them on (a
consumer's decoder skips them); ``KeyframeStarts.no_keyframe`` names those partitions.

Partitions of other records (images, clouds, anything else) are untouched. The moved
start is an offset start of the returned ``Window`` (``start_offsets``), so every count
and every stream of replay and export agree on it. Seeks during a replay go to a time
and are not aligned.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from drivers.camera.video import VIDEO_ENCODINGS, is_keyframe

from .sources import RecordSource, TopicPartition
from .timespec import Window

KEYFRAME_SEARCH = 600  # records looked back for a keyframe (20 s of a 30 fps camera)


@dataclass
class KeyframeStarts:
    window: Window
    preroll: dict[str, int] = field(default_factory=dict)  # "topic:partition" -> records added before the start
    no_keyframe: list[str] = field(default_factory=list)  # mid-GOP starts with no keyframe within the search

    def to_json(self) -> dict[str, Any]:
        return {"preroll": dict(self.preroll), "no_keyframe": list(self.no_keyframe)}


def _first_record(source: RecordSource, tp: TopicPartition, window: Window) -> Any:
    stream = source.stream(tp, window, read_ahead_bytes=1)
    try:
        return next(iter(stream), None)
    finally:
        stream.close()


def _last_keyframe(source: RecordSource, tp: TopicPartition, window: Window, before: int) -> int | None:
    """Offset of the last keyframe in ``[before - KEYFRAME_SEARCH, before)`` of ``tp``."""
    search = Window(window.start_ns, window.end_ns, {tp: max(0, before - KEYFRAME_SEARCH)}, {tp: before},
                    window.drive)
    found = None
    stream = source.stream(tp, search)
    try:
        for record in stream:
            if is_keyframe(record.headers):
                found = record.offset
    finally:
        stream.close()
    return found


def start_at_keyframes(source: RecordSource, partitions: Sequence[TopicPartition], window: Window) -> KeyframeStarts:
    """``window`` with each video partition's start moved to its previous keyframe (module docstring)."""
    starts = dict(window.start_offsets)
    result = KeyframeStarts(window)
    for tp in partitions:
        first = _first_record(source, tp, window)
        if first is None or first.header("encoding") not in VIDEO_ENCODINGS or is_keyframe(first.headers):
            continue
        name = f"{tp[0]}:{tp[1]}"
        keyframe = _last_keyframe(source, tp, window, first.offset)
        if keyframe is None:
            result.no_keyframe.append(name)
            continue
        starts[tp] = keyframe
        result.preroll[name] = first.offset - keyframe
    if result.preroll:
        result.window = Window(window.start_ns, window.end_ns, starts, window.end_offsets, window.drive)
    return result
