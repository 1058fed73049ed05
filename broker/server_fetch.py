"""FETCH in the broker loop: reads, long polls (parked fetches) and their wake-ups.

Guarantees:
- A fetch returns whole stored batches from each listed partition, in list order, until its
  byte budget (``max_bytes``, clamped to MAX_FETCH_REPLY_BYTES) is spent; a partition reached
  with budget left gets at least one batch. The data leaves as the bytes read from the
  segment file (``copy=False``): records are never decoded here.
- A fetch with ``max_wait_ms`` and no data is parked until an append to one of its
  partitions (``wake``), its topic's deletion (``wake_topic``) or its deadline (``expire``);
  per client at most MAX_PARKED_PER_CLIENT (else BrokerBusy), in all MAX_PARKED_PARTITIONS
  partition entries (else answered at once).
- Per-partition errors are answered per partition, with ``log_start`` and ``next_offset``;
  a position past the end of the log epoch the reader names is LogTruncated with
  ``truncated_to``.
- ``_parked_on`` counts, per partition, the parked fetches listing it: it may count fetches
  already gone (a produce then scans for nothing), never misses one, so a produce to a
  partition no fetch waits for costs one lookup however many fetches are parked.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import zmq

from . import protocol as P
from . import protocol_messages as M
from .errors import BrokerBusyError, BrokerError, LogTruncatedError, OffsetOutOfRangeError, StorageError
from .limits import MAX_FETCH_REPLY_BYTES, MAX_PARKED_PARTITIONS, MAX_PARKED_PER_CLIENT, BrokerStats, ReplyBacklog
from .storage import Storage


@dataclass
class ParkedFetch:
    deadline: float
    identity: bytes
    request_id: int
    request: M.FetchRequest
    budget: int  # bytes of data this reply may carry (max_bytes, clamped)


class FetchService:
    def __init__(self, storage: Storage, stats: BrokerStats, reply_backlog: ReplyBacklog,
                 send: Callable[[bytes, list[Any]], None]):
        self._storage = storage
        self._stats = stats
        self._reply_backlog = reply_backlog
        self._send = send
        self._parked: list[ParkedFetch] = []
        self._parked_on: dict[tuple[str, int], int] = {}

    @property
    def parked(self) -> int:
        return len(self._parked)

    def next_deadline(self) -> float | None:
        return min(f.deadline for f in self._parked) if self._parked else None

    def handle(self, identity: bytes, request_id: int, request: M.FetchRequest) -> None:
        """Answer a FETCH now, or park it until data arrives or its wait expires."""
        budget = request.max_bytes
        if budget > MAX_FETCH_REPLY_BYTES:
            budget = MAX_FETCH_REPLY_BYTES  # one reply's memory is bounded
            self._stats.fetch_max_bytes_clamped += 1
        self._check_reply_backlog(identity)
        fetch = ParkedFetch(time.monotonic() + request.max_wait_ms / 1000, identity, request_id, request, budget)
        reply, has_data = self._read(fetch)
        if not has_data and request.max_wait_ms > 0 and self._may_park(identity, len(request.partitions)):
            self._parked.append(fetch)
            for position in request.partitions:
                key = (position.topic, position.partition)
                self._parked_on[key] = self._parked_on.get(key, 0) + 1
        else:
            self._send_reply(identity, reply)

    def wake(self, topic: str, partition: int) -> None:
        """Answer the fetches parked on a partition that was appended to."""
        if not self._parked or (topic, partition) not in self._parked_on:
            return
        self._answer_taken(lambda f: any(p.topic == topic and p.partition == partition for p in f.request.partitions))

    def wake_topic(self, topic: str) -> None:
        """A deleted topic: its readers hear "unknown topic" now (their other partitions too)."""
        self._answer_taken(lambda f: any(p.topic == topic for p in f.request.partitions))

    def expire(self, now: float) -> None:
        if self._parked:
            self._answer_taken(lambda f: f.deadline <= now)

    def take_all(self) -> list[ParkedFetch]:
        """Every parked fetch, no longer parked (shutdown answers each with ``answer``)."""
        taken, self._parked = self._parked, []
        self._parked_on.clear()
        return taken

    def answer(self, fetch: ParkedFetch) -> None:
        try:
            self._check_reply_backlog(fetch.identity)
        except BrokerBusyError as exc:
            self._send(fetch.identity, P.error_reply(P.FETCH, fetch.request_id, exc))
            return
        reply, _ = self._read(fetch)
        self._send_reply(fetch.identity, reply)

    def _answer_taken(self, due: Callable[[ParkedFetch], bool]) -> None:
        taken = [f for f in self._parked if due(f)]
        if not taken:
            return
        self._parked = [f for f in self._parked if not due(f)]
        for fetch in taken:
            for position in fetch.request.partitions:
                key = (position.topic, position.partition)
                left = self._parked_on.pop(key, 0) - 1
                if left > 0:
                    self._parked_on[key] = left
        for fetch in taken:
            self.answer(fetch)

    def _may_park(self, identity: bytes, partitions: int) -> bool:
        """Whether a fetch may wait for data; raises BrokerBusyError when its client has too many
        waiting, False (answer now) when all clients' waiting fetches reach the broker's cap."""
        if sum(1 for f in self._parked if f.identity == identity) >= MAX_PARKED_PER_CLIENT:
            self._stats.fetch_parked_refused += 1
            raise BrokerBusyError(f"this client already has {MAX_PARKED_PER_CLIENT} fetches waiting for data")
        if sum(len(f.request.partitions) for f in self._parked) + partitions > MAX_PARKED_PARTITIONS:
            self._stats.fetch_parked_overflow += 1
            return False
        return True

    def _check_reply_backlog(self, identity: bytes) -> None:
        try:
            self._reply_backlog.check(identity)
        except BrokerBusyError:
            self._stats.reply_backlog_refused += 1
            raise

    def _send_reply(self, identity: bytes, reply: list[Any]) -> None:
        """Send a fetch reply, its data counted as unread until ZeroMQ has written it (see
        ReplyBacklog: the tracker of its last frame with data, for large replies and one in
        many small ones; ZeroMQ writes a message's frames, and a client's messages, in order)."""
        nbytes = sum(len(f) for f in reply[2:])
        if not nbytes:
            self._send(identity, reply)
        elif not self._reply_backlog.wants_tracker(identity, nbytes):
            self._send(identity, reply)
            self._reply_backlog.add_untracked(identity, nbytes)
        else:
            last = max(i for i in range(2, len(reply)) if len(reply[i]))
            tracked = zmq.Frame(reply[last], copy=False, track=True)
            self._send(identity, [*reply[:last], tracked, *reply[last + 1:]])
            self._reply_backlog.add(identity, tracked.tracker, nbytes)

    def _read(self, fetch: ParkedFetch) -> tuple[list[Any], bool]:
        """The reply frames of a fetch and whether there is news (data or an error)."""
        budget = fetch.budget
        entries: list[M.FetchedPartition] = []
        payloads: list[Any] = []
        has_data = False
        for topic, partition, offset, epoch in fetch.request.partitions:
            entry = M.FetchedPartition(topic=topic, partition=partition)
            data: Any = b""
            try:
                log = self._storage.log(topic, partition)
                epochs = self._storage.log_epochs(topic, partition)
                entry.log_start, entry.next_offset = log.log_start_offset, log.next_offset
                entry.durable_offset, entry.topic_id = log.durable_offset, self._storage.topic_id(topic)
                entry.log_epoch = epochs.current
                if epoch is not None and epoch != epochs.current:
                    end = epochs.end_offset(epoch, log.next_offset)
                    if offset > end:  # recovery took back [end, offset): the reader must hear it
                        entry.truncated_to = end
                        raise LogTruncatedError(f"{topic}/{partition}: offsets from {end} up to {offset} were "
                                                f"taken back by crash recovery (log epoch {epoch} ended at {end})")
                if budget > 0:
                    data = log.read(offset, budget)
                    budget -= len(data)
            except (BrokerError, OSError) as exc:
                err = exc if isinstance(exc, BrokerError) else StorageError(f"reading {topic}/{partition}: {exc}")
                entry.error, entry.message = err.code, err.message
                if isinstance(err, OffsetOutOfRangeError):  # a reader's position is gone: count it by kind
                    kind = "log_truncated" if isinstance(err, LogTruncatedError) else "offset_out_of_range"
                    self._stats.fetch_position_errors[kind] = self._stats.fetch_position_errors.get(kind, 0) + 1
                has_data = True  # errors are news: answer now
            if len(data):
                has_data = True
            entry.bytes = len(data)
            entries.append(entry)
            payloads.append(data)
        return M.ok_reply(fetch.request_id, fetch.request, M.FetchReply(partitions=entries), payloads), has_data
