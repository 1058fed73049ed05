"""Producer: batches records per partition and ships them to the broker from one I/O thread.

Guarantees:
- ``send`` never talks to the network: it appends to the partition's open batch and returns
  a RecordFuture (result: DeliveryResult with the record's offset), a view of the batch's
  one Future (broker.client.delivery): no lock or condition is made per record. A batch is
  sealed when it reaches ``max_batch_bytes`` or ``linger_ms`` has passed, then encoded whole
  (broker.records.encode_batch: the numpy bulk path when records carry no keys/headers).
- A partition whose ``max_in_flight`` slots are all taken keeps its open batch open past
  ``linger_ms`` (up to ``max_batch_bytes``): under load batches grow instead of queueing.
- Per partition at most ``max_in_flight`` batches are outstanding, sent in order. A failed
  batch fails its futures with the typed error.
- Idempotent (``idempotent=True``, the default): the producer gets a producer id from the
  broker (INIT_PRODUCER_ID, Kafka's InitProducerId) and numbers each partition's records
  (Kafka's sequences, stamped into the batch when it is first sent). A batch whose
  acknowledgement does not come in time is sent again, same bytes, once the fence below
  lifts, in order before anything later of its partition: the broker acknowledges a batch
  it already has with its original offsets and never writes it twice, so a timeout costs
  no duplicate and no loss. Only after ``delivery_timeout_s`` without an answer is a batch
  reported unknown (DeliveryUnknownError). Against a broker without INIT_PRODUCER_ID the
  producer runs without idempotence, as below.
- Without idempotence batches are never retried: per record the app sees delivered, failed
  (absent from the log) or unknown (present or absent, and if present in send order).
- Bounded memory: ``buffer_bytes`` caps what is buffered plus in flight. When it is full,
  ``on_full="block"`` waits up to ``block_timeout_s`` and ``"fail"`` raises
  ProducerBufferFullError at once (what a real-time driver wants).
- Outcomes: a batch resolves to a DeliveryResult (written), a typed error (not written:
  the broker refused it, or it was never handed to a connection), or DeliveryUnknownError:
  it was sent but no acknowledgement came within ``request_timeout_s``, so the broker may
  still write it (a hung broker writes what it had read once it runs again). Never report
  as failed what may be written.
- No reorder after an unknown outcome: the connection is *fenced*. No batch is sent until
  the broker answers a PING sent after the unknown batches (it handles one connection's
  requests in order, so by then it has written or dropped them all), or until the
  connection is gone (ZMQ_IMMEDIATE: a send finds no peer; what was queued on it died with
  it). A PING is sent again every ``request_timeout_s``. While fenced nothing is added to
  the connection (a hung broker would otherwise pile requests up in it), the unknown
  batches keep their share of ``buffer_bytes`` (they may still sit in the socket), and new
  records wait in the buffer, which blocks or fails as configured.
- Broker down: sends fail fast with BrokerUnavailableError (ZMQ_IMMEDIATE); ZeroMQ
  reconnects by itself and the producer goes on when the broker is back.
- ``send_many`` is the bulk call for many small records: one encode per batch-sized chunk
  in the caller's thread, no per-record Python work beyond building the value list.

Thread-safe: any thread may call send/send_many/flush; only the I/O thread touches ZeroMQ.
"""

from __future__ import annotations

import collections
import itertools
import os
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np
import zmq
from crc32c import crc32c

from .. import protocol as P
from ..errors import (
    BrokerError,
    BrokerUnavailableError,
    DeliveryUnknownError,
    ProducerBufferFullError,
    UnknownTopicError,
)
from ..records import encode_batch, with_producer
from .connection import Connection
from .delivery import DeliveryResult, RecordFuture
from .sequences import ProducerSequences

RECORD_OVERHEAD = 20
CONNECT_GRACE_S = 1.0
METADATA_REFRESH_TIMEOUT_S = 0.2


@dataclass
class _OpenBatch:
    opened: float
    values: list = field(default_factory=list)
    keys: list = field(default_factory=list)
    headers: list = field(default_factory=list)
    timestamps: list = field(default_factory=list)
    future: Future = field(default_factory=Future)  # the whole batch's; records hold RecordFutures of it
    nbytes: int = 0
    plain: bool = True  # no keys and no headers: the bulk encode path applies


