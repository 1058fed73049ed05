"""The producer's sender: the one I/O thread that talks to the broker (librdkafka's broker thread,
the Java client's Sender).

Guarantees (the producer's module docstring gives the contract the app sees):
- Only this thread touches the produce connection (ZeroMQ sockets are not thread-safe).
  It wakes on a reply, on the accumulator's news (an eventfd: a new linger deadline or a
  batch to send), on a linger deadline or on a request timeout.
- Per partition at most ``max_in_flight`` batches are outstanding, sent in queue order.
  A batch is encoded (if still open columns) and given its producer id and sequences at
  its first send (``ProducerSequences``: sequences follow the order batches are sent in).
- No acknowledgement within ``request_timeout_s``: every batch in flight on the
  connection is unknown, not failed (the broker may still write what it has read). An
  idempotent batch younger than ``delivery_timeout_s`` goes back to the front of its queue
  to be sent again, same bytes (the broker acknowledges a duplicate with its original
  offsets); the others resolve with DeliveryUnknownError.
- Fence: after an unknown outcome nothing is sent until the broker answers a PING sent
  after the unknown batches (it handles one connection's requests in order), or the
  connection is gone. The PING is sent again every ``request_timeout_s``.
- A numbered batch that fails for good leaves a gap: the sequences restart under a new
  producer id.
"""

from __future__ import annotations

import os
import threading
import time
from typing import Any

import zmq

from .. import protocol as P
from .. import protocol_messages as M
from ..errors import BrokerError, BrokerUnavailableError, DeliveryUnknownError
from ..records import encode_batch, with_producer
from .accumulator import ProducerBatch, RecordAccumulator
from .connection import Connection
from .delivery import settle
from .sequences import ProducerSequences

CONNECT_GRACE_S = 1.0
IDLE_POLL_S = 0.5


