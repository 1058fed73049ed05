"""The broker process: a ZeroMQ ROUTER serving the storage engine (protocol: broker/protocol.py).

Guarantees:
- One event loop owns the storage engine and the group coordinator; requests are handled
  in arrival order per client, pipelined across clients.
- Hot path: produce hands the batch frame (a zero-copy view of the ZeroMQ message) to
  ``PartitionLog.append``, which checks header and CRC and writes it as-is; fetch sends the
  bytes read from the segment file with ``copy=False``. Records are never decoded here.
- Every malformed request gets an error reply with a code and a reason; an exception in a
  handler never stops the loop and never leaves a partial write (the storage layer cuts
  a failed write back).
- acks: ``none`` gets no reply, ``written`` a reply after the write, ``durable`` a reply
  once the batch is fsynced (at once for flush=batch/os, at the next interval flush for
  flush=interval).
- Long-poll fetches are parked until data arrives for one of their partitions or their
  wait expires; deleting a topic answers the fetches parked on it at once (unknown topic).
- Fetch entries carry the topic id and the partition's log epoch; a fetch that names the
  reader's epoch and a position past that epoch's end gets LOG_TRUNCATED (``truncated_to``).
- Memory: ZeroMQ reads ahead at most REQUESTS_QUEUED_PER_CLIENT requests per client; a
  producer's further batches wait in its own socket and bounded buffer (back-pressure).
  Fetch reply size, parked fetches, unread reply bytes, clients and partitions are capped
  (broker/limits.py); each refusal is a typed error to the client and a counter in stats.
- Background tasks (flush, recovery checkpoint, group expiry, retention, parked-fetch
  expiry, heap trim) never stop the broker: an error (ENOSPC, EMFILE, EIO...) is logged
  once a minute per task with the count of repeats, counted, and the task runs again on
  its next turn.
- Disk full: writes (produce, offset commits) are refused with DiskFullError (Kafka:
  KAFKA_STORAGE_ERROR); metadata, fetches and the rest keep working; ``disk_full`` shows
  in stats from the first refusal until a write succeeds or space is back; each produce
  tries again, so writes resume by themselves.
- Commits of group ``_mirror`` set the storage's protected offsets: retention keeps what
  the mirror has not shipped. Partitions of the topics the config selects for mirroring
  (``mirror_topics``) are protected from their first record, before any commit (offset 0).
- SIGTERM/SIGINT: stop reading requests, flush, answer parked durable acks, close storage
  cleanly (clean-shutdown markers), remove the ipc socket file, exit 0.
- Transport security: an ipc socket is mode 0660 (owner and group only); tcp is opt-in and
  a non-loopback tcp bind is refused unless CURVE is configured (broker/curve.py: only
  authorized client keys get through) or ``allow_insecure_tcp`` says otherwise.
"""

from __future__ import annotations

import argparse
import heapq
import logging
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import zmq

from . import protocol as P
from .base.names import MIRROR_GROUP
from .curve import CurveError, ServerCurve, is_loopback_tcp
from .errors import (
    BrokerBusyError,
    BrokerError,
    DiskFullError,
    InvalidConfigError,
    InvalidRequestError,
    LogTruncatedError,
    OffsetOutOfRangeError,
    ResourceLimitError,
    StorageError,
    UnknownTopicError,
)
from .groups import GroupCoordinator
from .limits import (
    MAX_FETCH_REPLY_BYTES,
    MAX_PARKED_PARTITIONS,
    MAX_PARKED_PER_CLIENT,
    BrokerLimits,
    BrokerStats,
    ClientTable,
    ReplyBacklog,
)
from .background import REPEATED_LOG_INTERVAL_S, BackgroundTasks, DiskFullState
from .logs import RateLimitFilter, log_event, log_event_limited, setup_logging
from .memory import HeapTrimmer
from .storage import DiskGuard, Storage
from .storage.dir_lock import lock_broker_data_dir
from .storage.pins import shipped_progress
from .topic_config import TopicConfig

logger = logging.getLogger("broker.server")

HARD_MAX_FRAME_BYTES = 1024 * 1024 * 1024
RETENTION_INTERVAL_S = 10.0
GROUP_EXPIRY_INTERVAL_S = 0.5
# Complete requests ZeroMQ reads ahead into the broker, per client. Few on purpose: a produce
# request carries a batch (MiBs for LiDAR clouds and raw frames) and a producer keeps up to
# max_in_flight of them per partition on the wire; a deep pipe holds them all in broker memory
# while the loop catches up (mixed vehicle workload: broker RSS 213-262 MB at 10,000, 100-111 MB
# at 8, same throughput). Past this the rest wait in the client's socket, i.e. in the bytes its
# bounded buffer already holds for retry (sent zero-copy): back-pressure reaches the producer.
REQUESTS_QUEUED_PER_CLIENT = 8
# Replies queued per client. Deep, because ROUTER drops a reply when this pipe is full, and a
# dropped reply is a request timeout and a retried batch for the client.
REPLIES_QUEUED_PER_CLIENT = 10_000
MAX_FETCH_WAIT_MS = 60_000


@dataclass
class ParkedFetch:
    deadline: float
    identity: bytes
    request_id: int
    meta: dict[str, Any]


@dataclass
class DurableWaiter:
    identity: bytes
    request_id: int
    topic: str
    partition: int
    needed: int
    reply: dict[str, Any]


