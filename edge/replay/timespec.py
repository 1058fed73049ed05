"""Time arguments of replay and export: where a window starts and ends.

Accepted forms (``parse_point``):

- ISO-8601: ``2026-11-22T10:00:00Z``, ``2026-11-22 10:00:00.250+01:00`` (no zone: UTC);
- epoch nanoseconds: ``1795373886390018713`` (at least 16 digits, so epoch seconds or
  milliseconds are refused with a hint instead of meaning 1970);
- relative to now: ``-10m``, ``-90s``, ``-1h30m`` is not a form, ``-1.5h`` is;
- relative to the start (end only): ``+30s``;
- ``earliest`` / ``beginning`` (the start of each partition's log) and ``now`` / ``latest``;
- an offset ``topic:partition:offset`` (``camera.front:0:1200``): the window starts (or
  ends, exclusive) at that record of that partition and at its capture time elsewhere;
- a drive name (anything else), looked up with the ``resolver`` given by the caller
  (``edge.drives.drive_resolution`` in the CLI): a drive name as start means its start, as
  end means its end. ``--drive NAME`` also takes the drive's offsets when the resolver
  gives them: the drive's records are then exactly its offset range per partition, not
  what capture times say (edge.drives); a side narrowed by ``--start``/``--end`` is a time.

Guarantees: parsing never touches the broker except through ``resolver``; every refusal
is a ``TimeSpecError`` (a ``ValueError``) naming the text and the accepted forms. Windows
are half-open, ``[start, end)``: per partition, the offsets from the first whose capture time
is >= start to the first whose capture time is >= end (Kafka's rule, edge.replay.sources).
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Callable, Sequence, Union

from broker.units import parse_duration_ns

EARLIEST_NS = 0
END_OF_LOG_NS = 2**63 - 1  # a window end after every record (any capture clock, even one in the future)

FORMS = ("ISO-8601 (2026-11-22T10:00:00Z), epoch ns, relative (-10m, or +30s for an end), "
         "earliest, now, an offset (topic:partition:offset) or a drive name")

_OFFSET = re.compile(r"^(?P<topic>[^\s:]+):(?P<partition>\d+):(?P<offset>\d+)$")
_DRIVE_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]*$")
_MIN_EPOCH_NS_DIGITS = 16  # 10^15 ns is 1970-01-12: shorter numbers are seconds or ms by mistake

#: resolver(name) -> (start_ns, end_ns), (start_ns, end_ns, topics) or
#: (start_ns, end_ns, topics, offsets); offsets: (start_offsets, end_offsets) per
#: (topic, partition), or None
DriveResolver = Callable[[str], Sequence]
DriveOffsets = tuple[dict[tuple[str, int], int], dict[tuple[str, int], int]]


class TimeSpecError(ValueError):
    """A time argument that is not one of the accepted forms (or names an unknown drive)."""


@dataclass(frozen=True, slots=True)
class OffsetPoint:
    """A position given as a record of one partition."""

    topic: str
    partition: int
    offset: int

    def __str__(self) -> str:
        return f"{self.topic}:{self.partition}:{self.offset}"


Point = Union[int, OffsetPoint]  # capture time in ns, or a record position


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

    def with_start(self, start_ns: int) -> "Window":
        """The same window from a later point (a seek): offset starts no longer apply."""
        return Window(max(self.start_ns, start_ns), self.end_ns, {}, self.end_offsets, self.drive)


def parse_iso(text: str) -> int:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise TimeSpecError(f"invalid time {text!r}: expected {FORMS}") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    delta = moment - datetime(1970, 1, 1, tzinfo=timezone.utc)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1_000


def _duration(text: str, original: str) -> int:
    try:
        return parse_duration_ns(text)
    except ValueError:
        raise TimeSpecError(f"invalid relative time {original!r}: expected e.g. -10m, -90s, -1.5h or +30s") from None


def parse_point(text: str, *, role: str = "start", now_ns: int | None = None, start_ns: int | None = None,
                resolver: DriveResolver | None = None) -> Point:
    """One time argument as a capture time (ns) or an ``OffsetPoint``.

    ``role`` is "start" or "end" (a drive name gives its start or its end); ``start_ns`` is
    what ``+DURATION`` counts from (ends only)."""
    if role not in ("start", "end"):
        raise ValueError("role must be 'start' or 'end'")
    raw = text
    text = text.strip()
    if not text:
        raise TimeSpecError(f"empty time: expected {FORMS}")
    now = time.time_ns() if now_ns is None else now_ns
    lowered = text.lower()
    if lowered in ("earliest", "beginning"):
        return EARLIEST_NS
    if lowered in ("now", "latest"):
        return now
    if text[0] == "-":
        return now - _duration(text[1:], raw)
    if text[0] == "+":
        if role != "end" or start_ns is None:
            raise TimeSpecError(f"{raw!r}: +DURATION is relative to the start, so only an end with a time start takes it")
        return start_ns + _duration(text[1:], raw)
    if text.isdigit():
        if len(text) < _MIN_EPOCH_NS_DIGITS and int(text) != 0:
            raise TimeSpecError(f"{raw!r} looks like epoch seconds or milliseconds; give nanoseconds "
                                f"({int(text) * 10 ** (19 - len(text))} ?) or an ISO-8601 time")
        return int(text)
    if text[:4].isdigit() and len(text) >= 10 and text[4] == "-":
        return parse_iso(text)
    match = _OFFSET.match(text)
    if match:
        return OffsetPoint(match["topic"], int(match["partition"]), int(match["offset"]))
    if resolver is not None and _DRIVE_NAME.match(text):
        start, end, _topics, _offsets = resolve_drive_window(resolver, text)
        return start if role == "start" else end
    raise TimeSpecError(f"invalid time {raw!r}: expected {FORMS}"
                        + ("" if resolver is not None else " (drive names need the vehicle broker)"))


def resolve_drive_window(resolver: DriveResolver, name: str) -> tuple[int, int, tuple[str, ...], DriveOffsets | None]:
    """Call ``resolver`` and normalise its answer to (start_ns, end_ns, topics, offsets)."""
    try:
        answer = resolver(name)
    except TimeSpecError:
        raise
    except Exception as exc:  # noqa: BLE001 - the resolver's own error, named
        message = getattr(exc, "message", None) or str(exc)
        raise TimeSpecError(f"drive {name!r}: {message}") from None
    if not isinstance(answer, (tuple, list)) or len(answer) not in (2, 3, 4):
        raise TimeSpecError(f"drive resolver returned {answer!r} for {name!r}, not (start_ns, end_ns[, topics[, offsets]])")
    start, end = int(answer[0]), int(answer[1])
    topics = tuple(answer[2]) if len(answer) >= 3 and answer[2] else ()
    offsets = answer[3] if len(answer) == 4 and answer[3] else None
    return start, end, topics, offsets


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
            s = (d_start + _duration(start.strip()[1:], start) if start.strip().startswith("+")
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


def format_ns(ns: int) -> str:
    """ISO-8601 UTC with milliseconds, for messages and progress lines."""
    if ns <= 0:
        return "earliest"
    if ns >= END_OF_LOG_NS:
        return "end of log"
    moment = datetime.fromtimestamp(ns // 1_000_000_000, tz=timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S") + f".{(ns // 1_000_000) % 1000:03d}Z"