class Sender:
    def __init__(self, endpoint: str, accumulator: RecordAccumulator, sequences: ProducerSequences, *,
                 acks: int, request_timeout_s: float, delivery_timeout_s: float, codec_of: Any):
        self._endpoint = endpoint
        self._acc = accumulator
        self._sequences = sequences
        self._acks = acks
        self._request_timeout_s = request_timeout_s
        self._delivery_timeout_s = delivery_timeout_s
        self._codec_of = codec_of  # topic -> codec name, without blocking
        self._in_flight: dict[int, ProducerBatch] = {}
        self._connected = False  # whether a send ever went through (see _send_batch)
        self._idle = False  # polling with nothing to send: the accumulator's news must wake it
        # the fence after an unknown outcome: the PING awaited and when it was sent
        self._fenced = False
        self._fence_ping: int | None = None
        self._fence_ping_at = 0.0
        self._unknown_ids: set[int] = set()
        self.retried_batches = 0  # batches sent again after a timeout (idempotent)
        self.unknown_batches = 0  # batches reported DeliveryUnknownError
        self.late_acknowledgements = 0  # of those, how many the broker acknowledged later
        self.wake_fd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        # close() gives the eventfd to a still-running I/O thread to close when it ends,
        # never closing it under the thread's poll (a reused fd number would be worse)
        self._done = False
        self._wake_fd_handed_over = False
        self.thread = threading.Thread(target=self._run, name="edge-producer-io", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def wake(self) -> None:
        os.eventfd_write(self.wake_fd, 1)

    def wake_if_idle(self, news: bool) -> None:
        """Called by the app's threads: wake the loop for news that changes its plan."""
        if news and self._idle:
            self.wake()

    def in_flight_count(self) -> int:
        return len(self._in_flight)

    # -- the loop ------------------------------------------------------------------------

    def _run(self) -> None:
        conn = Connection(self._endpoint, timeout_s=self._request_timeout_s)
        poller = zmq.Poller()
        poller.register(conn.socket, zmq.POLLIN)
        poller.register(self.wake_fd, zmq.POLLIN)
        try:
            while True:
                with self._acc.cond:
                    now = time.monotonic()
                    to_send, unsent, linger_wait = self._acc.drain_locked(now, fenced=self._fenced)
                    if self._acc.closing and self._acc.is_empty_locked() and not self._in_flight and not to_send:
                        return
                    waits = [] if linger_wait is None else [linger_wait]
                    if self._in_flight:
                        waits.append(min(b.sent_at for b in self._in_flight.values()) + self._request_timeout_s - now)
                    if self._fenced:
                        waits.append(self._fence_ping_at + self._request_timeout_s - now)
                    timeout = max(0.0, min(waits)) if waits else IDLE_POLL_S
                    self._idle = not to_send
                for batch in unsent:
                    self._finish(batch, error=BrokerUnavailableError("producer closed before delivery"))
                if self._fenced:
                    self._ping_fence(conn)
                for i, batch in enumerate(to_send):
                    if self._fenced:  # a retry could not be sent: the rest waits behind it, in order
                        self._acc.requeue(to_send[i:])
                        break
                    self._send_batch(conn, batch)
                if to_send:
                    continue
                events = dict(poller.poll(int(timeout * 1000) + 1))
                self._idle = False
                if self.wake_fd in events:
                    try:
                        os.eventfd_read(self.wake_fd)
                    except BlockingIOError:
                        pass
                if conn.socket in events:
                    self._drain_replies(conn)
                self._expire()
        finally:
            conn.close()
            with self._acc.cond:
                self._done = True
                if self._wake_fd_handed_over:
                    os.close(self.wake_fd)

    def _stamp(self, batch: ProducerBatch) -> None:
        """Encode an open batch and give a batch its producer id and sequences, at its first
        send (sequences follow the order batches are sent in, per partition)."""
        producer_id, epoch, sequence = self._sequences.take(batch.tp, batch.count)
        if batch.data is None:
            ob = batch.open_batch
            if ob is None:
                raise BrokerError("a batch with neither records nor bytes")
            batch.data = encode_batch(
                ob.values, ob.timestamps, keys=None if ob.plain else ob.keys,
                headers=None if ob.plain else ob.headers, codec=self._codec_of(batch.topic),
                producer_id=producer_id, producer_epoch=epoch, base_sequence=sequence)
            batch.open_batch = None
        elif producer_id >= 0:
            batch.data = with_producer(batch.data, producer_id, epoch, sequence)
        if producer_id >= 0:
            batch.sequence = sequence

    def _send_batch(self, conn: Connection, batch: ProducerBatch) -> None:
        try:
            if batch.sequence is None and batch.first_sent_at is None:
                self._stamp(batch)
            request = M.ProduceRequest(topic=batch.topic, partition=batch.partition, acks=self._acks)
            # a fresh socket needs a moment for its handshake: the first send waits for it
            # (up to CONNECT_GRACE_S) so a producer made just before sending does not fail
            request_id = conn.send_request(request, [batch.data], wait_s=0.0 if self._connected else CONNECT_GRACE_S)
            self._connected = True
        except BrokerError as exc:
            if (isinstance(exc, BrokerUnavailableError) and batch.sequence is not None
                    and any(b.tp == batch.tp for b in self._in_flight.values())):
                # the connection went away under batches in flight: their fate is unknown, so
                # they are sent again before this one (never overtaken by it)
                self._acc.requeue([batch])
                self._expire(force=True)
                return
            if batch.first_sent_at is not None and time.monotonic() - batch.first_sent_at < self._delivery_timeout_s:
                # a retry that found no broker: it may have been written before, so it is never
                # failed; it waits at the front of its queue and is tried again after
                # request_timeout_s (the fence's PING), until delivery_timeout_s
                self._acc.requeue([batch])
                with self._acc.cond:
                    self._fenced, self._fence_ping, self._fence_ping_at = True, None, time.monotonic()
                return
            self._finish(batch, error=exc)
            return
        except Exception as exc:  # e.g. a record too large: fail its batch only, never the I/O thread
            self._finish(batch, error=BrokerError(f"could not encode batch: {exc}"))
            return
        if self._acks == P.ACKS_NONE:
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
        if not force and not any(now - b.sent_at >= self._request_timeout_s for b in self._in_flight.values()):
            return
        # No acknowledgement in time: the broker is hung, stalled or gone. What it has read it
        # may still write, so every batch in flight (the expired one and those sent after it,
        # on the same ordered connection) is reported unknown, not failed, and the connection
        # is fenced until the broker proves it has handled them (see the module docstring).
        error = DeliveryUnknownError(
            f"no acknowledgement from the broker at {self._endpoint} within {self._request_timeout_s:.1f}s: "
            "the batch may or may not have been written")
        with self._acc.cond:
            self._fenced = True
            self._fence_ping = None
            self._fence_ping_at = 0.0
            # idempotent batches go back to the front of their partition's queue, in order, to
            # be sent again once the fence lifts: the broker acknowledges one it already has
            # with its original offsets
            retry = sorted((b for b in self._in_flight.values() if b.sequence is not None
                            and b.first_sent_at is not None and now - b.first_sent_at < self._delivery_timeout_s),
                           key=lambda b: b.sequence or 0)
            retry_ids = {id(b) for b in retry}
            for rid in [rid for rid, b in self._in_flight.items() if id(b) in retry_ids]:
                self._unknown_ids.add(rid)
                del self._in_flight[rid]
            self._acc.requeue(retry)
            self.retried_batches += len(retry)
        for rid in list(self._in_flight):
            self._unknown_ids.add(rid)
            self.unknown_batches += 1
            self._finish(self._in_flight.pop(rid), error=error)

    def _ping_fence(self, conn: Connection) -> None:
        """Send the fence's PING when one is due; a send that finds no connection lifts it."""
        now = time.monotonic()
        if now - self._fence_ping_at < self._request_timeout_s:
            return
        self._fence_ping_at = now
        try:
            self._fence_ping = conn.send_request(M.PingRequest())
        except BrokerUnavailableError:
            self._lift_fence()  # no connection: what was queued on the old one is gone with it

    def _lift_fence(self) -> None:
        with self._acc.cond:
            self._fenced = False
            self._fence_ping = None
            self._acc.release_unknown_locked()
        self._unknown_ids.clear()

    def _finish(self, batch: ProducerBatch, *, base_offset: int | None = None, durable_offset: int | None = None,
                error: BrokerError | None = None) -> None:
        if error is not None and batch.sequence is not None and not isinstance(error, DeliveryUnknownError):
            # a sequenced batch that will never be written leaves a gap in its partition's
            # sequences: later batches go out under a new producer id, from sequence 0
            self._sequences.restart()
        self._acc.settled(batch, unknown=isinstance(error, DeliveryUnknownError))
        settle(batch.future, batch.topic, batch.partition, batch.count, base_offset, durable_offset, error)

    # -- closing -------------------------------------------------------------------------

    def take_in_flight(self) -> list[ProducerBatch]:
        """Every batch still in flight, removed (close, after the thread ended or timed out)."""
        with self._acc.cond:
            batches = list(self._in_flight.values())
            self._in_flight.clear()
        return batches

    def release_wake_fd(self) -> None:
        """Close the eventfd now, or let a still-running thread close it when it ends."""
        with self._acc.cond:
            if self._done:
                os.close(self.wake_fd)
            else:
                self._wake_fd_handed_over = True