class BrokerServer:
    def __init__(self, storage: Storage, endpoint: str, *, auto_create_topics: bool = True,
                 topic_config_for: Callable[[str], TopicConfig] | None = None, curve: ServerCurve | None = None,
                 limits: BrokerLimits | None = None, mirror_topics: Callable[[str], bool] | None = None):
        self.storage = storage
        self.mirror_topics = mirror_topics  # topics the mirror ships: protected before its first commit
        self.endpoint = endpoint
        self.curve = curve if endpoint.startswith("tcp://") else None
        self.auto_create_topics = auto_create_topics
        self.topic_config_for = topic_config_for or (lambda name: storage.defaults)
        self.groups = GroupCoordinator(storage.data_dir, self._partition_count)
        self.context = zmq.Context.instance()
        self.socket: zmq.Socket | None = None
        self._stopping = False
        self._parked: list[ParkedFetch] = []
        # (topic, partition) -> parked fetches listing it; may count fetches already gone
        # (then a produce scans for nothing), never misses one: a produce to a partition no
        # fetch waits for costs one lookup, however many fetches are parked
        self._parked_on: dict[tuple[str, int], int] = {}
        self._durable_waiters: list[DurableWaiter] = []
        self._last_retention = 0.0
        self.heap = HeapTrimmer()  # freed batches back to the OS once a second (broker.memory)
        self._last_expiry = 0.0
        self.last_loop = time.monotonic()
        self.requests_handled = 0
        self.limits = limits or BrokerLimits.from_fd_limit()
        self.stats = BrokerStats()
        self.clients = ClientTable(self.limits.max_clients)
        self.reply_backlog = ReplyBacklog()
        self.disk = DiskFullState(storage.data_dir, self.stats)
        self.background = BackgroundTasks(self.stats, self.disk)
        self._monitor: zmq.Socket | None = None
        # more listeners in this loop (broker/kafka/listener.py): they poll their sockets
        # with ours and share this storage and these groups, so nothing runs concurrently
        self.extensions: list = []
        self._apply_mirror_protection()

    # -- lifecycle -----------------------------------------------------------------------

    def _partition_count(self, topic: str) -> int:
        return self.storage.topic_config(topic).partitions if self.storage.has_topic(topic) else 0

    def _apply_mirror_protection(self) -> None:
        for topic in self.storage.topics():
            self._protect_unshipped(topic)
        for (topic, partition), offset in self.groups.fetch(MIRROR_GROUP).items():
            if self.storage.has_topic(topic) and partition < self._partition_count(topic):
                self.storage.set_protected_offset(topic, partition, offset)

    def _protect_unshipped(self, topic: str) -> None:
        """A topic selected for mirroring keeps every record until the mirror commits past it."""
        if self.mirror_topics is None or not self.mirror_topics(topic):
            return
        committed = self.groups.fetch(MIRROR_GROUP, [(topic, p) for p in range(self._partition_count(topic))])
        for partition in range(self._partition_count(topic)):
            self.storage.set_protected_offset(topic, partition, committed.get((topic, partition), 0))

    def bind(self) -> None:
        sock = self.context.socket(zmq.ROUTER)
        sock.setsockopt(zmq.LINGER, 2000)
        sock.setsockopt(zmq.MAXMSGSIZE, HARD_MAX_FRAME_BYTES)
        sock.setsockopt(zmq.ROUTER_MANDATORY, 0)
        sock.setsockopt(zmq.RCVHWM, REQUESTS_QUEUED_PER_CLIENT)
        sock.setsockopt(zmq.SNDHWM, REPLIES_QUEUED_PER_CLIENT)
        if self.curve is not None:
            self.curve.start(self.context)
            self.curve.apply(sock)
        if self.endpoint.startswith("ipc://"):
            path = Path(self.endpoint[len("ipc://"):])
            path.parent.mkdir(parents=True, exist_ok=True)
            path.unlink(missing_ok=True)  # a stale socket from a killed broker
        sock.bind(self.endpoint)
        if self.endpoint.startswith("ipc://"):
            os.chmod(self.endpoint[len("ipc://"):], 0o660)
        self.socket = sock
        # connection count for the client cap, and accepts the OS refused (EMFILE)
        self._monitor = sock.get_monitor_socket(zmq.EVENT_ACCEPTED | zmq.EVENT_DISCONNECTED | zmq.EVENT_ACCEPT_FAILED)
        log_event(logger, logging.INFO, "broker_listening", endpoint=self.endpoint,
                  curve=f"{self.curve.clients} authorized clients" if self.curve else "off",
                  data_dir=self.storage.data_dir, topics=len(self.storage.topics()))

    def stop(self, *_args: object) -> None:
        self._stopping = True

    def serve_forever(self) -> None:
        if self.socket is None:
            self.bind()
        poller = zmq.Poller()
        poller.register(self.socket, zmq.POLLIN)
        poller.register(self._monitor, zmq.POLLIN)
        for extension in self.extensions:
            extension.attach(poller)
        while not self._stopping:
            self.last_loop = time.monotonic()
            timeout_ms = self._next_timeout_ms()
            events = poller.poll(timeout_ms)
            if events:
                self.clients.read_monitor(self._monitor, self.stats, self.background.limiter)
                for _ in range(256):  # drain a burst, then look at timers
                    try:
                        frames = self.socket.recv_multipart(zmq.NOBLOCK, copy=False)
                    except zmq.Again:
                        break
                    self._handle(frames)
            for fd, flags in events:
                if isinstance(fd, int):  # a plain socket of an extension
                    for extension in self.extensions:
                        extension.on_ready(fd, flags)
            self._run_timers()
        self.shutdown()

    def shutdown(self) -> None:
        # a full disk must not turn a clean stop into a traceback: what fails is logged, the
        # next start recovers from the files as after a crash
        self._guarded("shutdown_flush", self.storage.flush_all)
        self._complete_durable_waiters()
        for fetch in self._parked:
            self._guarded("shutdown_fetch", self._answer_fetch, fetch)
        self._parked.clear()
        for extension in self.extensions:
            self._guarded("shutdown_extension", extension.close)
        self._guarded("shutdown_close", self.storage.close)
        if self._monitor is not None and self.socket is not None:
            self.socket.disable_monitor()
            self._monitor.close(linger=0)
            self._monitor = None
        if self.socket is not None:
            self.socket.close(linger=1000)
            self.socket = None
            if self.endpoint.startswith("ipc://"):
                Path(self.endpoint[len("ipc://"):]).unlink(missing_ok=True)
        if self.curve is not None:
            self.curve.stop()
        log_event(logger, logging.INFO, "broker_stopped", requests=self.requests_handled)

    # -- timers --------------------------------------------------------------------------

    def _next_timeout_ms(self) -> int:
        now = time.monotonic()
        waits = [GROUP_EXPIRY_INTERVAL_S]
        flush = self.storage.next_flush_delay_s()
        if flush is not None:
            waits.append(flush)
        if self._parked:
            waits.append(min(f.deadline for f in self._parked) - now)
        waits.extend(w for w in (e.next_timeout_s() for e in self.extensions) if w is not None)
        return max(0, int(min(waits) * 1000) + 1)

    def _run_timers(self) -> None:
        now = time.monotonic()
        flushed = self._guarded("flush", self.storage.flush_due)
        if flushed or (flushed is None and self._durable_waiters):
            self._complete_durable_waiters()
        if self._parked:
            self._guarded("parked_fetch_expiry", self._expire_parked, now)
        if now - self._last_expiry >= GROUP_EXPIRY_INTERVAL_S:
            self._last_expiry = now
            self._guarded("group_expiry", self.groups.expire, now)
        if now - self._last_retention >= RETENTION_INTERVAL_S:
            self._last_retention = now
            self._enforce_retention()
            self._guarded("disk_check", self.disk.check_space_back)
            self.reply_backlog.prune()
            self._guarded("connection_count", self.clients.reconcile)
        for extension in self.extensions:
            self._guarded("extension_timers", extension.run_timers, now)
        self._guarded("heap_trim", self.heap.maybe_trim, now)

    def _expire_parked(self, now: float) -> None:
        due = [f for f in self._parked if f.deadline <= now]
        if due:
            self._parked = [f for f in self._parked if f.deadline > now]
            self._unpark(due)
            for fetch in due:
                self._answer_fetch(fetch)

    def _enforce_retention(self) -> None:
        self._guarded("retention", self.storage.enforce_retention)

    def _guarded(self, task: str, run: Callable, *args: Any) -> Any:
        return self.background.run(task, run, *args)  # errors logged, counted, retried next turn

    def _append_when_disk_full(self, log, view):
        """The append after a DiskFullError: again once the disk guard had a chance to free
        space (at most once a second, not per refused request); else refused."""
        self.disk.note()
        if self.disk.retry_due():
            self._enforce_retention()
            try:
                return log.append(view)
            except DiskFullError:
                pass
        raise self.disk.refusal(f"{log.topic}/{log.partition}")

    # -- dispatch ------------------------------------------------------------------------

    def _send(self, identity: bytes, frames: list) -> None:
        try:
            self.socket.send_multipart([identity, *frames], copy=False)
        except zmq.ZMQError as exc:
            log_event(logger, logging.WARNING, "reply_failed", error=exc)

    def _handle(self, frames: list) -> None:
        self.requests_handled += 1
        identity = frames[0].bytes
        kind, request_id = 0, 0
        try:
            if not self.clients.admit(identity):
                self.stats.clients_refused += 1
                raise BrokerBusyError(f"too many clients: {self.clients.connections} connected, limit "
                                      f"{self.clients.capacity} (fd limit {self.limits.fd_limit}); try again later")
            if len(frames) >= 2 and len(frames[1]) == P.HEADER_SIZE:
                # learn kind and id early so even a bad request gets a matching error reply
                try:
                    early = P.decode_header(frames[1].bytes)
                    kind, request_id = early.request_kind, early.request_id
                except BrokerError:
                    pass
            header, meta, payloads = P.parse_request(
                [frames[1].bytes if len(frames) > 1 else b"", *(f.bytes for f in frames[2:3]), *frames[3:]]
            )
            handler = self._handlers[header.request_kind]
            reply = handler(self, identity, header, meta, payloads)
            if reply is not None:
                self._send(identity, reply)
        except BrokerError as exc:
            self._reply_error(identity, kind, request_id, exc)
        except OSError as exc:
            log_event_limited(self.background.limiter, logger, logging.ERROR, "request_io_failed",
                              key=f"io-{kind}-{exc.errno}", kind=P.REQUEST_TYPES.get(kind, kind), error=repr(exc))
            self._reply_error(identity, kind, request_id, self.disk.error_for(exc, self.limits.fd_limit))
        except Exception as exc:  # noqa: BLE001 - the loop must survive any request
            log_event(logger, logging.ERROR, "request_failed", kind=P.REQUEST_TYPES.get(kind, kind), error=repr(exc))
            self._reply_error(identity, kind, request_id, BrokerError(f"internal error: {type(exc).__name__}: {exc}"))

    def _reply_error(self, identity: bytes, kind: int, request_id: int, exc: BrokerError) -> None:
        # errors are answered even for acks=none: a client ignores replies it does not await
        self._send(identity, P.error_reply(kind, request_id, exc))

    # -- produce -------------------------------------------------------------------------

    def _log_for_produce(self, topic: str, partition: int):
        if not self.storage.has_topic(topic):
            if not self.auto_create_topics:
                raise UnknownTopicError(f"unknown topic {topic!r} (auto-creation is off)")
            self.create_topic(topic, self.topic_config_for(topic))
        return self.storage.log(topic, partition)

    def append_batch(self, topic: str, partition: int, view: memoryview):
        """Append one batch (both protocols): auto-creation, the disk-full retry, parked
        fetches woken. Returns (log, AppendResult)."""
        log = self._log_for_produce(topic, partition)
        try:
            result = log.append(view)
        except DiskFullError:
            result = self._append_when_disk_full(log, view)  # the disk guard may free space
        if self.disk.full:
            self.disk.clear("a write succeeded")
        self._wake_fetches(topic, partition)
        return log, result

    def _produce(self, identity, header, meta, payloads):
        topic = P.field(meta, "topic", str)
        partition = P.field(meta, "partition", int, minimum=0)
        acks = P.field(meta, "acks", int, default=P.ACKS_WRITTEN, minimum=0, maximum=2)
        batch = payloads[0]
        log, result = self.append_batch(topic, partition, batch.buffer if hasattr(batch, "buffer") else memoryview(batch))
        if acks == P.ACKS_NONE:
            return None
        reply = {"base_offset": result.base_offset, "last_offset": result.last_offset,
                 "append_time": result.append_time_ns}
        if acks == P.ACKS_DURABLE and not result.durable:
            if log.config.flush != "interval":
                log.flush()
            else:
                self._durable_waiters.append(
                    DurableWaiter(identity, header.request_id, topic, partition, result.last_offset + 1, reply))
                return None
        reply["durable_offset"] = log.durable_offset
        return P.ok_reply(P.PRODUCE, header.request_id, reply)

    def _complete_durable_waiters(self) -> None:
        pending = []
        for waiter in self._durable_waiters:
            try:
                durable = self.storage.log(waiter.topic, waiter.partition).durable_offset
            except BrokerError as exc:
                self._send(waiter.identity, P.error_reply(P.PRODUCE, waiter.request_id, exc))
                continue
            if durable >= waiter.needed:
                self._send(waiter.identity, P.ok_reply(P.PRODUCE, waiter.request_id,
                                                       {**waiter.reply, "durable_offset": durable}))
            else:
                pending.append(waiter)
        self._durable_waiters = pending

    # -- fetch ---------------------------------------------------------------------------

    def _fetch(self, identity, header, meta, payloads):
        parts = P.field(meta, "partitions", list)
        if not parts or len(parts) > 4096:
            raise InvalidRequestError("fetch needs 1..4096 partitions")
        listed = set()
        for part in parts:
            if not isinstance(part, list) or len(part) not in (3, 4):
                raise InvalidRequestError("each fetch partition is [topic, partition, offset] or "
                                          "[topic, partition, offset, log_epoch]")
            P.field({"topic": part[0]}, "topic", str)
            P.field({"partition": part[1]}, "partition", int, minimum=0)
            P.field({"offset": part[2]}, "offset", int, minimum=0)
            if len(part) == 4:
                P.field({"log_epoch": part[3]}, "log_epoch", int, minimum=0)
            listed.add((part[0], part[1]))
        if len(listed) != len(parts):
            raise InvalidRequestError("a fetch lists a partition more than once")
        if P.field(meta, "max_bytes", int, default=4 * 1024 * 1024, minimum=1) > MAX_FETCH_REPLY_BYTES:
            meta["max_bytes"] = MAX_FETCH_REPLY_BYTES  # one reply's memory is bounded
            self.stats.fetch_max_bytes_clamped += 1
        wait_ms = P.field(meta, "max_wait_ms", int, default=0, minimum=0, maximum=MAX_FETCH_WAIT_MS)
        self._check_reply_backlog(identity)
        fetch = ParkedFetch(time.monotonic() + wait_ms / 1000, identity, header.request_id, meta)
        reply, has_data = self._read_fetch(fetch)
        if not has_data and wait_ms > 0 and self._may_park(identity, len(parts)):
            self._parked.append(fetch)
            for key in listed:
                self._parked_on[key] = self._parked_on.get(key, 0) + 1
        else:
            self._send_fetch_reply(identity, reply)
        return None

    def _may_park(self, identity: bytes, partitions: int) -> bool:
        """Whether a fetch may wait for data; raises BrokerBusyError when its client has too many
        waiting, False (answer now) when all clients' waiting fetches reach the broker's cap."""
        if sum(1 for f in self._parked if f.identity == identity) >= MAX_PARKED_PER_CLIENT:
            self.stats.fetch_parked_refused += 1
            raise BrokerBusyError(f"this client already has {MAX_PARKED_PER_CLIENT} fetches waiting for data")
        if sum(len(f.meta["partitions"]) for f in self._parked) + partitions > MAX_PARKED_PARTITIONS:
            self.stats.fetch_parked_overflow += 1
            return False
        return True

    def _send_fetch_reply(self, identity: bytes, reply: list) -> None:
        """Send a fetch reply, its data counted as unread until ZeroMQ has written it (see
        ReplyBacklog: the tracker of its last frame with data, for large replies and one in
        many small ones; ZeroMQ writes a message's frames, and a client's messages, in order)."""
        nbytes = sum(len(f) for f in reply[2:])
        if not nbytes:
            self._send(identity, reply)
        elif not self.reply_backlog.wants_tracker(identity, nbytes):
            self._send(identity, reply)
            self.reply_backlog.add_untracked(identity, nbytes)
        else:
            last = max(i for i in range(2, len(reply)) if len(reply[i]))
            tracked = zmq.Frame(reply[last], copy=False, track=True)
            self._send(identity, [*reply[:last], tracked, *reply[last + 1:]])
            self.reply_backlog.add(identity, tracked.tracker, nbytes)

    def _read_fetch(self, fetch: ParkedFetch) -> tuple[list, bool]:
        budget = fetch.meta.get("max_bytes", 4 * 1024 * 1024)
        out_meta, payloads, has_data = [], [], False
        for topic, partition, offset, *epoch in fetch.meta["partitions"]:
            entry: dict[str, Any] = {"topic": topic, "partition": partition, "error": 0}
            data = b""
            try:
                log = self.storage.log(topic, partition)
                epochs = self.storage.log_epochs(topic, partition)
                entry.update(log_start=log.log_start_offset, next_offset=log.next_offset,
                             durable_offset=log.durable_offset, topic_id=self.storage.topic_id(topic),
                             log_epoch=epochs.current)
                if epoch and epoch[0] != epochs.current:
                    end = epochs.end_offset(epoch[0], log.next_offset)
                    if offset > end:  # recovery took back [end, offset): the reader must hear it
                        entry["truncated_to"] = end
                        raise LogTruncatedError(f"{topic}/{partition}: offsets from {end} up to {offset} were "
                                                f"taken back by crash recovery (log epoch {epoch[0]} ended at {end})")
                if budget > 0:
                    data = log.read(offset, budget)
                    budget -= len(data)
            except (BrokerError, OSError) as exc:
                err = exc if isinstance(exc, BrokerError) else StorageError(f"reading {topic}/{partition}: {exc}")
                entry.update(error=err.code, message=err.message)
                if isinstance(err, OffsetOutOfRangeError):  # a reader's position is gone: count it by kind
                    kind = "log_truncated" if isinstance(err, LogTruncatedError) else "offset_out_of_range"
                    self.stats.fetch_position_errors[kind] = self.stats.fetch_position_errors.get(kind, 0) + 1
                has_data = True  # errors are news: answer now
            if len(data):
                has_data = True
            entry["bytes"] = len(data)
            out_meta.append(entry)
            payloads.append(data)
        return P.ok_reply(P.FETCH, fetch.request_id, {"partitions": out_meta}, payloads), has_data

    def _check_reply_backlog(self, identity: bytes) -> None:
        try:
            self.reply_backlog.check(identity)
        except BrokerBusyError:
            self.stats.reply_backlog_refused += 1
            raise

    def _answer_fetch(self, fetch: ParkedFetch) -> None:
        try:
            self._check_reply_backlog(fetch.identity)
        except BrokerBusyError as exc:
            self._reply_error(fetch.identity, P.FETCH, fetch.request_id, exc)
            return
        reply, _ = self._read_fetch(fetch)
        self._send_fetch_reply(fetch.identity, reply)

    def _wake_fetches(self, topic: str, partition: int) -> None:
        for extension in self.extensions:
            extension.on_append(topic, partition)
        if not self._parked or (topic, partition) not in self._parked_on:
            return
        keep, woken = [], []
        for fetch in self._parked:
            if any(part[0] == topic and part[1] == partition for part in fetch.meta["partitions"]):
                woken.append(fetch)
            else:
                keep.append(fetch)
        self._parked = keep
        self._unpark(woken)
        for fetch in woken:
            self._answer_fetch(fetch)

    def _unpark(self, fetches: list[ParkedFetch]) -> None:
        for fetch in fetches:
            for part in fetch.meta["partitions"]:
                key = (part[0], part[1])
                left = self._parked_on.pop(key, 0) - 1
                if left > 0:
                    self._parked_on[key] = left

    # -- offsets, metadata, topics -------------------------------------------------------

    def _list_offsets(self, identity, header, meta, payloads):
        topic = P.field(meta, "topic", str)
        partition = P.field(meta, "partition", int, minimum=0)
        spec = P.field(meta, "spec", str)
        log = self.storage.log(topic, partition)
        if spec == "earliest":
            offset, found = log.log_start_offset, True
        elif spec == "latest":
            offset, found = log.next_offset, True
        elif spec == "timestamp":
            ts = P.field(meta, "timestamp", int)
            found_offset = log.offset_for_time(ts)
            offset, found = (found_offset, True) if found_offset is not None else (log.next_offset, False)
        else:
            raise InvalidRequestError(f"spec must be earliest, latest or timestamp, not {spec!r}")
        return P.ok_reply(P.LIST_OFFSETS, header.request_id, {"offset": offset, "found": found})

    def _metadata(self, identity, header, meta, payloads):
        wanted = P.field(meta, "topics", (list, type(None)), default=None)
        topics = {}
        for name, config in sorted(self.storage.topics().items()):
            if wanted is not None and name not in wanted:
                continue
            topics[name] = {
                "config": config.to_json_dict(),
                "id": self.storage.topic_id(name),
                "partitions": [
                    {"partition": log.partition, "log_start": log.log_start_offset, "next_offset": log.next_offset,
                     "log_epoch": self.storage.log_epochs(name, log.partition).current,
                     "durable_offset": log.durable_offset, "size_bytes": log.size_bytes,
                     "segments": len(log.segments), "protected_offset": log.protected_offset,
                     "future_records": log.future_records}
                    for log in self.storage.partition_logs(name)
                ],
            }
        if wanted:
            missing = [t for t in wanted if t not in topics]
            if missing:
                raise UnknownTopicError(f"unknown topic {missing[0]!r}")
        usage = os.statvfs(self.storage.data_dir)
        broker = {
            "endpoint": self.endpoint, "data_dir": str(self.storage.data_dir), "pid": os.getpid(),
            "disk_total_bytes": usage.f_blocks * usage.f_frsize, "disk_free_bytes": usage.f_bavail * usage.f_frsize,
            "deletions": self.storage.deletion_counts, "unshipped_deleted_bytes": self.storage.unshipped_deleted_bytes,
            "recovered_truncated_bytes": sum(r.truncated_bytes for r in self.storage.recovery_reports),
            "corrupt_batches": self.storage.corrupt_batch_count,
            "pins": len(self.storage.pins), "pinned_bytes": self.storage.total_pinned_bytes(),
            "pinned_deleted_bytes": self.storage.pinned_deleted_bytes,
            "time_ns": time.time_ns(),
            **self._stats_json(),
        }
        for extension in self.extensions:
            broker.update(extension.stats_fields())
        return P.ok_reply(P.METADATA, header.request_id, {"topics": topics, "broker": broker})

    def _stats_json(self) -> dict[str, Any]:
        """The broker's limits, the counters of what they refused, and the gauges beside them."""
        return {
            "disk_full": self.disk.full, "disk_full_since_ns": self.disk.since_ns,
            "limits": self.limits.to_json(),
            "stats": {**self.stats.to_json(), "connections": self.clients.connections,
                      "parked_fetches": len(self._parked), "unread_reply_bytes": self.reply_backlog.total,
                      "partitions": len(self.storage.partition_logs())},
        }

    def _check_partitions(self, topic: str, topic_partitions: int, added: int) -> None:
        try:
            self.limits.check_new_partitions(topic, topic_partitions, added, len(self.storage.partition_logs()))
        except ResourceLimitError:
            self.stats.partitions_refused += 1
            raise

    def _topic_config_from(self, base: TopicConfig, meta: dict) -> TopicConfig:
        overrides = P.field(meta, "config", dict, default={})
        try:
            return base.merged(overrides)
        except Exception as exc:  # pydantic ValidationError names the bad key
            raise InvalidConfigError(f"invalid topic config: {exc}") from None

    def _create_topic(self, identity, header, meta, payloads):
        topic = P.field(meta, "topic", str)
        config = self._topic_config_from(self.topic_config_for(topic), meta)
        if P.field(meta, "if_not_exists", bool, default=False) and self.storage.has_topic(topic):
            return P.ok_reply(P.CREATE_TOPIC, header.request_id, {"created": False})
        self.create_topic(topic, config)
        return P.ok_reply(P.CREATE_TOPIC, header.request_id, {"created": True, "config": config.to_json_dict()})

    def _delete_topic(self, identity, header, meta, payloads):
        self.delete_topic(P.field(meta, "topic", str))
        return P.ok_reply(P.DELETE_TOPIC, header.request_id, {"deleted": True})

    def create_topic(self, topic: str, config: TopicConfig) -> None:
        """Create a topic within the broker's partition limits (both protocols)."""
        if not self.storage.has_topic(topic):  # an existing one is refused by name below
            self._check_partitions(topic, config.partitions, config.partitions)
        self.storage.create_topic(topic, config)
        self._protect_unshipped(topic)

    def delete_topic(self, topic: str) -> None:
        """Delete a topic with its committed offsets and parked fetches (both protocols)."""
        self.storage.delete_topic(topic)
        self.groups.forget_topic(topic)
        # readers waiting on the topic hear "unknown topic" now (their other partitions too)
        waiting = [f for f in self._parked if any(part[0] == topic for part in f.meta["partitions"])]
        self._parked = [f for f in self._parked if f not in waiting]
        self._unpark(waiting)
        for fetch in waiting:
            self._answer_fetch(fetch)

    def _configure_topic(self, identity, header, meta, payloads):
        topic = P.field(meta, "topic", str)
        overrides = P.field(meta, "config", dict)
        wanted = overrides.get("partitions")
        if isinstance(wanted, int) and not isinstance(wanted, bool) and self.storage.has_topic(topic):
            self._check_partitions(topic, wanted, max(0, wanted - self._partition_count(topic)))
        config = self.storage.configure_topic(topic, overrides)
        self._protect_unshipped(topic)  # added partitions
        return P.ok_reply(P.CONFIGURE_TOPIC, header.request_id, {"config": config.to_json_dict()})

    # -- groups --------------------------------------------------------------------------

    def _commit_offsets(self, identity, header, meta, payloads):
        group = P.field(meta, "group", str)
        raw = P.field(meta, "offsets", list)
        offsets = {}
        for item in raw:
            if not (isinstance(item, list) and len(item) == 3 and isinstance(item[0], str)
                    and all(isinstance(x, int) and not isinstance(x, bool) and x >= 0 for x in item[1:])):
                raise InvalidRequestError("each offset is [topic, partition, offset] with non-negative integers")
            offsets[(item[0], item[1])] = item[2]
        self.commit_offsets(group, offsets)
        return P.ok_reply(P.COMMIT_OFFSETS, header.request_id, {"committed": len(offsets)})

    def commit_offsets(self, group: str, offsets: dict[tuple[str, int], int],
                       metadata: dict[tuple[str, int], str] | None = None) -> None:
        """Store a group's offsets durably (both protocols share this store)."""
        self.groups.commit(group, offsets, metadata)
        if group == MIRROR_GROUP:
            for (topic, partition), offset in offsets.items():
                if self.storage.has_topic(topic) and partition < self._partition_count(topic):
                    self.storage.set_protected_offset(topic, partition, offset)

    def _fetch_offsets(self, identity, header, meta, payloads):
        group = P.field(meta, "group", str)
        parts = P.field(meta, "partitions", (list, type(None)), default=None)
        if parts is not None and not all(
                isinstance(item, list) and len(item) == 2 and isinstance(item[0], str)
                and isinstance(item[1], int) and not isinstance(item[1], bool) and item[1] >= 0 for item in parts):
            raise InvalidRequestError("each partition is [topic, partition] with a topic name and a non-negative integer")
        wanted = None if parts is None else [(t, p) for t, p in parts]
        offsets = self.groups.fetch(group, wanted)
        return P.ok_reply(P.FETCH_OFFSETS, header.request_id,
                          {"offsets": [[t, p, o] for (t, p), o in sorted(offsets.items())]})

    def _join_group(self, identity, header, meta, payloads):
        group = P.field(meta, "group", str)
        topics = P.field(meta, "topics", list)
        if not topics or not all(isinstance(t, str) for t in topics):
            raise InvalidRequestError("join needs a non-empty list of topic names")
        member_id = P.field(meta, "member_id", (str, type(None)), default=None)
        timeout_ms = P.field(meta, "session_timeout_ms", int, default=10_000, minimum=100, maximum=600_000)
        member_id, generation, assignment = self.groups.join(group, member_id, topics, timeout_ms / 1000)
        return P.ok_reply(P.JOIN_GROUP, header.request_id,
                          {"member_id": member_id, "generation": generation, "assignment": [list(a) for a in assignment]})

    def _heartbeat(self, identity, header, meta, payloads):
        group = P.field(meta, "group", str)
        member_id = P.field(meta, "member_id", str)
        generation = P.field(meta, "generation", int)
        rebalance, generation, assignment = self.groups.heartbeat(group, member_id, generation)
        return P.ok_reply(P.HEARTBEAT, header.request_id,
                          {"rebalance": rebalance, "generation": generation, "assignment": [list(a) for a in assignment]})

    def _leave_group(self, identity, header, meta, payloads):
        self.groups.leave(P.field(meta, "group", str), P.field(meta, "member_id", str))
        return P.ok_reply(P.LEAVE_GROUP, header.request_id, {"left": True})

    def _list_groups(self, identity, header, meta, payloads):
        return P.ok_reply(P.LIST_GROUPS, header.request_id, {"groups": self.groups.describe()})

    def _pins(self, identity, header, meta, payloads):
        """Set, clear or list the pins of events (broker/storage/pins.py); list adds what the
        mirror has shipped of each."""
        action = P.field(meta, "action", str)
        if action == "set":
            topics = P.field(meta, "topics", list)
            if not all(isinstance(t, str) for t in topics):
                raise InvalidRequestError("topics must be a list of topic names")
            pin = self.storage.set_pin(P.field(meta, "id", str), P.field(meta, "label", str, default=""), topics,
                                       P.field(meta, "start_ns", int, minimum=0), P.field(meta, "end_ns", int, minimum=0))
            return P.ok_reply(P.PINS, header.request_id, {"pin": pin.to_json()})
        if action == "clear":
            self.storage.clear_pin(P.field(meta, "id", str))
            return P.ok_reply(P.PINS, header.request_id, {"cleared": True})
        if action != "list":
            raise InvalidRequestError(f"pins action must be set, clear or list, not {action!r}")
        report = self.storage.pins_report()
        committed = self.groups.fetch(MIRROR_GROUP)
        for body in report["pins"]:
            body.update(shipped_progress(self.storage.pins.get(body["id"]), committed))
        return P.ok_reply(P.PINS, header.request_id, {**report, "time_ns": time.time_ns()})

    def _init_producer_id(self, identity, header, meta, payloads):
        # Kafka's InitProducerId for an idempotent (non-transactional) producer: a new id, epoch 0
        return P.ok_reply(P.INIT_PRODUCER_ID, header.request_id,
                          {"producer_id": self.storage.producer_ids.allocate(), "producer_epoch": 0})

    def _ping(self, identity, header, meta, payloads):
        return P.ok_reply(P.PING, header.request_id, {"time_ns": time.time_ns(), "version": P.VERSION})

    _handlers = {
        P.PRODUCE: _produce, P.FETCH: _fetch, P.LIST_OFFSETS: _list_offsets, P.METADATA: _metadata,
        P.CREATE_TOPIC: _create_topic, P.DELETE_TOPIC: _delete_topic, P.CONFIGURE_TOPIC: _configure_topic,
        P.COMMIT_OFFSETS: _commit_offsets, P.FETCH_OFFSETS: _fetch_offsets, P.JOIN_GROUP: _join_group,
        P.HEARTBEAT: _heartbeat, P.LEAVE_GROUP: _leave_group, P.LIST_GROUPS: _list_groups, P.PING: _ping,
        P.PINS: _pins,
        P.INIT_PRODUCER_ID: _init_producer_id,
    }


