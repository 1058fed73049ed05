"""The producer's record accumulator: per-partition batches and the bounded buffer (as librdkafka's
partition queues and the Java client's RecordAccumulator).

Invariants:
- Per partition at most one *open* batch (records still joining it) and a FIFO queue of
  *sealed* batches waiting for the I/O thread; batches leave the queue in order, and a
  batch sent again (a retry after a timeout) goes back to the front, before anything later.
- A batch is sealed when it reaches ``max_batch_bytes``, when ``linger_s`` has passed, or
  on flush/close; a partition whose ``max_in_flight`` slots are all taken keeps its open
  batch open past ``linger_s`` (up to ``max_batch_bytes``): under load batches grow
  instead of queueing.
- ``buffer_bytes`` caps what is buffered plus in flight (``buffered``). A full buffer
  blocks ``reserve`` up to ``block_timeout_s`` (``on_full="block"``) or refuses at once
  (``"fail"``) with ProducerBufferFullError. Bytes of batches whose outcome is unknown stay
  held until the sender's fence lifts (they may still sit in the socket).
- One condition variable (``cond``) guards all of it; the sender holds it while it takes
  batches and settles them. Methods named ``*_locked`` expect it held.

An open batch keeps records as columns (values, keys, headers, timestamps); it is encoded
whole when first sent (``broker.records.encode_batch``). ``send_many`` chunks arrive
encoded already.
"""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Mapping
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from ..errors import BrokerError, ProducerBufferFullError

TopicPartition = tuple[str, int]


@dataclass
class OpenBatch:
    """Records of one partition still joining a batch (columns, encoded when first sent)."""

    opened: float
    values: list[Any] = field(default_factory=list)
    keys: list[bytes | None] = field(default_factory=list)
    headers: list[Mapping[str, bytes | str] | None] = field(default_factory=list)
    timestamps: list[int] = field(default_factory=list)
    future: Future[Any] = field(default_factory=Future)  # the whole batch's; records hold RecordFutures of it
    nbytes: int = 0
    plain: bool = True  # no keys and no headers: the bulk encode path applies


@dataclass
class ProducerBatch:
    """A sealed batch: queued, in flight, or back in its queue for a retry."""

    topic: str
    partition: int
    count: int
    nbytes: int
    future: Future[Any]  # resolves to the DeliveryResult of the whole batch (or send_many chunk)
    data: bytes | bytearray | None = None
    open_batch: OpenBatch | None = None
    sent_at: float = 0.0
    first_sent_at: float | None = None  # the first send; retries end delivery_timeout_s after it
    sequence: int | None = None  # the idempotent producer's sequence of its first record

    @property
    def tp(self) -> TopicPartition:
        return (self.topic, self.partition)


