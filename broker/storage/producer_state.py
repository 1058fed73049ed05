"""Idempotent produce: per-partition producer state, as Kafka keeps it (format: docs/FORMAT.md).

A batch with ``producerId >= 0`` carries the producer's epoch and the sequence number of its
first record (``baseSequence``; the last record's is ``baseSequence + lastOffsetDelta``,
both int32 wrapping to 0). Per producer the partition remembers its epoch and its last
``RECENT_BATCHES`` appended batches (first and last sequence, first and last offset):

- a batch equal to one of those (same epoch, same sequences) is a retry: it is acknowledged
  with the offsets it was written at and never written again;
- a batch whose first sequence follows the last one appended is appended;
- any other sequence is a gap or a reorder: ``OutOfOrderSequenceError``, nothing written;
- an older epoch than the producer's is fenced (``ProducerFencedError``); a newer epoch
  must start at sequence 0;
- a producer the partition does not know is accepted at any sequence (Kafka, KIP-360: its
  state may have gone with retention or it never wrote here).

Durability: the table is rebuilt at start-up from a snapshot (``producer-state.json`` in the
partition directory, written by the temp-fsync-rename recipe at every segment roll and at a
clean close, holding the table as of an offset) plus a scan of the batch headers after
that offset (the log tail); without a usable snapshot the whole log's headers are scanned.
So a retry after a broker restart is still recognised.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import OutOfOrderSequenceError, ProducerFencedError
from ..logs import log_event
from ..records import BatchHeader
from .layout import atomic_write

logger = logging.getLogger("broker.storage")

SNAPSHOT_FILE = "producer-state.json"
RECENT_BATCHES = 5  # Kafka's max.in.flight for idempotence: retries come from these
_SEQUENCE_SPACE = 1 << 31


def last_sequence(header: BatchHeader) -> int:
    return (header.base_sequence + header.last_offset_delta) % _SEQUENCE_SPACE


@dataclass(slots=True)
class ProducerEntry:
    epoch: int
    # (first sequence, last sequence, base offset, last offset), oldest first
    batches: list[tuple[int, int, int, int]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "batches": [list(b) for b in self.batches]}


class ProducerStateTable:
    """The producers of one partition (see the module docstring)."""

    def __init__(self) -> None:
        self._producers: dict[int, ProducerEntry] = {}

    def __len__(self) -> int:
        return len(self._producers)

    def check(self, header: BatchHeader, where: str) -> tuple[int, int] | None:
        """For an idempotent batch about to be appended: (base offset, last offset) it was
        already written at (a retry), or None to append it. Raises OutOfOrderSequenceError or
        ProducerFencedError, naming ``where``."""
        if header.producer_id < 0:
            return None
        entry = self._producers.get(header.producer_id)
        if entry is None:
            return None
        if header.producer_epoch < entry.epoch:
            raise ProducerFencedError(
                f"{where}: producer {header.producer_id} epoch {header.producer_epoch} "
                f"is fenced by epoch {entry.epoch}")
        first, last = header.base_sequence, last_sequence(header)
        if header.producer_epoch > entry.epoch:
            if first != 0:
                raise OutOfOrderSequenceError(
                    f"{where}: producer {header.producer_id} new epoch {header.producer_epoch} starts at "
                    f"sequence {first}, want 0")
            return None
        for seq_first, seq_last, base, last_offset in entry.batches:
            if (seq_first, seq_last) == (first, last):
                return base, last_offset
        expected = (entry.batches[-1][1] + 1) % _SEQUENCE_SPACE if entry.batches else first
        if first != expected:
            raise OutOfOrderSequenceError(
                f"{where}: producer {header.producer_id} sent sequence {first}, expected {expected}")
        return None

    def record(self, header: BatchHeader, base_offset: int) -> None:
        """Remember an idempotent batch appended at ``base_offset`` (also used by the scan)."""
        if header.producer_id < 0:
            return
        entry = self._producers.get(header.producer_id)
        if entry is None or header.producer_epoch > entry.epoch:
            entry = self._producers[header.producer_id] = ProducerEntry(header.producer_epoch)
        entry.batches.append((header.base_sequence, last_sequence(header), base_offset,
                              base_offset + header.last_offset_delta))
        del entry.batches[:-RECENT_BATCHES]

    def write_snapshot(self, directory: Path, offset: int) -> bool:
        """The table as of ``offset`` (the log's next offset), crash-safe. A snapshot only
        shortens the start-up scan: one that cannot be written (a full disk) is logged and
        skipped, and the previous one, older but still right, stays."""
        path = directory / SNAPSHOT_FILE
        if not self._producers and not path.exists():
            return True  # nothing idempotent was ever written here
        data = {"offset": offset, "producers": {str(pid): e.to_json() for pid, e in self._producers.items()}}
        try:
            atomic_write(path, json.dumps(data).encode())
        except OSError as exc:
            log_event(logger, logging.WARNING, "producer_snapshot_failed", path=path, reason=exc,
                      effect="the next start scans from the previous snapshot")
            return False
        return True

    @classmethod
    def read_snapshot(cls, directory: Path, log_start: int, next_offset: int) -> tuple[ProducerStateTable, int]:
        """(table, offset to scan from): the snapshot's when it is readable and lies inside the
        log, else an empty table and ``log_start`` (the whole log is scanned)."""
        path = directory / SNAPSHOT_FILE
        table = cls()
        try:
            data = json.loads(path.read_text())
            offset = int(data["offset"])
            if not log_start <= offset <= next_offset:
                raise ValueError(f"snapshot offset {offset} outside the log [{log_start}, {next_offset}]")
            for pid, entry in data["producers"].items():
                table._producers[int(pid)] = ProducerEntry(
                    int(entry["epoch"]), [_batch_entry(b) for b in entry["batches"]][-RECENT_BATCHES:])
            return table, offset
        except FileNotFoundError:
            return cls(), log_start
        except (ValueError, KeyError, TypeError) as exc:
            log_event(logger, logging.WARNING, "producer_snapshot_unusable", path=path, reason=exc,
                      effect="the whole log is scanned")
            return cls(), log_start


PRODUCER_IDS_FILE = "producer-ids.json"
_ID_BLOCK = 1000


class ProducerIdAllocator:
    """Producer ids for InitProducerId, unique across broker restarts: blocks of ids are
    reserved in ``producer-ids.json`` (crash-safe write) before any id of a block is handed
    out, so a crash can skip ids but never repeat one."""

    def __init__(self, data_dir: Path):
        self._path = data_dir / PRODUCER_IDS_FILE
        self._next = self._limit = 0

    def allocate(self) -> int:
        if self._next >= self._limit:
            try:
                start = int(json.loads(self._path.read_text())["next_block"])
            except FileNotFoundError:
                start = 0
            except (ValueError, KeyError, TypeError) as exc:
                # never reuse an id: an unreadable file skips far ahead of any id it could hold
                start = 1 << 40
                log_event(logger, logging.WARNING, "producer_ids_unreadable", path=self._path, reason=exc,
                          effect=f"ids continue at {start}")
            atomic_write(self._path, json.dumps({"next_block": start + _ID_BLOCK}).encode())
            self._next, self._limit = start, start + _ID_BLOCK
        self._next += 1
        return self._next - 1


def _batch_entry(raw: list[Any]) -> tuple[int, int, int, int]:
    """One snapshot batch entry: (first sequence, last sequence, base offset, last offset)."""
    first, last, base, last_offset = (int(x) for x in raw)
    return first, last, base, last_offset
