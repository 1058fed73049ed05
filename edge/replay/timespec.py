"""Time arguments of replay and export: where a window starts and ends.

The grammar of a single time is the floor's (``broker.base.timespec``: ISO-8601, epoch ns,
relative ``-10m`` / ``10m ago`` / ``+30s`` for an end, ``earliest``/``now``, an offset
``topic:partition:offset``, a drive name through the caller's ``resolver``); its names are
re-exported here. This module adds the window of a command line: ``--drive NAME`` (the
drive's start and end, and its offsets when the resolver gives them: the drive's records
are then exactly its offset range per partition, not what capture times say, edge.drives;
a side narrowed by ``--start``/``--end`` is a time) or ``--start``/``--end``.

Guarantees: parsing never touches the broker except through ``resolver``; every refusal
is a ``TimeSpecError`` (a ``ValueError``) naming the text and the accepted forms. Windows
are half-open, ``[start, end)``: per partition, the offsets from the first whose capture time
is >= start to the first whose capture time is >= end (Kafka's rule, edge.replay.sources).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from broker.base.timespec import (
    EARLIEST_NS,
    END_OF_LOG_NS,
    FORMS,
    DriveOffsets,
    DriveResolver,
    OffsetPoint,
    Point,
    TimeSpecError,
    format_ns,
    parse_iso,
    parse_point,
    parse_relative_ns,
    resolve_drive_window,
)

__all__ = ["EARLIEST_NS", "END_OF_LOG_NS", "FORMS", "DriveOffsets", "DriveResolver", "OffsetPoint", "Point",
           "TimeSpecError", "Window", "WindowSpec", "format_ns", "parse_iso", "parse_point", "parse_window",
           "resolve_drive_window"]


@dataclass(frozen=True)
class WindowSpec:
    """A window as parsed: its bounds may still be offsets (the source turns them into
    capture times, see ``edge.replay.sources.resolve_window``)."""

    start: Point
    end: Point
    drive: str | None = None
    drive_topics: tuple[str, ...] = ()
    # the drive's own offsets per partition for each side not narrowed by a time
    drive_start_offsets: dict[tuple[str, int], int] = field(default_factory=dict)
    drive_end_offsets: dict[tuple[str, int], int] = field(default_factory=dict)


@dataclass(frozen=True)
class Window:
    """A resolved window ``[start_ns, end_ns)`` in capture time, with the partitions whose
    bounds were given as offsets (those start / stop at exactly that record)."""

    start_ns: int
    end_ns: int
    start_offsets: dict[tuple[str, int], int] = field(default_factory=dict)
    end_offsets: dict[tuple[str, int], int] = field(default_factory=dict)
    drive: str | None = None

    @property
    def duration_ns(self) -> int:
        return max(0, self.end_ns - self.start_ns)

    def with_start(self, start_ns: int) -> Window:
        """The same window from a later point (a seek): offset starts no longer apply."""
        return Window(max(self.start_ns, start_ns), self.end_ns, {}, self.end_offsets, self.drive)


def parse_window(start: str | None = None, end: str | None = None, *, drive: str | None = None,
                 resolver: DriveResolver | None = None, now_ns: int | None = None) -> WindowSpec:
    """The window of a command line: ``--drive NAME`` or ``--start``/``--end``.

    Defaults: start ``earliest``, end ``now`` (fixed when parsed, so a live topic's replay
    ends). ``--drive`` with ``--start``/``--end`` narrows the drive: the times are taken
    as given, relative ones (``+30s`` for the start too) count from the drive's start."""
    now = time.time_ns() if now_ns is None else now_ns
    if drive is not None:
        if resolver is None:
            raise TimeSpecError(f"--drive {drive}: drive names need the vehicle broker (--endpoint)")
        d_start, d_end, topics, offsets = resolve_drive_window(resolver, drive)
        s: Point = d_start
        e: Point = d_end
        if start is not None:
            s = (d_start + parse_relative_ns(start.strip()[1:], start) if start.strip().startswith("+")
                 else parse_point(start, role="start", now_ns=now, resolver=resolver))
        if end is not None:
            e = parse_point(end, role="end", now_ns=now, start_ns=d_start, resolver=resolver)
        start_offsets, end_offsets = offsets or ({}, {})
        spec = WindowSpec(s, e, drive, topics, dict(start_offsets) if start is None else {},
                          dict(end_offsets) if end is None else {})
    else:
        s = parse_point(start, role="start", now_ns=now, resolver=resolver) if start is not None else EARLIEST_NS
        e = (parse_point(end, role="end", now_ns=now, start_ns=s if isinstance(s, int) else None, resolver=resolver)
             if end is not None else now)
        spec = WindowSpec(s, e)
    if isinstance(spec.start, int) and isinstance(spec.end, int) and spec.end <= spec.start:
        raise TimeSpecError(f"the window ends ({format_ns(spec.end)}) before it starts ({format_ns(spec.start)})")
    return spec
