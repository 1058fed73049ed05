"""The storage engine: the topics and partitions of one data directory.

Guarantees:
- Topic configs are stored in ``<topic>/topic.json`` (atomic write); partitions only grow.
- Every topic has an id (``<topic>/topic.id``, a uuid made at creation; a topic from an older
  data directory gets one at open), so a reader can tell a re-created topic from the old one.
- Every partition has a log epoch (``log_epochs``), bumped at each unclean open, so a reader
  learns when recovery took back offsets it had already been served.
- Deleting a topic renames its directory first (``.deleted`` suffix, then removed), so a
  crash mid-delete never leaves a half topic that looks alive; leftovers are removed on open.
- ``recovery-points.json`` records each partition's durable offset, written atomically at
  most every ``RECOVERY_CHECKPOINT_INTERVAL_S`` and at close; after a crash only data above
  it is CRC-scanned (see ``partition_log``).
- Flush policy ``interval`` is driven by ``flush_due`` (the server calls it on a timer).
- Deletions by retention and the disk guard are counted by reason in ``deletion_counts``;
  damage met by reads in ``corrupt_batch_count``.
- Pins (events' offset ranges, ``pins.py``) are owned by ``self.pins``; the engine resolves
  their windows to offsets, hands each partition its ranges (``PartitionLog.pin_ranges``) and
  notes any pinned deletion in the pin it hit.

Not thread-safe: one event loop owns a Storage.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
import uuid
from pathlib import Path
from typing import Any

from ..errors import (
    InvalidConfigError,
    InvalidRequestError,
    StorageError,
    TopicExistsError,
    UnknownPartitionError,
    UnknownTopicError,
)
from ..logs import log_event
from ..topic_config import TopicConfig
from .layout import (
    DELETED_SUFFIX,
    RECOVERY_POINTS_FILE,
    TOPIC_CONFIG_FILE,
    TOPIC_ID_FILE,
    atomic_write,
    fsync_dir,
    partition_dir,
    topic_dir,
    validate_topic_name,
)
from .log_epochs import LogEpochs
from .partition_log import AppendResult, PartitionLog, RecoveryReport
from .pins import Pin, PinRange, PinStore, validate_pin_id
from .producer_state import ProducerIdAllocator
from .retention import Deletion, DiskGuard, enforce_disk_guard, enforce_topic_retention

logger = logging.getLogger("broker.storage")

RECOVERY_CHECKPOINT_INTERVAL_S = 5.0

__all__ = ["AppendResult", "DiskGuard", "Storage"]


class Storage:
    def __init__(self, data_dir: str | Path, defaults: TopicConfig | None = None, disk_guard: DiskGuard | None = None):
        self.data_dir = Path(data_dir)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.defaults = defaults or TopicConfig.model_validate({})
        self.disk_guard = disk_guard or DiskGuard.model_validate({})
        self._configs: dict[str, TopicConfig] = {}
        self._logs: dict[str, list[PartitionLog]] = {}
        self._topic_ids: dict[str, str] = {}
        self._epochs: dict[tuple[str, int], LogEpochs] = {}
        self.deletion_counts: dict[str, int] = {}
        self.unshipped_deleted_bytes = 0
        self.pinned_deleted_bytes = 0
        self.recovery_reports: list[RecoveryReport] = []
        self._checkpointed: dict[str, int] = {}
        self._last_checkpoint = time.monotonic()
        self._closed = False
        self.producer_ids = ProducerIdAllocator(self.data_dir)  # InitProducerId (idempotent produce)
        self._open_existing()
        self.pins = PinStore(self.data_dir)
        self._hand_out_pins()

    # -- opening -------------------------------------------------------------------------

    def _read_recovery_points(self) -> dict[str, int]:
        path = self.data_dir / RECOVERY_POINTS_FILE
        try:
            points = json.loads(path.read_text())
            if not isinstance(points, dict):
                raise ValueError("not an object")
            return {str(k): int(v) for k, v in points.items()}
        except FileNotFoundError:
            return {}
        except (ValueError, TypeError) as exc:
            log_event(logger, logging.WARNING, "recovery_points_unreadable", path=path, reason=exc,
                      effect="active segments are fully scanned")
            return {}

    def _open_existing(self) -> None:
        points = self._read_recovery_points()
        for entry in sorted(os.listdir(self.data_dir)):
            path = self.data_dir / entry
            if DELETED_SUFFIX in entry and path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
                continue
            config_path = path / TOPIC_CONFIG_FILE
            if not config_path.is_file():
                continue
            try:
                validate_topic_name(entry)
                config = TopicConfig.model_validate_json(config_path.read_text())
            except Exception as exc:
                log_event(logger, logging.ERROR, "topic_skipped", topic=entry, path=config_path, reason=exc)
                continue
            self._configs[entry] = config
            self._topic_ids[entry] = self._read_topic_id(entry)
            self._logs[entry] = [
                self._open_partition(entry, p, config, points.get(f"{entry}/{p}"))
                for p in range(config.partitions)
            ]

    def _read_topic_id(self, topic: str) -> str:
        path = topic_dir(self.data_dir, topic) / TOPIC_ID_FILE
        try:
            text = path.read_text().strip()
            if len(text) == 32 and all(c in "0123456789abcdef" for c in text):
                return text
            log_event(logger, logging.WARNING, "topic_id_unreadable", topic=topic, path=path, effect="new id")
        except FileNotFoundError:
            pass  # a data directory from before topic ids
        return self._write_topic_id(topic)

    def _write_topic_id(self, topic: str) -> str:
        topic_id = uuid.uuid4().hex
        atomic_write(topic_dir(self.data_dir, topic) / TOPIC_ID_FILE, topic_id.encode())
        return topic_id

    def _open_partition(self, topic: str, partition: int, config: TopicConfig, recovery_point: int | None,
                        *, created: bool = False) -> PartitionLog:
        directory = partition_dir(self.data_dir, topic, partition)
        log = PartitionLog(directory, topic, partition, config, recovery_point=recovery_point)
        self.recovery_reports.append(log.report)
        epochs = LogEpochs(directory)
        if created:
            epochs.save()
        elif not log.report.clean:
            epoch = epochs.bump(log.next_offset)
            log_event(logger, logging.INFO, "log_epoch_bumped", topic=topic, partition=partition, epoch=epoch,
                      start_offset=log.next_offset, reason="unclean open")
        self._epochs[(topic, partition)] = epochs
        log.leader_epoch = epochs.current
        return log

    # -- topics --------------------------------------------------------------------------

    def topics(self) -> dict[str, TopicConfig]:
        return dict(self._configs)

    def has_topic(self, name: str) -> bool:
        return name in self._configs

    def topic_config(self, name: str) -> TopicConfig:
        try:
            return self._configs[name]
        except KeyError:
            raise UnknownTopicError(f"unknown topic {name!r}") from None

    def create_topic(self, name: str, config: TopicConfig | None = None) -> TopicConfig:
        validate_topic_name(name)
        if name in self._configs:
            raise TopicExistsError(f"topic {name!r} already exists")
        config = config or self.defaults
        directory = topic_dir(self.data_dir, name)
        try:
            directory.mkdir(exist_ok=True)
            atomic_write(directory / TOPIC_CONFIG_FILE, config.model_dump_json(by_alias=True).encode())
            topic_id = self._write_topic_id(name)
            logs = [self._open_partition(name, p, config, None, created=True) for p in range(config.partitions)]
            fsync_dir(self.data_dir)
        except OSError as exc:
            raise StorageError(f"creating topic {name!r}: {exc}") from None
        self._configs[name] = config
        self._topic_ids[name] = topic_id
        self._logs[name] = logs
        log_event(logger, logging.INFO, "topic_created", topic=name, topic_id=topic_id, partitions=config.partitions,
                  codec=config.codec)
        return config

    def delete_topic(self, name: str) -> None:
        self.topic_config(name)
        for log in self._logs.pop(name):
            log.close(clean=False)
        del self._configs[name]
        del self._topic_ids[name]
        for key in [k for k in self._epochs if k[0] == name]:
            del self._epochs[key]
        directory = topic_dir(self.data_dir, name)
        doomed = directory.with_name(f"{name}{DELETED_SUFFIX}-{time.time_ns()}")
        os.rename(directory, doomed)
        fsync_dir(self.data_dir)
        shutil.rmtree(doomed, ignore_errors=True)
        self.checkpoint_recovery_points()  # a re-created topic must not inherit old points
        self.pins.forget_topic(name)
        log_event(logger, logging.INFO, "topic_deleted", topic=name)

    def configure_topic(self, name: str, overrides: dict[str, Any]) -> TopicConfig:
        old = self.topic_config(name)
        try:
            new = old.merged(overrides)
        except Exception as exc:  # pydantic ValidationError: say which key was wrong
            raise InvalidConfigError(f"invalid config for topic {name!r}: {exc}") from None
        if new.partitions < old.partitions:
            raise InvalidConfigError(
                f"topic {name!r} has {old.partitions} partitions; partitions can only grow"
            )
        atomic_write(topic_dir(self.data_dir, name) / TOPIC_CONFIG_FILE, new.model_dump_json(by_alias=True).encode())
        logs = self._logs[name]
        for log in logs:
            log.config = new  # its segments take the new index interval and future skew
        for p in range(old.partitions, new.partitions):
            logs.append(self._open_partition(name, p, new, None, created=True))
        self._configs[name] = new
        log_event(logger, logging.INFO, "topic_configured", topic=name, changes=",".join(sorted(overrides)))
        return new

    def topic_id(self, name: str) -> str:
        try:
            return self._topic_ids[name]
        except KeyError:
            raise UnknownTopicError(f"unknown topic {name!r}") from None

    def log_epochs(self, topic: str, partition: int) -> LogEpochs:
        """The epoch history of a partition (``log`` raises for unknown ones first)."""
        return self._epochs[(topic, partition)]

    def log(self, topic: str, partition: int) -> PartitionLog:
        logs = self._logs.get(topic)
        if logs is None:
            raise UnknownTopicError(f"unknown topic {topic!r}")
        if not isinstance(partition, int) or not 0 <= partition < len(logs):
            raise UnknownPartitionError(f"topic {topic!r} has partitions 0..{len(logs) - 1}, not {partition!r}")
        return logs[partition]

    def partition_logs(self, topic: str | None = None) -> list[PartitionLog]:
        if topic is not None:
            self.topic_config(topic)
            return list(self._logs[topic])
        return [log for logs in self._logs.values() for log in logs]

    # -- flushing ------------------------------------------------------------------------

    def flush_due(self, now_ns: int | None = None) -> list[tuple[str, int, int]]:
        now = time.monotonic_ns() if now_ns is None else now_ns
        flushed = []
        for log in self.partition_logs():
            if log.dirty and log.config.flush == "interval" and now - log.last_flush_ns >= log.config.flush_interval_ns:
                flushed.append((log.topic, log.partition, log.flush()))
        if time.monotonic() - self._last_checkpoint >= RECOVERY_CHECKPOINT_INTERVAL_S:
            self.checkpoint_recovery_points()
        return flushed

    def next_flush_delay_s(self) -> float | None:
        now = time.monotonic_ns()
        delays = [
            (log.last_flush_ns + log.config.flush_interval_ns - now) / 1e9
            for log in self.partition_logs()
            if log.dirty and log.config.flush == "interval"
        ]
        return max(0.0, min(delays)) if delays else None

    def flush_all(self) -> None:
        for log in self.partition_logs():
            log.flush()
        self.checkpoint_recovery_points()

    def checkpoint_recovery_points(self) -> None:
        points = {f"{log.topic}/{log.partition}": log.durable_offset for log in self.partition_logs()}
        self._last_checkpoint = time.monotonic()
        if points == self._checkpointed:
            return
        atomic_write(self.data_dir / RECOVERY_POINTS_FILE, json.dumps(points, sort_keys=True).encode())
        self._checkpointed = points

    # -- stats ---------------------------------------------------------------------------

    @property
    def corrupt_batch_count(self) -> int:
        """Damaged spots met by reads since start (bad header chain or offset continuity),
        each also logged once as ``event=corrupt_batch``."""
        return sum(log.corrupt_batches for log in self.partition_logs())

    # -- retention -----------------------------------------------------------------------

    def set_protected_offset(self, topic: str, partition: int, offset: int | None) -> None:
        """Records at or above ``offset`` are kept by retention (the mirror has not shipped them)."""
        self.log(topic, partition).protected_offset = offset

    def enforce_retention(self, now_ns: int | None = None) -> list[Deletion]:
        now = time.time_ns() if now_ns is None else now_ns
        if self.pins.close_due(now, self._offset_after):
            self._hand_out_pins()
        logs = self.partition_logs()
        deleted = enforce_topic_retention(logs, now)
        deleted += enforce_disk_guard(logs, self.data_dir, self.disk_guard, now)
        for d in deleted:
            self.deletion_counts[d.reason] = self.deletion_counts.get(d.reason, 0) + 1
            if d.unshipped:
                self.unshipped_deleted_bytes += d.size_bytes
            if d.pinned:
                self.pinned_deleted_bytes += d.size_bytes
                self.pins.record_loss(d.topic, d.partition, d.base_offset, d.next_offset, d.size_bytes, d.reason)
        return deleted

    # -- pins (events) -------------------------------------------------------------------

    def _hand_out_pins(self) -> None:
        for log in self.partition_logs():
            log.pin_ranges = self.pins.ranges_of(log.topic, log.partition)

    def _offset_after(self, topic: str, partition: int, end_ns: int) -> int:
        """The first offset whose capture time is past ``end_ns`` (the log end if none)."""
        if not self.has_topic(topic) or partition >= len(self._logs[topic]):
            return 0
        log = self._logs[topic][partition]
        found = log.offset_for_time(end_ns + 1)
        return log.next_offset if found is None else found

    def set_pin(self, pin_id: str, label: str, topics: list[str], start_ns: int, end_ns: int,
                now_ns: int | None = None) -> Pin:
        """Pin ``topics`` (all partitions) from ``start_ns`` on; closed at ``end_ns`` (pins.py)."""
        now = time.time_ns() if now_ns is None else now_ns
        validate_pin_id(pin_id)
        if end_ns < start_ns:
            raise InvalidRequestError(f"event {pin_id!r}: the window ends before it starts")
        if not topics:
            raise InvalidRequestError(f"event {pin_id!r}: no topics to pin")
        ranges = []
        for topic in topics:
            config = self.topic_config(topic)  # UnknownTopicError names it
            reach_ns = now - start_ns
            if config.retention_ns is not None and reach_ns > config.retention_ns:
                raise InvalidRequestError(
                    f"event {pin_id!r}: its window starts {reach_ns / 1e9:.0f}s ago but topic {topic!r} keeps "
                    f"only {config.retention_ns / 1e9:.0f}s (retention_age); shorten --before")
            for log in self._logs[topic]:
                first = log.offset_for_time(start_ns)
                ranges.append(PinRange(topic, log.partition, log.next_offset if first is None else first, None))
        pin = Pin(pin_id, label, start_ns, end_ns, now, list(topics), ranges)
        self.pins.add(pin)
        self.pins.close_due(now, self._offset_after)
        self._hand_out_pins()
        return pin

    def clear_pin(self, pin_id: str) -> None:
        self.pins.remove(pin_id)
        self._hand_out_pins()

    def pinned_bytes(self, ranges: list[PinRange]) -> int:
        """Bytes of the segments holding any offset of ``ranges`` (each segment counted once)."""
        held: dict[tuple[str, int, int], int] = {}
        for r in ranges:
            if not self.has_topic(r.topic) or r.partition >= len(self._logs[r.topic]):
                continue
            for seg in self._logs[r.topic][r.partition].segments:
                if r.overlaps(seg.base_offset, seg.next_offset):
                    held[(r.topic, r.partition, seg.base_offset)] = seg.size
        return sum(held.values())

    def total_pinned_bytes(self) -> int:
        return self.pinned_bytes([r for pin in self.pins.all() for r in pin.ranges])

    def pins_report(self) -> dict[str, Any]:
        """Every pin with the bytes it holds, and the total (overlaps counted once)."""
        pins = []
        for pin in self.pins.all():
            body = pin.to_json()
            body["pinned_bytes"] = self.pinned_bytes(pin.ranges)
            pins.append(body)
        return {"pins": pins, "pinned_bytes": self.total_pinned_bytes(),
                "pinned_deleted_bytes": self.pinned_deleted_bytes}

    # -- shutdown ------------------------------------------------------------------------

    def close(self) -> None:
        if self._closed:
            return
        for log in self.partition_logs():
            log.close(clean=True)
        self.checkpoint_recovery_points()
        self._closed = True
