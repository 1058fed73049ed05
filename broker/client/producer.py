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

The parts, as librdkafka and the Java client split them: ``partitioner`` (partition of a
record, topic metadata), ``accumulator`` (per-partition batches, the bounded buffer),
``sender`` (the I/O thread: sends, acknowledgements, timeouts, retries, the fence),
``delivery`` (futures and results), ``sequences`` (idempotence). ``Producer`` is the
facade that wires them.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from concurrent.futures import Future
from typing import Any

import numpy as np

from .. import protocol as P
from .. import protocol_messages as M
from ..errors import BrokerError, BrokerUnavailableError
from ..records import encode_batch
from .accumulator import ProducerBatch, RecordAccumulator
from .delivery import DeliveryResult, RecordFuture
from .partitioner import Partitioner, TopicMetadata
from .sender import Sender
from .sequences import ProducerSequences

__all__ = ["DeliveryResult", "Producer", "RecordFuture"]

RECORD_OVERHEAD = 20  # bytes a record costs the buffer beyond its key, value and headers
FLUSH_POLL_S = 0.5


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
        # the configuration, as given (read by callers that size things after it)
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
        self._metadata = TopicMetadata(endpoint)
        self._partitioner = Partitioner(self._metadata, partitioner, learn_codec=codec is None)
        self._acc = RecordAccumulator(
            max_batch_bytes=max_batch_bytes, linger_s=linger_ms / 1000, max_in_flight=max_in_flight,
            buffer_bytes=buffer_bytes, on_full=on_full, block_timeout_s=block_timeout_s, endpoint=endpoint)
        # (producer id, epoch) from INIT_PRODUCER_ID, (-1, -1) without idempotence; per
        # partition the sequence of the next record (I/O thread only)
        sequences = ProducerSequences(idempotent, self._init_producer_id)
        self._sender = Sender(endpoint, self._acc, sequences, acks=self.acks, request_timeout_s=request_timeout_s,
                              delivery_timeout_s=self.delivery_timeout_s, codec_of=self._codec_for_sending)
        self._closed = False
        self._sender.start()

    # -- what the app reads --------------------------------------------------------------

    @property
    def retried_batches(self) -> int:
        """Batches sent again after a timeout (idempotent)."""
        return self._sender.retried_batches

    @property
    def unknown_batches(self) -> int:
        """Batches reported DeliveryUnknownError."""
        return self._sender.unknown_batches

    @property
    def late_acknowledgements(self) -> int:
        """Of the unknown batches, how many the broker acknowledged later."""
        return self._sender.late_acknowledgements

    # -- partitioning --------------------------------------------------------------------

    def partitions_of(self, topic: str) -> int:
        return self._metadata.partitions_of(topic)

    def codec_of(self, topic: str) -> str:
        """The codec batches of ``topic`` are compressed with: the producer's ``codec`` if
        given, else the topic's configured one (Kafka's compression.type, applied as Kafka
        applies it: the producer compresses, the broker stores batches as sent)."""
        return self.codec if self.codec is not None else self._metadata.codec_of(topic)

    def _codec_for_sending(self, topic: str) -> str:
        return self.codec if self.codec is not None else self._metadata.cached_codec(topic)

    def _init_producer_id(self) -> dict[str, Any]:
        reply = self._metadata.call(M.InitProducerIdRequest(), self.request_timeout_s)
        return {"producer_id": reply.producer_id, "producer_epoch": reply.producer_epoch}

    # -- sending -------------------------------------------------------------------------

    def send(self, topic: str, value: Any, key: bytes | None = None, headers: Mapping[str, bytes | str] | None = None,
             partition: int | None = None, timestamp_ns: int | None = None) -> RecordFuture:
        partition = self._partitioner.choose(topic, key, partition)
        size = len(value) + RECORD_OVERHEAD + (len(key) if key else 0) + (
            sum(len(k) + len(v) + 6 for k, v in headers.items()) if headers else 0)
        with self._acc.cond:
            self._acc.reserve_locked(size)
            future, index, opened, sealed = self._acc.append_locked(
                (topic, partition), value, key, headers, time.time_ns() if timestamp_ns is None else timestamp_ns,
                size)
        # the I/O thread needs news only of a new linger deadline or a batch to send,
        # not of every record joining an open batch
        self._sender.wake_if_idle(opened or sealed)
        return RecordFuture(future, index)

    def send_many(self, topic: str, values: Sequence[Any], timestamps: Any = None, *,
                  partition: int | None = None) -> list[Future[Any]]:
        """Bulk send of key-less, header-less records; one Future per batch-sized chunk
        (result: DeliveryResult with the first offset and the chunk's count)."""
        partition = self._partitioner.choose(topic, None, partition)
        now = time.time_ns()
        futures: list[Future[Any]] = []
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
            future: Future[Any] = Future()
            with self._acc.cond:
                self._acc.reserve_locked(len(data))
                self._acc.append_encoded_locked(ProducerBatch(topic, partition, end - start, len(data), future,
                                                              data=data))
            self._sender.wake_if_idle(True)
            futures.append(future)
            start = end
        return futures

    # -- flushing and closing ------------------------------------------------------------

    def pending(self) -> int:
        with self._acc.cond:
            return self._acc.pending_locked() + self._sender.in_flight_count()

    def flush(self, timeout: float | None = None) -> None:
        """Send everything buffered and wait for every outstanding acknowledgement."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._acc.cond:
            self._acc.flush_requested = True
        self._sender.wake()
        with self._acc.cond:
            while self._acc.buffered:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    raise BrokerUnavailableError(
                        f"flush timed out with {self._acc.buffered} bytes not acknowledged by {self.endpoint}")
                self._acc.cond.wait(remaining if remaining is not None else FLUSH_POLL_S)
                if self._acc.has_open_locked():
                    self._acc.flush_requested = True
                    self._sender.wake()

    def close(self, timeout: float = 10.0) -> None:
        if self._closed:
            return
        try:
            self.flush(timeout)
        except BrokerError:
            pass  # the undelivered futures fail below
        with self._acc.cond:
            self._acc.closing = True
        self._sender.wake()
        self._sender.thread.join(timeout)
        with self._acc.cond:
            leftovers = self._acc.take_all_queued_locked()
        leftovers += self._sender.take_in_flight()
        for batch in leftovers:
            if not batch.future.done():
                batch.future.set_exception(BrokerUnavailableError("producer closed before delivery"))
        self._sender.release_wake_fd()
        self._metadata.close()
        self._closed = True

    def __enter__(self) -> Producer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