class RecordAccumulator:
    def __init__(self, *, max_batch_bytes: int, linger_s: float, max_in_flight: int, buffer_bytes: int,
                 on_full: str, block_timeout_s: float, endpoint: str):
        self.max_batch_bytes = max_batch_bytes
        self.linger_s = linger_s
        self.max_in_flight = max(1, max_in_flight)
        self.buffer_bytes = buffer_bytes
        self.on_full = on_full
        self.block_timeout_s = block_timeout_s
        self._endpoint = endpoint  # named in errors
        self.cond = threading.Condition()
        self._open: dict[TopicPartition, OpenBatch] = {}
        self._sealed: dict[TopicPartition, collections.deque[ProducerBatch]] = collections.defaultdict(
            collections.deque)
        self._in_flight_per_tp: collections.Counter[TopicPartition] = collections.Counter()
        self._buffered = 0
        self._held_unknown = 0  # bytes of batches with an unknown outcome, held until the fence lifts
        self.closing = False
        self.flush_requested = False

    # -- the application's side ----------------------------------------------------------

    @property
    def buffered(self) -> int:
        return self._buffered

    def reserve_locked(self, size: int) -> None:
        """Wait for (or refuse) ``size`` bytes of buffer space."""
        if self.closing:
            raise BrokerError("producer is closed")
        if self._buffered == 0 or self._buffered + size <= self.buffer_bytes:
            self._buffered += size
            return
        if self.on_full == "fail":
            raise ProducerBufferFullError(
                f"producer buffer full ({self._buffered} of {self.buffer_bytes} bytes): "
                f"broker at {self._endpoint} slow or down")
        deadline = time.monotonic() + self.block_timeout_s
        while self._buffered and self._buffered + size > self.buffer_bytes:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or self.closing:
                raise ProducerBufferFullError(
                    f"producer buffer stayed full for {self.block_timeout_s:.1f}s: "
                    f"broker at {self._endpoint} slow or down")
            self.cond.wait(remaining)
        self._buffered += size

    def append_locked(self, tp: TopicPartition, value: Any, key: bytes | None,
                      headers: Mapping[str, bytes | str] | None, timestamp_ns: int,
                      size: int) -> tuple[Future[Any], int, bool, bool]:
        """Add one record (its buffer space reserved) to the partition's open batch:
        (the batch's future, the record's index in it, whether the batch was opened,
        whether it was sealed)."""
        batch = self._open.get(tp)
        opened = batch is None
        if batch is None:
            batch = self._open[tp] = OpenBatch(time.monotonic())
        index = len(batch.values)
        batch.values.append(value)
        batch.keys.append(key)
        batch.headers.append(headers)
        batch.timestamps.append(timestamp_ns)
        batch.nbytes += size
        if key is not None or headers:
            batch.plain = False
        sealed = batch.nbytes >= self.max_batch_bytes
        if sealed:
            self._seal(tp)
        return batch.future, index, opened, sealed

    def append_encoded_locked(self, batch: ProducerBatch) -> None:
        """Queue a batch encoded by the caller (a ``send_many`` chunk; space reserved)."""
        self._sealed[batch.tp].append(batch)

    def _seal(self, tp: TopicPartition) -> None:
        batch = self._open.pop(tp)
        self._sealed[tp].append(ProducerBatch(tp[0], tp[1], len(batch.values), batch.nbytes, batch.future,
                                              open_batch=batch))

    # -- the sender's side ---------------------------------------------------------------

    def drain_locked(self, now: float, *, fenced: bool
                     ) -> tuple[list[ProducerBatch], list[ProducerBatch], float | None]:
        """Seal what is due and take what may be sent: (batches to send, in order per
        partition; batches never sent that must fail because the producer closes while
        fenced; seconds until the next linger deadline, or None)."""
        wait: float | None = None
        for tp, batch in list(self._open.items()):
            if self.flush_requested or self.closing:
                self._seal(tp)
            elif self._sealed[tp] or self._in_flight_per_tp[tp] >= self.max_in_flight:
                # the partition's pipeline is full: the open batch keeps growing until an
                # acknowledgement frees a slot, so a busy partition sends fewer, larger batches
                # instead of queueing one tiny batch per linger period
                continue
            elif now - batch.opened >= self.linger_s:
                self._seal(tp)
            else:
                due = batch.opened + self.linger_s - now
                wait = due if wait is None else min(wait, due)
        self.flush_requested = False
        unsent: list[ProducerBatch] = []
        if fenced and self.closing:
            # never sent, so certainly not written: fail them and let close finish
            unsent = [b for q in self._sealed.values() for b in q]
            self._sealed.clear()
        to_send: list[ProducerBatch] = []
        for tp, queue in self._sealed.items():
            while queue and not fenced and self._in_flight_per_tp[tp] < self.max_in_flight:
                to_send.append(queue.popleft())
                self._in_flight_per_tp[tp] += 1
        return to_send, unsent, wait

    def is_empty_locked(self) -> bool:
        """Nothing open and nothing queued."""
        return not self._open and not any(self._sealed.values())

    def has_open_locked(self) -> bool:
        return bool(self._open)

    def requeue(self, batches: list[ProducerBatch]) -> None:
        """Put taken batches back at the front of their partitions' queues, in order."""
        with self.cond:
            for batch in reversed(batches):
                self._in_flight_per_tp[batch.tp] -= 1
                self._sealed[batch.tp].appendleft(batch)

    def settled(self, batch: ProducerBatch, *, unknown: bool) -> None:
        """A batch left the pipeline: its slot is free, its bytes released (or, when its
        outcome is unknown, held until ``release_unknown``)."""
        with self.cond:
            if unknown:
                self._held_unknown += batch.nbytes
            else:
                self._buffered -= batch.nbytes
            self._in_flight_per_tp[batch.tp] -= 1
            self.cond.notify_all()

    def release_unknown_locked(self) -> None:
        """The fence lifted: the unknown batches no longer sit in the socket."""
        self._buffered -= self._held_unknown
        self._held_unknown = 0
        self.cond.notify_all()

    def take_all_queued_locked(self) -> list[ProducerBatch]:
        """Every queued batch, removed (close, after the I/O thread ended)."""
        leftovers = [b for q in self._sealed.values() for b in q]
        self._sealed.clear()
        return leftovers

    def pending_locked(self) -> int:
        """Records open plus batches queued."""
        return sum(len(b.values) for b in self._open.values()) + sum(len(q) for q in self._sealed.values())