def _raise_fd_limit() -> None:
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def run_broker(data_dir: Path, endpoint: str | None, *, defaults: TopicConfig | None = None,
               disk_guard: DiskGuard | None = None, auto_create_topics: bool = True,
               topic_config_for: Callable[[str], TopicConfig] | None = None,
               curve: tuple[Path, Path] | None = None, allow_insecure_tcp: bool = False,
               mirror_topics: Callable[[str], bool] | None = None, kafka: dict | None = None) -> int:
    """Serve until SIGTERM/SIGINT; ``curve``: (server .key_secret file, authorized-clients
    directory); ``kafka``: keyword arguments of ``start_kafka_listener`` (listen, advertised,
    insecure) plus ``required`` (False: a busy default port is logged and skipped).
    Returns the exit code (2: cannot start, with the reason logged)."""
    from .base import sdnotify  # small, no heavy imports

    _raise_fd_limit()
    # conditions that last (a full disk the guard cannot clear) log once a minute, with counts
    logging.getLogger("broker.retention").addFilter(RateLimitFilter(("disk_guard_stuck",), REPEATED_LOG_INTERVAL_S))
    started = time.perf_counter()
    endpoint = endpoint or f"ipc://{Path(data_dir).resolve()}/broker.sock"
    server_curve = None
    if endpoint.startswith("tcp://"):
        try:
            server_curve = ServerCurve(*curve) if curve is not None else None
        except CurveError as exc:
            log_event(logger, logging.ERROR, "broker_refused", reason=exc.message)
            return 2
        if server_curve is None and not allow_insecure_tcp and not is_loopback_tcp(endpoint):
            log_event(logger, logging.ERROR, "broker_refused",
                      reason=f"{endpoint} is reachable from other hosts: configure [broker.curve] (keys from "
                             "`edge keys`) or set allow_insecure_tcp = true")
            return 2
    if not lock_broker_data_dir(data_dir, logger):  # one broker per data directory, held until exit
        return 2
    storage = Storage(data_dir, defaults=defaults, disk_guard=disk_guard)
    server = BrokerServer(storage, endpoint, auto_create_topics=auto_create_topics, topic_config_for=topic_config_for,
                          curve=server_curve, mirror_topics=mirror_topics)
    signal.signal(signal.SIGTERM, server.stop)
    signal.signal(signal.SIGINT, server.stop)
    try:
        server.bind()
    except zmq.ZMQError as exc:
        storage.close()
        log_event(logger, logging.ERROR, "bind_failed", endpoint=endpoint, error=exc)
        return 2
    if kafka and not _start_kafka(server, dict(kafka)):
        server.shutdown()
        return 2
    log_event(logger, logging.INFO, "broker_ready", seconds=f"{time.perf_counter() - started:.3f}",
              heap_trim="every 1s" if server.heap.available else "unavailable")
    sdnotify.ready(f"serving {endpoint}")
    watchdog = sdnotify.Watchdog(alive=lambda: time.monotonic() - server.last_loop < 10).start()
    try:
        server.serve_forever()
    finally:
        watchdog.stop()
        sdnotify.stopping()
    return 0


