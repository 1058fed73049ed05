"""The log of one partition: its ordered segments, appends, reads, truncation and recovery.

Guarantees:
- Offsets are dense and increase by one per record; a batch gets ``next_offset`` as its base.
- ``durable_offset``: every offset below it has been fsynced (flush policy ``batch`` after
  each append, ``interval`` when the engine calls ``flush``, ``os`` only on demand).
- Recovery on open, in two tiers (NATS filestore style), reported, never silent:
  1. clean shutdown marker present: trust the files; only re-derive the active segment's
     end from its last index entry (header chain, no CRC).
  2. otherwise (crash, power cut): the active segment is rescanned from the last index
     entry at or below the recovery point (the durable offset checkpointed by the engine)
     with every batch's length, base-offset continuity and CRC checked; the first bad batch
     and everything after it is cut, and indexes are rebuilt for the scanned part.
  Closed segments were fsynced (log and indexes) before the next segment was created.
  Each gets two tiers too: a fast check (index structure, then the header chain from the
  last index entry must end exactly at the file end with the next segment's base offset);
  when that fails (a zero-filled or damaged tail, a missing index) a full scan with CRCs
  rebuilds the indexes and cuts the segment at its last valid batch. The bytes cut and the
  offsets that became unreadable (``dropped``) are reported and logged.
- Reads never serve a batch under a wrong offset: a broken header chain or offset
  continuity raises CorruptBatchError naming topic, partition and offset and the offset
  where reading can resume (``resume_offset``); each damaged spot is logged once
  (``event=corrupt_batch``) and counted in ``corrupt_batches``.
- Retention never removes the active segment, so ``next_offset`` survives any deletion.
- ``offset_for_time(T)``: Kafka's rule, the first offset whose capture time is >= T (then
  everything after it), robust to clocks stepping back (the time index keeps the running
  maximum) and to far-future stamps (flagged, counted in ``future_records``, logged as
  ``future_timestamp`` and left out of lookups: see segment.py).
"""

from __future__ import annotations

import bisect
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from .. import records as rec
from ..batch_checks import check_batch_records
from ..errors import CorruptBatchError, OffsetOutOfRangeError
from ..logs import log_event
from ..topic_config import TopicConfig
from .layout import CLEAN_SHUTDOWN_FILE, fsync_dir, segment_base_offsets
from .pins import PinRange
from .producer_state import ProducerStateTable
from .segment import Segment, SegmentRecovery
from .v1_upgrade import upgrade_partition

if TYPE_CHECKING:
    from typing_extensions import Buffer  # collections.abc.Buffer from Python 3.12

logger = logging.getLogger("broker.storage")


@dataclass(frozen=True, slots=True)
class AppendResult:
    base_offset: int
    last_offset: int
    append_time_ns: int
    durable: bool
    duplicate: bool = False  # a retried idempotent batch, acknowledged with its first offsets


@dataclass(slots=True)
class RecoveryReport:
    topic: str
    partition: int
    clean: bool
    segments: int = 0
    scanned_bytes: int = 0
    truncated_bytes: int = 0
    rebuilt_indexes: list[str] = field(default_factory=list)
    reasons: list[str] = field(default_factory=list)
    dropped: list[tuple[int, int]] = field(default_factory=list)  # [first, next) offsets lost
    seconds: float = 0.0

    @property
    def lost_anything(self) -> bool:
        return self.truncated_bytes > 0

    def add(self, segment_name: str, found: SegmentRecovery) -> None:
        """Count what opening one segment found."""
        self.scanned_bytes += found.scanned_bytes
        self.truncated_bytes += found.truncated_bytes
        if found.rebuilt_index:
            self.rebuilt_indexes.append(segment_name)
        self.reasons.extend(found.reasons)
        if found.dropped is not None:
            self.dropped.append(found.dropped)


