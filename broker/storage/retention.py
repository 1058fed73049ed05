"""Retention: named predicates over a partition's oldest segments, fed to one
``delete_old_segments(log, predicate, reason)``, and the disk guard.

Guarantees:
- Whole segments only, oldest first; the active segment is never deleted.
- A segment holding records at or above the partition's protected offset (what the mirror
  has not shipped yet) is kept, unless the caller allows it (disk critically full); every
  such deletion is flagged ``unshipped`` in its Deletion record.
- Every deletion is logged (one line, with its reason) and returned for the counters.

Disk guard: when free space on the data directory's filesystem drops below
``min_free_bytes``, segments are deleted across all topics until the minimum is free
again: data the mirror has already shipped first (lowest ``priority`` first, then oldest
first), and only when none is left and free space is below ``critical_free_bytes``,
unshipped data in the same order (policy ``delete_unshipped_when_critical`` may forbid
even that). Every unshipped deletion is logged as ``event=unshipped_deleted`` with its
offsets and bytes, and counted (``Storage.unshipped_deleted_bytes``).

Pins (events, see pins.py): a segment holding any pinned offset is kept by time and size
retention and by the disk guard above ``critical_free_bytes`` (and, whole segments oldest
first, so is the rest of its partition). Below it the guard deletes shipped, then unshipped
unpinned data first, pinned segments last (same policy switch); each such deletion is flagged
``pinned``, logged as ``event=pinned_deleted`` and counted (``Storage.pinned_deleted_bytes``).
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from ..logs import log_event
from ..topic_config import Size
from .partition_log import PartitionLog
from .segment import Segment

logger = logging.getLogger("broker.retention")

SegmentPredicate = Callable[[PartitionLog, Segment, int], bool]


class DiskGuard(BaseModel):
    min_free_bytes: Size = Field(1024**3, alias="min_free", description="start deleting below this free space")
    critical_free_bytes: Size = Field(
        256 * 1024**2, alias="critical_free", description="below this, unshipped data may go too"
    )
    delete_unshipped_when_critical: bool = Field(
        True,
        description="below critical_free, delete data the mirror has not shipped (counted and "
        "logged) rather than refuse new writes; false keeps it and lets writes fail",
    )

    model_config = ConfigDict(extra="forbid", populate_by_name=True)


@dataclass(frozen=True, slots=True)
class Deletion:
    topic: str
    partition: int
    base_offset: int
    next_offset: int
    size_bytes: int
    reason: str
    unshipped: bool
    pinned: bool = False


def retention_bytes_exceeded(log: PartitionLog, seg: Segment, now_ns: int) -> bool:
    limit = log.config.retention_bytes
    return limit is not None and log.size_bytes - seg.size >= limit


def retention_age_exceeded(log: PartitionLog, seg: Segment, now_ns: int) -> bool:
    limit = log.config.retention_ns
    if limit is None:
        return False
    # The broker's append time of the segment's newest batch (Kafka judges the batch's max
    # timestamp, i.e. capture times): a capture recorded years ago and played in today is new
    # data here, and a copied or restored file's mtime says nothing about when it was written.
    appended = seg.last_append_ns()
    return now_ns - (appended if appended is not None else os.stat(seg.log_path).st_mtime_ns) > limit


def always(log: PartitionLog, seg: Segment, now_ns: int) -> bool:
    return True


def is_unshipped(log: PartitionLog, seg: Segment) -> bool:
    return log.protected_offset is not None and seg.next_offset > log.protected_offset


def is_pinned(log: PartitionLog, seg: Segment) -> bool:
    return any(r.overlaps(seg.base_offset, seg.next_offset) for r in log.pin_ranges)


def delete_old_segments(
    log: PartitionLog,
    predicate: SegmentPredicate,
    reason: str,
    *,
    now_ns: int,
    allow_unshipped: bool = False,
    allow_pinned: bool = False,
    limit: int | None = None,
) -> list[Deletion]:
    deleted: list[Deletion] = []
    while len(log.segments) > 1 and (limit is None or len(deleted) < limit):
        seg = log.segments[0]
        if not predicate(log, seg, now_ns):
            break
        unshipped = is_unshipped(log, seg)
        if unshipped and not allow_unshipped:
            break
        pinned = is_pinned(log, seg)
        if pinned and not allow_pinned:
            break
        log.delete_oldest_segment()
        deletion = Deletion(log.topic, log.partition, seg.base_offset, seg.next_offset, seg.size, reason, unshipped,
                            pinned)
        deleted.append(deletion)
        log_event(
            logger, logging.WARNING if unshipped or pinned else logging.INFO, "segment_deleted",
            topic=log.topic, partition=log.partition, base_offset=seg.base_offset,
            next_offset=seg.next_offset, bytes=seg.size, reason=reason, unshipped=unshipped, pinned=pinned,
        )
    return deleted


def enforce_topic_retention(logs: Iterable[PartitionLog], now_ns: int) -> list[Deletion]:
    deleted: list[Deletion] = []
    for log in logs:
        deleted += delete_old_segments(log, retention_age_exceeded, "retention_age", now_ns=now_ns)
        deleted += delete_old_segments(log, retention_bytes_exceeded, "retention_bytes", now_ns=now_ns)
    return deleted


def enforce_disk_guard(logs: list[PartitionLog], data_dir: Path, guard: DiskGuard, now_ns: int) -> list[Deletion]:
    deleted: list[Deletion] = []
    while True:
        free = shutil.disk_usage(data_dir).free
        if free >= guard.min_free_bytes:
            return deleted
        critical = free < guard.critical_free_bytes
        allow_unshipped = critical and guard.delete_unshipped_when_critical
        deletable = [log for log in logs if len(log.segments) > 1]
        unpinned = [log for log in deletable if not is_pinned(log, log.segments[0])]
        # shipped data goes first, whatever its priority: it is safe in the cloud already;
        # events' pinned records go last of all, and only when critically full
        candidates = [log for log in unpinned if not is_unshipped(log, log.segments[0])]
        if not candidates and allow_unshipped:
            candidates = unpinned or deletable
        if not candidates:
            log_event(
                logger, logging.ERROR, "disk_guard_stuck", free_bytes=free,
                min_free_bytes=guard.min_free_bytes, critical=critical,
                reason="nothing deletable: only active segments, unshipped or pinned data left",
            )
            return deleted
        victim = min(candidates, key=lambda log: (log.config.priority, os.stat(log.segments[0].log_path).st_mtime_ns))
        reason = "disk_guard_critical" if critical else "disk_guard"
        gone = delete_old_segments(victim, always, reason, now_ns=now_ns, allow_unshipped=allow_unshipped,
                                   allow_pinned=allow_unshipped, limit=1)
        for d in gone:
            for flagged, event, why in ((d.pinned, "pinned_deleted", "nothing but events' pinned records left"),
                                        (d.unshipped, "unshipped_deleted", "no shipped data left")):
                if flagged:
                    log_event(
                        logger, logging.ERROR, event, topic=d.topic, partition=d.partition,
                        first_offset=d.base_offset, last_offset=d.next_offset - 1, bytes=d.size_bytes,
                        free_bytes=free, critical_free_bytes=guard.critical_free_bytes,
                        reason=f"disk critically full and {why} to delete",
                    )
        deleted += gone