def _start_kafka(server: BrokerServer, kafka: dict) -> bool:
    from .kafka.listener import start_kafka_listener

    required = kafka.pop("required", True)
    try:
        start_kafka_listener(server, **kafka)
    except ValueError as exc:
        log_event(logger, logging.ERROR, "broker_refused", reason=str(exc))
        return False
    except OSError as exc:
        log_event(logger, logging.ERROR if required else logging.WARNING, "kafka_bind_failed",
                  address=kafka["listen"], error=exc,
                  effect="not starting" if required else "serving without the Kafka listener")
        return not required
    return True


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="appliance config file (TOML); flags override it")
    parser.add_argument("--data-dir", help="directory holding the segments")
    parser.add_argument("--endpoint", help="ipc:///path/broker.sock (default: <data-dir>/broker.sock) or tcp://HOST:PORT")
    parser.add_argument("--log-level", default=None, help="DEBUG, INFO, WARNING or ERROR")
    parser.add_argument("--kafka-listen", metavar="HOST:PORT",
                        help="also serve Kafka clients here (loopback only unless --kafka-insecure); "
                             "'off' disables the listener of the config")
    parser.add_argument("--kafka-advertised", metavar="HOST:PORT",
                        help="address Kafka clients are told to connect to (default: the listen address)")
    parser.add_argument("--kafka-insecure", action="store_true", default=None,
                        help="allow a non-loopback Kafka listener without TLS/SASL")
    parser.add_argument("--kafka-tls-cert", metavar="PEM", help="TLS certificate (chain) for the Kafka listener")
    parser.add_argument("--kafka-tls-key", metavar="PEM", help="its private key")
    parser.add_argument("--kafka-sasl-users", metavar="FILE",
                        help="SASL/PLAIN users for the Kafka listener, one user:password per line")


