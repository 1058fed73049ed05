"""Records of a replay's or export's window that were no longer in the log (retention).

``MissingRecords`` collects them as offset ranges per partition while the streams of
edge.replay.sources read (a start below the log start, an offset jump between consecutive
records: offsets are dense, docs/FORMAT.md), plus the partitions whose time window starts
before the oldest record kept (how many it lost there is unknown). Its JSON form goes into
the export's result, manifest and MCAP metadata and the replay's summary;
``missing_exit_status`` turns it into the commands' exit status and stderr line.
"""

from __future__ import annotations

from typing import Any

TopicPartition = tuple[str, int]

MISSING_RECORDS_EXIT = 3  # `edge replay` / `edge export` finished, but records of the window were gone


class MissingRecords:
    """Offset ranges of a window's records that were no longer in the log, per partition;
    ranges noted twice (a replay that loops or seeks) count once."""

    def __init__(self) -> None:
        self.ranges: dict[TopicPartition, list[tuple[int, int]]] = {}
        # partitions whose window starts before the oldest record kept: retention deleted
        # records before ``log_start`` that may have been in the window (how many is unknown)
        self.before_log_start: dict[TopicPartition, int] = {}

    def note(self, tp: TopicPartition, start: int, end: int) -> None:
        if end <= start:
            return
        merged: list[tuple[int, int]] = []
        for lo, hi in sorted([*self.ranges.get(tp, []), (start, end)]):
            if merged and lo <= merged[-1][1]:
                merged[-1] = (merged[-1][0], max(hi, merged[-1][1]))
            else:
                merged.append((lo, hi))
        self.ranges[tp] = merged

    def note_before_log_start(self, tp: TopicPartition, log_start: int) -> None:
        self.before_log_start[tp] = log_start

    @property
    def count(self) -> int:
        """Records known to be missing (``before_log_start`` adds an unknown number)."""
        return sum(hi - lo for ranges in self.ranges.values() for lo, hi in ranges)

    def __bool__(self) -> bool:
        return bool(self.ranges or self.before_log_start)

    def to_json(self) -> dict[str, Any]:
        """``{"records": N, "ranges": [{"topic", "partition", "start", "end"}]}`` (end exclusive)."""
        return {"records": self.count,
                "ranges": [{"topic": tp[0], "partition": tp[1], "start": lo, "end": hi}
                           for tp, ranges in sorted(self.ranges.items()) for lo, hi in ranges],
                "before_log_start": [{"topic": tp[0], "partition": tp[1], "log_start": start}
                                     for tp, start in sorted(self.before_log_start.items())]}

    def describe(self) -> str:
        return describe_missing(self.to_json())


def describe_missing(missing: dict[str, Any], limit: int = 5) -> str:
    """One line for ``MissingRecords.to_json()`` (also as found in a result or summary)."""
    parts = []
    spans = [f"{r['topic']}:{r['partition']}:{r['start']}-{r['end'] - 1}" for r in missing["ranges"]]
    if spans:
        more = f" and {len(spans) - limit} more" if len(spans) > limit else ""
        parts.append(f"{missing['records']} records of the window were no longer in the log (deleted by "
                     f"retention): offsets {', '.join(spans[:limit])}{more}")
    before = [f"{b['topic']}:{b['partition']} (log starts at {b['log_start']})"
              for b in missing.get("before_log_start", ())]
    if before:
        parts.append(f"the window starts before the oldest record kept of {', '.join(before[:limit])}: "
                     f"older records that may belong to it were deleted by retention")
    return "; ".join(parts)


def missing_exit_status(command: str, missing: dict[str, Any], allow_gaps: bool, err: Any) -> int:
    """Exit status of a replay or export that finished: ``MISSING_RECORDS_EXIT`` when
    ``missing`` (``MissingRecords.to_json()``) reports anything, unless ``allow_gaps``;
    either way a line on ``err`` says what was missing."""
    if not (missing.get("ranges") or missing.get("before_log_start")):
        return 0
    line = describe_missing(missing)
    if allow_gaps:
        err.write(f"edge {command}: warning: {line} (--allow-gaps)\n")
        return 0
    err.write(f"edge {command}: incomplete: {line}; the rest was {command}ed (--allow-gaps accepts this)\n")
    return MISSING_RECORDS_EXIT