@dataclass
class _Batch:
    topic: str
    partition: int
    count: int
    nbytes: int
    future: Future  # resolves to the DeliveryResult of the whole batch (or send_many chunk)
    data: bytes | None = None
    open_batch: _OpenBatch | None = None
    sent_at: float = 0.0
    first_sent_at: float | None = None  # the first send; retries end delivery_timeout_s after it
    sequence: int | None = None  # the idempotent producer's sequence of its first record


class Producer:
    def __init__(
        self,
        endpoint: str,
        *,
        linger_ms: float = 5.0,
        max_batch_bytes: int = 1024 * 1024,
        acks: str = "written",
        max_in_flight: int = 5,
        codec: str | None = None,
        partitioner: str = "key",
        buffer_bytes: int = 64 * 1024 * 1024,
        on_full: str = "block",
        block_timeout_s: float = 10.0,
        request_timeout_s: float = 10.0,
        idempotent: bool = True,
        delivery_timeout_s: float = 120.0,
    ):
        if acks not in P.ACKS:
            raise ValueError(f"acks must be one of {', '.join(P.ACKS)}, not {acks!r}")
        if on_full not in ("block", "fail"):
            raise ValueError(f"on_full must be 'block' or 'fail', not {on_full!r}")
        if partitioner not in ("key", "round_robin"):
            raise ValueError(f"partitioner must be 'key' or 'round_robin', not {partitioner!r}")
        self.endpoint = endpoint
        self.linger_s = linger_ms / 1000
        self.max_batch_bytes = max_batch_bytes
        self.acks = P.ACKS[acks]
        self.max_in_flight = max(1, max_in_flight)
        self.codec = codec
        self.partitioner = partitioner
        self.buffer_bytes = buffer_bytes
        self.on_full = on_full
        self.block_timeout_s = block_timeout_s
        self.request_timeout_s = request_timeout_s
        self.idempotent = idempotent
        self.delivery_timeout_s = max(delivery_timeout_s, request_timeout_s)
        # (producer id, epoch) from INIT_PRODUCER_ID, (-1, -1) without idempotence; per
        # partition the sequence of the next record (I/O thread only)
        self._sequences = ProducerSequences(idempotent, self._init_producer_id)
        self.retried_batches = 0  # batches sent again after a timeout (idempotent)

        self._cond = threading.Condition()
        self._open: dict[tuple[str, int], _OpenBatch] = {}
        self._sealed: dict[tuple[str, int], collections.deque[_Batch]] = collections.defaultdict(collections.deque)
        self._in_flight: dict[int, _Batch] = {}
        self._in_flight_per_tp: collections.Counter = collections.Counter()
        self._buffered = 0
        self._closing = False
        self._closed = False
        self._flush_requested = False
        self._io_idle = False
        self._rr = itertools.count()
        self._partition_counts: dict[str, tuple[int, float]] = {}
        self._topic_codecs: dict[str, str] = {}  # each topic's configured codec (compression.type)
        self._meta_lock = threading.Lock()
        self._meta_conn: Connection | None = None
        self._connected = False  # whether a send ever went through (see _send_batch)
        # the fence after an unknown outcome (see the module docstring): the PING awaited, when
        # it was sent, and the bytes of the unknown batches still held against buffer_bytes
        self._fenced = False
        self._fence_ping: int | None = None
        self._fence_ping_at = 0.0
        self._fenced_bytes = 0
        self.unknown_batches = 0  # batches reported DeliveryUnknownError
        self.late_acknowledgements = 0  # of those, how many the broker acknowledged later
        self._unknown_ids: set[int] = set()
        self._wake_fd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        # close() gives the eventfd to a still-running I/O thread to close when it ends,
        # never closing it under the thread's poll (a reused fd number would be worse)
        self._io_done = False
        self._wake_fd_handed_over = False
        self._thread = threading.Thread(target=self._io_loop, name="edge-producer-io", daemon=True)
        self._thread.start()

    # -- partitioning --------------------------------------------------------------------

    def partitions_of(self, topic: str) -> int:
        cached = self._partition_counts.get(topic)
        if cached is not None and (cached[0] > 1 or time.monotonic() - cached[1] < 5.0):
            return cached[0]
        with self._meta_lock:
            if self._meta_conn is None:
                self._meta_conn = Connection(self.endpoint, timeout_s=2.0)
            try:
                # a refresh keeps the cached count when the broker does not answer at once:
                # the caller is a sensor's publish loop, which must not stall on a dead broker
                wait = METADATA_REFRESH_TIMEOUT_S if cached is not None else None
                meta = self._meta_conn.request(P.METADATA, {"topics": [topic]}, timeout_s=wait).meta
                count = len(meta["topics"][topic]["partitions"])
                self._topic_codecs[topic] = meta["topics"][topic].get("config", {}).get("codec", "none")
            except UnknownTopicError:
                count = 1  # auto-created on first produce with the broker's defaults
            except BrokerError:
                count = cached[0] if cached else 1
        self._partition_counts[topic] = (count, time.monotonic())
        return count

    def codec_of(self, topic: str) -> str:
        """The codec batches of ``topic`` are compressed with: the producer's ``codec`` if
        given, else the topic's configured one (Kafka's compression.type, applied as Kafka
        applies it: the producer compresses, the broker stores batches as sent)."""
        if self.codec is not None:
            return self.codec
        if topic not in self._topic_codecs:
            self.partitions_of(topic)
        return self._topic_codecs.get(topic, "none")

    def _choose_partition(self, topic: str, key: bytes | None, partition: int | None) -> int:
        if partition is not None:
            if self.codec is None and topic not in self._topic_codecs:
                self.partitions_of(topic)  # learns the topic's codec before the I/O thread needs it
            return partition
        count = self.partitions_of(topic)
        if count == 1:
            return 0
        if key is not None and self.partitioner == "key":
            return crc32c(key) % count
        return next(self._rr) % count

    # -- sending -------------------------------------------------------------------------

    def _reserve(self, size: int) -> None:
        """Called with the lock held: wait for (or refuse) buffer space."""
        if self._closing:
            raise BrokerError("producer is closed")
        if self._buffered == 0 or self._buffered + size <= self.buffer_bytes:
            self._buffered += size
            return
        if self.on_full == "fail":
            raise ProducerBufferFullError(
                f"producer buffer full ({self._buffered} of {self.buffer_bytes} bytes): broker at {self.endpoint} slow or down"
            )
        deadline = time.monotonic() + self.block_timeout_s
        while self._buffered and self._buffered + size > self.buffer_bytes:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or self._closing:
                raise ProducerBufferFullError(
                    f"producer buffer stayed full for {self.block_timeout_s:.1f}s: broker at {self.endpoint} slow or down"
                )
            self._cond.wait(remaining)
        self._buffered += size

    def _wake(self) -> None:
        os.eventfd_write(self._wake_fd, 1)

    def send(self, topic: str, value, key: bytes | None = None, headers: Mapping[str, bytes | str] | None = None,
             partition: int | None = None, timestamp_ns: int | None = None) -> RecordFuture:
        partition = self._choose_partition(topic, key, partition)
        size = len(value) + RECORD_OVERHEAD + (len(key) if key else 0) + (
            sum(len(k) + len(v) + 6 for k, v in headers.items()) if headers else 0)
        tp = (topic, partition)
        with self._cond:
            self._reserve(size)
            batch = self._open.get(tp)
            opened = batch is None
            if opened:
                batch = self._open[tp] = _OpenBatch(time.monotonic())
            future = RecordFuture(batch.future, len(batch.values))
            batch.values.append(value)
            batch.keys.append(key)
            batch.headers.append(headers)
            batch.timestamps.append(time.time_ns() if timestamp_ns is None else timestamp_ns)
            batch.nbytes += size
            if key is not None or headers:
                batch.plain = False
            sealed = batch.nbytes >= self.max_batch_bytes
            if sealed:
                self._seal(tp)
            # the I/O thread needs news only of a new linger deadline or a batch to send,
            # not of every record joining an open batch
            wake = self._io_idle and (opened or sealed)
        if wake:
            self._wake()
        return future

    def send_many(self, topic: str, values: Sequence, timestamps=None, *, partition: int | None = None) -> list[Future]:
        """Bulk send of key-less, header-less records; one Future per batch-sized chunk
        (result: DeliveryResult with the first offset and the chunk's count)."""
        partition = self._choose_partition(topic, None, partition)
        now = time.time_ns()
        futures: list[Future] = []
        n = len(values)
        # chunk boundaries from the cumulative sizes: no per-record Python loop
        value_lens = np.fromiter(map(len, values), dtype=np.int64, count=n)
        ends = np.cumsum(value_lens + RECORD_OVERHEAD)
        start = 0
        while start < n:
            base = int(ends[start - 1]) if start else 0
            end = max(start + 1, int(np.searchsorted(ends, base + self.max_batch_bytes, side="right")))
            chunk_ts = now if timestamps is None else (
                timestamps if isinstance(timestamps, int) else timestamps[start:end])
            data = encode_batch(values[start:end], chunk_ts, codec=self.codec_of(topic),
                                value_lens=value_lens[start:end])
            future: Future = Future()
            with self._cond:
                self._reserve(len(data))
                self._sealed[(topic, partition)].append(
                    _Batch(topic, partition, end - start, len(data), future, data=data))
                wake = self._io_idle
            if wake:
                self._wake()
            futures.append(future)
            start = end
        return futures

    def _seal(self, tp: tuple[str, int]) -> None:
        batch = self._open.pop(tp)
        self._sealed[tp].append(_Batch(tp[0], tp[1], len(batch.values), batch.nbytes, batch.future, open_batch=batch))

    # -- the I/O thread ------------------------------------------------------------------

    def _io_loop(self) -> None:
        conn = Connection(self.endpoint, timeout_s=self.request_timeout_s)
        poller = zmq.Poller()
        poller.register(conn.socket, zmq.POLLIN)
        poller.register(self._wake_fd, zmq.POLLIN)
        try:
            while True:
                with self._cond:
                    now = time.monotonic()
                    waits = []
                    for tp, batch in list(self._open.items()):
                        if self._flush_requested or self._closing:
                            self._seal(tp)
                        elif self._sealed[tp] or self._in_flight_per_tp[tp] >= self.max_in_flight:
                            # the partition's pipeline is full: the open batch keeps growing until
                            # an acknowledgement frees a slot, so a busy partition sends fewer,
                            # larger batches instead of queueing one tiny batch per linger period
                            continue
                        elif now - batch.opened >= self.linger_s:
                            self._seal(tp)
                        else:
                            waits.append(batch.opened + self.linger_s - now)
                    self._flush_requested = False
                    to_send = []
                    if self._fenced and self._closing:
                        # never sent, so certainly not written: fail them and let close finish
                        unsent = [b for q in self._sealed.values() for b in q]
                        self._sealed.clear()
                    else:
                        unsent = []
                    for tp, queue in self._sealed.items():
                        while queue and not self._fenced and self._in_flight_per_tp[tp] < self.max_in_flight:
                            batch = queue.popleft()
                            self._in_flight_per_tp[tp] += 1
                            to_send.append(batch)
                    if self._closing and not self._open and not any(self._sealed.values()) \
                            and not self._in_flight and not to_send:
                        return
                    if self._in_flight:
                        waits.append(min(b.sent_at for b in self._in_flight.values()) + self.request_timeout_s - now)
                    if self._fenced:
                        waits.append(self._fence_ping_at + self.request_timeout_s - now)
                    timeout = max(0.0, min(waits)) if waits else 0.5
                    self._io_idle = not to_send
                for batch in unsent:
                    self._finish(batch, error=BrokerUnavailableError("producer closed before delivery"))
                if self._fenced:
                    self._ping_fence(conn)
                for i, batch in enumerate(to_send):
                    if self._fenced:  # a retry could not be sent: the rest waits behind it, in order
                        self._requeue(to_send[i:])
                        break
                    self._send_batch(conn, batch)
                if to_send:
                    continue
                events = dict(poller.poll(int(timeout * 1000) + 1))
                self._io_idle = False
                if self._wake_fd in events:
                    try:
                        os.eventfd_read(self._wake_fd)
                    except BlockingIOError:
                        pass
                if conn.socket in events:
                    self._drain_replies(conn)
                self._expire()
        finally:
            conn.close()
            with self._cond:
                self._io_done = True
                if self._wake_fd_handed_over:
                    os.close(self._wake_fd)

    def _init_producer_id(self) -> dict:
        with self._meta_lock:
            if self._meta_conn is None:
                self._meta_conn = Connection(self.endpoint, timeout_s=2.0)
            return self._meta_conn.request(P.INIT_PRODUCER_ID, {}, timeout_s=self.request_timeout_s).meta

    def _stamp(self, batch: _Batch) -> None:
        """Encode an open batch and give a batch its producer id and sequences, at its first
        send (sequences follow the order batches are sent in, per partition)."""
        producer_id, epoch, sequence = self._sequences.take((batch.topic, batch.partition), batch.count)
        if batch.data is None:
            ob = batch.open_batch
            batch.data = encode_batch(
                ob.values, ob.timestamps, keys=None if ob.plain else ob.keys,
                headers=None if ob.plain else ob.headers,
                codec=self.codec or self._topic_codecs.get(batch.topic, "none"),
                producer_id=producer_id, producer_epoch=epoch, base_sequence=sequence)
            batch.open_batch = None
        elif producer_id >= 0:
            batch.data = with_producer(batch.data, producer_id, epoch, sequence)
        if producer_id >= 0:
            batch.sequence = sequence

    def _send_batch(self, conn: Connection, batch: _Batch) -> None:
        try:
            if batch.sequence is None and batch.first_sent_at is None:
                self._stamp(batch)
            meta = {"topic": batch.topic, "partition": batch.partition, "acks": self.acks}
            # a fresh socket needs a moment for its handshake: the first send waits for it
            # (up to CONNECT_GRACE_S) so a producer made just before sending does not fail
            request_id = conn.send(P.PRODUCE, meta, [batch.data], wait_s=0.0 if self._connected else CONNECT_GRACE_S)
            self._connected = True
        except BrokerError as exc:
            tp = (batch.topic, batch.partition)
            if (isinstance(exc, BrokerUnavailableError) and batch.sequence is not None
                    and any((b.topic, b.partition) == tp for b in self._in_flight.values())):
                # the connection went away under batches in flight: their fate is unknown, so
                # they are sent again before this one (never overtaken by it)
                self._requeue([batch])
                self._expire(force=True)
                return
            if batch.first_sent_at is not None and time.monotonic() - batch.first_sent_at < self.delivery_timeout_s:
                # a retry that found no broker: it may have been written before, so it is never
                # failed; it waits at the front of its queue and is tried again after
                # request_timeout_s (the fence's PING), until delivery_timeout_s
                self._requeue([batch])
                with self._cond:
                    self._fenced, self._fence_ping, self._fence_ping_at = True, None, time.monotonic()
                return
            self._finish(batch, error=exc)
            return
        except Exception as exc:  # noqa: BLE001 - e.g. a record too large: fail its batch only
            self._finish(batch, error=BrokerError(f"could not encode batch: {exc}"))
            return
        if self.acks == P.ACKS_NONE:
            self._finish(batch, base_offset=None)
            return
        batch.sent_at = time.monotonic()
        if batch.first_sent_at is None:
            batch.first_sent_at = batch.sent_at
        self._in_flight[request_id] = batch

    def _drain_replies(self, conn: Connection) -> None:
        while True:
            try:
                reply = conn.recv(0)
            except BrokerError:
                continue
            if reply is None:
                return
            request_id = reply.header.request_id
            batch = self._in_flight.pop(request_id, None)
            if batch is None:
                if request_id == self._fence_ping:
                    self._lift_fence()
                elif request_id in self._unknown_ids and not reply.header.status:
                    self.late_acknowledgements += 1  # reported unknown: it was written after all
                continue  # a reply to a request that already timed out
            if reply.header.status:
                try:
                    reply.raise_for_error()
                except BrokerError as exc:
                    self._finish(batch, error=exc)
            else:
                self._finish(batch, base_offset=reply.meta["base_offset"],
                             durable_offset=reply.meta.get("durable_offset"))

    def _expire(self, *, force: bool = False) -> None:
        now = time.monotonic()
        if not force and not any(now - b.sent_at >= self.request_timeout_s for b in self._in_flight.values()):
            return
        # No acknowledgement in time: the broker is hung, stalled or gone. What it has read it
        # may still write, so every batch in flight (the expired one and those sent after it,
        # on the same ordered connection) is reported unknown, not failed, and the connection
        # is fenced until the broker proves it has handled them (see the module docstring).
        error = DeliveryUnknownError(
            f"no acknowledgement from the broker at {self.endpoint} within {self.request_timeout_s:.1f}s: "
            "the batch may or may not have been written")
        with self._cond:
            self._fenced = True
            self._fence_ping = None
            self._fence_ping_at = 0.0
            # idempotent batches go back to the front of their partition's queue, in order, to
            # be sent again once the fence lifts: the broker acknowledges one it already has
            # with its original offsets (see the module docstring)
            retry = sorted((b for b in self._in_flight.values() if b.sequence is not None
                            and now - b.first_sent_at < self.delivery_timeout_s),
                           key=lambda b: b.sequence, reverse=True)
            retry_ids = {id(b) for b in retry}
            for rid in [rid for rid, b in self._in_flight.items() if id(b) in retry_ids]:
                self._unknown_ids.add(rid)
                del self._in_flight[rid]
            for batch in retry:
                self._in_flight_per_tp[(batch.topic, batch.partition)] -= 1
                self._sealed[(batch.topic, batch.partition)].appendleft(batch)
            self.retried_batches += len(retry)
        for rid in list(self._in_flight):
            self._unknown_ids.add(rid)
            self.unknown_batches += 1
            self._finish(self._in_flight.pop(rid), error=error)

    def _ping_fence(self, conn: Connection) -> None:
        """Send the fence's PING when one is due; a send that finds no connection lifts it."""
        now = time.monotonic()
        if now - self._fence_ping_at < self.request_timeout_s:
            return
        self._fence_ping_at = now
        try:
            self._fence_ping = conn.send(P.PING, {})
        except BrokerUnavailableError:
            self._lift_fence()  # no connection: what was queued on the old one is gone with it

    def _lift_fence(self) -> None:
        with self._cond:
            self._fenced = False
            self._fence_ping = None
            self._buffered -= self._fenced_bytes
            self._fenced_bytes = 0
            self._cond.notify_all()
        self._unknown_ids.clear()

    def _requeue(self, batches: list[_Batch]) -> None:
        """Put popped batches back at the front of their partitions' queues, in order."""
        with self._cond:
            for batch in reversed(batches):
                self._in_flight_per_tp[(batch.topic, batch.partition)] -= 1
                self._sealed[(batch.topic, batch.partition)].appendleft(batch)

    def _finish(self, batch: _Batch, *, base_offset: int | None = None, durable_offset: int | None = None,
                error: BrokerError | None = None) -> None:
        if error is not None and batch.sequence is not None and not isinstance(error, DeliveryUnknownError):
            # a sequenced batch that will never be written leaves a gap in its partition's
            # sequences: later batches go out under a new producer id, from sequence 0
            self._sequences.restart()
        with self._cond:
            if isinstance(error, DeliveryUnknownError):
                self._fenced_bytes += batch.nbytes  # may still sit in the socket: held until the fence lifts
            else:
                self._buffered -= batch.nbytes
            tp = (batch.topic, batch.partition)
            self._in_flight_per_tp[tp] -= 1
            self._cond.notify_all()
        if error is not None:
            if not batch.future.done():
                batch.future.set_exception(error)
            return
        batch.future.set_result(DeliveryResult(batch.topic, batch.partition, base_offset, batch.count, durable_offset))

    # -- flushing and closing ------------------------------------------------------------

    def pending(self) -> int:
        with self._cond:
            return (sum(len(b.values) for b in self._open.values()) + sum(len(q) for q in self._sealed.values())
                    + len(self._in_flight))

    def flush(self, timeout: float | None = None) -> None:
        """Send everything buffered and wait for every outstanding acknowledgement."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            self._flush_requested = True
        self._wake()
        with self._cond:
            while self._buffered:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    raise BrokerUnavailableError(
                        f"flush timed out with {self._buffered} bytes not acknowledged by {self.endpoint}")
                self._cond.wait(remaining if remaining is not None else 0.5)
                if self._open:
                    self._flush_requested = True
                    self._wake()

    def close(self, timeout: float = 10.0) -> None:
        if self._closed:
            return
        try:
            self.flush(timeout)
        except BrokerError:
            pass  # the undelivered futures fail below
        with self._cond:
            self._closing = True
        self._wake()
        self._thread.join(timeout)
        with self._cond:
            leftovers = [b for q in self._sealed.values() for b in q] + list(self._in_flight.values())
            self._sealed.clear()
            self._in_flight.clear()
        for batch in leftovers:
            if not batch.future.done():
                batch.future.set_exception(BrokerUnavailableError("producer closed before delivery"))
        with self._cond:
            if self._io_done:
                os.close(self._wake_fd)
            else:
                self._wake_fd_handed_over = True
        if self._meta_conn is not None:
            self._meta_conn.close()
        self._closed = True

    def __enter__(self) -> "Producer":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