def _kafka_options(args: argparse.Namespace, broker=None) -> dict | None:
    """Listener options from flags over ``[broker] kafka_*``; None: no listener."""
    listen = args.kafka_listen or (broker.kafka_listen if broker is not None else None)
    if not listen or listen == "off":
        return None
    return {"listen": listen,
            "advertised": args.kafka_advertised or (broker.kafka_advertised if broker is not None else None),
            "insecure": bool(args.kafka_insecure or (broker is not None and broker.kafka_insecure)),
            **{key: getattr(args, f"kafka_{key}") or (getattr(broker, f"kafka_{key}") if broker is not None else None)
               for key in ("tls_cert", "tls_key", "sasl_users")},
            # the config's default address may be taken (a second appliance, a test): not fatal
            "required": bool(args.kafka_listen) or (broker is not None and broker.kafka_listen_set)}


def main_from_args(args: argparse.Namespace) -> int:
    if args.config:
        from edge.config import load_config

        config = load_config(args.config)
        broker = config.broker
        data_dir = Path(args.data_dir) if args.data_dir else broker.data_dir
        endpoint = args.endpoint or broker.endpoint
        setup_logging(args.log_level or broker.log_level, "broker")
        curve = broker.curve
        return run_broker(data_dir, endpoint or f"ipc://{data_dir.resolve()}/broker.sock",
                          defaults=broker.defaults, disk_guard=broker.disk_guard,
                          auto_create_topics=broker.auto_create_topics, topic_config_for=config.topic_config,
                          curve=(curve.server_secret_key, curve.authorized_keys) if curve else None,
                          allow_insecure_tcp=broker.allow_insecure_tcp,
                          mirror_topics=config.mirror.selects if config.mirror is not None else None,
                          kafka=_kafka_options(args, broker))
    if not args.data_dir:
        raise SystemExit("edge broker: give --data-dir DIR or --config FILE")
    setup_logging(args.log_level or "INFO", "broker")
    return run_broker(Path(args.data_dir), args.endpoint, kafka=_kafka_options(args))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="edge broker", description="Run the local log broker.")
    add_arguments(parser)
    return main_from_args(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