class PartitionLog:
    def __init__(self, directory: Path, topic: str, partition: int, config: TopicConfig, *,
                 recovery_point: int | None = None):
        self.directory = directory
        self.topic = topic
        self.partition = partition
        self.config = config
        self.segments: list[Segment] = []
        self._bases: list[int] = []
        self.protected_offset: int | None = None
        self.pin_ranges: list[PinRange] = []  # events' pinned offset ranges (storage.pins.PinRange), set by the engine
        self.future_records = 0  # future-stamped records appended since open (segment.py): kept, flagged
        self.corrupt_batches = 0
        self.leader_epoch = 0  # the log epoch stamped into appended batches (set by the engine at open)
        self._reported_damage: set[int] = set()
        directory.mkdir(parents=True, exist_ok=True)
        self.report = self._load(recovery_point)
        self.producers = self._load_producers()
        self.durable_offset = self.next_offset
        self._dirty = False
        self.last_flush_ns = time.monotonic_ns()

    # -- properties ----------------------------------------------------------------------

    @property
    def config(self) -> TopicConfig:
        return self._config

    @config.setter
    def config(self, value: TopicConfig) -> None:
        # a reconfigured max_future_skew applies to the next appends and lookups (FORMAT.md)
        self._config = value
        for seg in getattr(self, "segments", ()):
            seg.set_future_skew(value.max_future_skew_ns)
            seg.set_index_interval(value.index_interval_bytes)

    @property
    def active(self) -> Segment:
        return self.segments[-1]

    @property
    def log_start_offset(self) -> int:
        return self.segments[0].base_offset

    @property
    def next_offset(self) -> int:
        return self.segments[-1].next_offset

    @property
    def size_bytes(self) -> int:
        return sum(s.size for s in self.segments)

    @property
    def dirty(self) -> bool:
        return self._dirty

    # -- loading and recovery ------------------------------------------------------------

    def _load(self, recovery_point: int | None) -> RecoveryReport:
        started = time.perf_counter()
        marker = self.directory / CLEAN_SHUTDOWN_FILE
        clean = marker.exists()
        if clean:
            # Remove the marker durably before anything is written, so a crash from here on
            # is never mistaken for a clean shutdown.
            marker.unlink()
            fsync_dir(self.directory)
        report = RecoveryReport(self.topic, self.partition, clean)
        upgrade_partition(self.directory, self.topic, self.partition)  # format v1 segments become v2
        bases = segment_base_offsets(self.directory)
        interval = self.config.index_interval_bytes
        if not bases:
            self._add_segment(self._created(0))
            fsync_dir(self.directory)
            return report
        skew = self.config.max_future_skew_ns
        for i, base in enumerate(bases):
            if i < len(bases) - 1:
                seg, found = Segment.open_closed(self.directory, base, interval, skew, bases[i + 1])
            else:
                seg, found = Segment.open_active(self.directory, base, interval, skew,
                                                 clean=clean, recovery_point=recovery_point)
            report.add(seg.log_path.name, found)
            self._add_segment(seg)
        report.segments = len(self.segments)
        report.seconds = time.perf_counter() - started
        if report.truncated_bytes or report.rebuilt_indexes or not clean:
            level = logging.WARNING if report.truncated_bytes or report.rebuilt_indexes else logging.INFO
            log_event(
                logger, level, "partition_recovered", topic=self.topic, partition=self.partition,
                clean=clean, segments=report.segments, scanned_bytes=report.scanned_bytes,
                truncated_bytes=report.truncated_bytes, rebuilt_indexes=",".join(report.rebuilt_indexes) or "none",
                dropped_offsets=",".join(f"{a}-{b - 1}" for a, b in report.dropped) or "none",
                next_offset=self.next_offset, reason="; ".join(report.reasons) or "none",
                seconds=f"{report.seconds:.3f}",
            )
        return report

    def _load_producers(self) -> ProducerStateTable:
        """Producer state: the snapshot plus the batch headers after it (the log tail)."""
        table, offset = ProducerStateTable.read_snapshot(self.directory, self.log_start_offset, self.next_offset)
        i = max(0, bisect.bisect_right(self._bases, offset) - 1)
        for seg in self.segments[i:]:
            if seg.next_offset <= offset:
                continue
            for header in seg.headers_from(offset):
                if header.next_offset > offset:
                    table.record(header, header.base_offset)
        return table

    def _created(self, base_offset: int) -> Segment:
        seg = Segment.create(self.directory, base_offset, self.config.index_interval_bytes)
        seg.set_future_skew(self.config.max_future_skew_ns)
        return seg

    def _add_segment(self, seg: Segment) -> None:
        self.segments.append(seg)
        self._bases.append(seg.base_offset)

    # -- writing -------------------------------------------------------------------------

    def append(self, batch: Buffer, append_time_ns: int | None = None) -> AppendResult:
        """Append one Kafka RecordBatch v2 exactly as a client sent it (the native Producer or
        any Kafka client's Produce: one batch per partition): header, CRC and records are
        validated, idempotence is checked, the base offset (and LogAppendTime) is written in
        place, and the batch is stored unchanged otherwise. Returns AppendResult: the base and
        last offset (for a retried idempotent batch, ``duplicate=True`` and the offsets it was
        first written at), the append time (ns) and whether it is durable yet. Raises, with
        nothing written: CorruptBatchError (Kafka CORRUPT_MESSAGE), RecordTooLargeError
        (MESSAGE_TOO_LARGE), UnknownCodecError, OutOfOrderSequenceError
        (OUT_OF_ORDER_SEQUENCE_NUMBER), ProducerFencedError (INVALID_PRODUCER_EPOCH),
        DiskFullError/StorageError (KAFKA_STORAGE_ERROR). ``read`` returns stored batches as
        bytes, ready for a Kafka Fetch response unchanged; producer ids for InitProducerId
        come from ``Storage.producer_ids.allocate()``."""
        view = memoryview(batch)
        if view.format != "B" or view.ndim != 1:
            view = view.cast("B")
        header = rec.validate_batch(view, max_batch_bytes=self.config.max_batch_bytes)
        if header.batch_length != len(view):
            raise CorruptBatchError(
                f"frame holds {len(view)} bytes but the batch header says {header.batch_length}"
            )
        # CRC-valid is not enough: a batch no consumer could decode would stall them all
        check_batch_records(view, max_record_bytes=self.config.max_record_bytes,
                                max_section_bytes=self.config.max_section_bytes)
        now = append_time_ns if append_time_ns is not None else time.time_ns()
        written = self.producers.check(header, f"{self.topic}/{self.partition}")
        if written is not None:  # an idempotent producer's retry: acknowledged, not written again
            return AppendResult(written[0], written[1], now, self.durable_offset > written[1], duplicate=True)
        self._maybe_roll(header.batch_length, now)
        base = self.next_offset
        future_before = self.active.future_records
        self.active.append(view, header, base, now,
                           log_append_time=self.config.timestamp_type == "LogAppendTime",
                           leader_epoch=self.leader_epoch)
        self.producers.record(header, base)
        future = self.active.future_records - future_before
        if future:
            self.future_records += future
            log_event(logger, logging.WARNING, "future_timestamp", topic=self.topic, partition=self.partition,
                      base_offset=base, records=future, max_timestamp=header.max_timestamp, append_time=now,
                      max_future_skew_ns=self.config.max_future_skew_ns)
        self._dirty = True
        durable = False
        if self.config.flush == "batch":
            self.flush()
            durable = True
        return AppendResult(base, base + header.record_count - 1, now, durable)

    def _maybe_roll(self, incoming: int, now_ns: int) -> None:
        active = self.active
        if active.size == 0:
            return
        too_big = active.size + incoming > self.config.segment_bytes
        too_old = active.first_append_ns is not None and now_ns - active.first_append_ns >= self.config.segment_ns
        if too_big or too_old:
            self.roll()

    def roll(self) -> None:
        old = self.active
        # Seal (fsync log and indexes) before the next segment exists: a crash must never
        # find a newer segment after an old one whose tail was still in the page cache.
        old.close_for_append()
        try:
            new = self._created(old.next_offset)
        except BaseException:
            old.reopen_for_append()
            raise
        self._add_segment(new)
        fsync_dir(self.directory)
        self.producers.write_snapshot(self.directory, new.base_offset)
        self.durable_offset = max(self.durable_offset, old.next_offset)
        self._dirty = False

    def flush(self) -> int:
        if self._dirty:
            self.active.flush()
            self._dirty = False
        self.durable_offset = self.next_offset
        self.last_flush_ns = time.monotonic_ns()
        return self.durable_offset

    def truncate_to(self, offset: int) -> None:
        """Remove every record at or after ``offset`` (which must start a batch)."""
        if not self.log_start_offset <= offset <= self.next_offset:
            raise OffsetOutOfRangeError(
                f"cannot truncate {self.topic}/{self.partition} to {offset}: "
                f"log holds [{self.log_start_offset}, {self.next_offset})"
            )
        while len(self.segments) > 1 and self.active.base_offset >= offset:
            seg = self.segments.pop()
            self._bases.pop()
            seg.delete()
            self.active.reopen_for_append()
        self.active.truncate_to(offset)
        self.active.flush()
        fsync_dir(self.directory)
        self.durable_offset = min(self.durable_offset, self.next_offset)
        self.producers = self._load_producers()  # batches past the cut no longer count
        log_event(logger, logging.WARNING, "partition_truncated", topic=self.topic, partition=self.partition,
                  offset=offset)

    def delete_oldest_segment(self) -> Segment:
        """Remove the oldest closed segment (retention); never the active one."""
        if len(self.segments) < 2:
            raise OffsetOutOfRangeError("the active segment is never deleted")
        seg = self.segments.pop(0)
        self._bases.pop(0)
        seg.delete()
        return seg

    # -- reading -------------------------------------------------------------------------

    def read(self, offset: int, max_bytes: int) -> memoryview:
        """Whole batches from the one containing ``offset``; empty at the log end."""
        if offset == self.next_offset:
            return memoryview(b"")
        if not self.log_start_offset <= offset < self.next_offset:
            raise OffsetOutOfRangeError(
                f"offset {offset} is outside {self.topic}/{self.partition}, which holds "
                f"[{self.log_start_offset}, {self.next_offset})"
            )
        i = bisect.bisect_right(self._bases, offset) - 1
        while i < len(self.segments):
            try:
                data = self.segments[i].read(offset, max_bytes)
            except CorruptBatchError as exc:
                raise self._damage_found(self.segments[i], offset, exc) from None
            if len(data):
                return data
            i += 1  # a gap left by a damaged segment: continue at the next one
            if i < len(self.segments):
                offset = self.segments[i].base_offset
        return memoryview(b"")

    def _damage_found(self, seg: Segment, offset: int, exc: CorruptBatchError) -> CorruptBatchError:
        """Report a damaged spot met by a read (once per offset) and name where to resume."""
        resume = seg.resume_offset_after_damage(offset)
        if offset not in self._reported_damage:
            self._reported_damage.add(offset)
            self.corrupt_batches += 1
            log_event(logger, logging.ERROR, "corrupt_batch", topic=self.topic, partition=self.partition,
                      offset=offset, resume_offset=resume, segment=seg.log_path.name, reason=exc.message)
        return CorruptBatchError.at(
            f"{self.topic}/{self.partition}: corrupt batch at offset {offset}: {exc.message}", resume)

    def offset_for_time(self, timestamp_ns: int) -> int | None:
        found = self.record_at_time(timestamp_ns)
        return None if found is None else found[0]

    def record_at_time(self, timestamp_ns: int) -> tuple[int, int] | None:
        """(offset, record timestamp ns) of the first record at or after ``timestamp_ns``."""
        for seg in self.segments:
            if seg.max_timestamp is not None and seg.max_timestamp >= timestamp_ns:
                found = seg.record_at_time(timestamp_ns)
                if found is not None:
                    return found
        return None

    def segment_stats(self) -> list[tuple[int, int, int]]:
        """(base offset, next offset, bytes) per segment, oldest first."""
        return [(s.base_offset, s.next_offset, s.size) for s in self.segments]

    # -- shutdown ------------------------------------------------------------------------

    def close(self, *, clean: bool = True) -> None:
        self.flush()
        for seg in self.segments:
            seg.flush_indexes()
            seg.close()
        if clean:
            self.producers.write_snapshot(self.directory, self.next_offset)
            fd = os.open(self.directory / CLEAN_SHUTDOWN_FILE, os.O_WRONLY | os.O_CREAT, 0o640)
            os.fsync(fd)
            os.close(fd)
            fsync_dir(self.directory)
