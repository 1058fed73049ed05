"""The broker process: a ZeroMQ ROUTER serving the storage engine (protocol: broker/protocol.py).

This module is the serve loop and the state it owns: dispatch, timers, the effects both
protocols share (append, topics, commits). Request handlers: broker/server_handlers.py;
FETCH and long polls: broker/server_fetch.py; start-up: broker/server_run.py; the command
line: edge/commands/broker.py.

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

import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import zmq

from . import protocol as P
from . import protocol_messages as M
from .background import BackgroundTasks, DiskFullState
from .curve import ServerCurve
from .errors import BrokerBusyError, BrokerError, DiskFullError, ResourceLimitError, UnknownTopicError
from .groups import GroupCoordinator
from .limits import BrokerLimits, BrokerStats, ClientTable, ReplyBacklog
from .logs import log_event, log_event_limited
from .memory import HeapTrimmer
from .server_fetch import FetchService
from .server_handlers import DurableAcks, RequestHandlers
from .storage import Storage
from .storage.partition_log import AppendResult, PartitionLog
from .topic_config import TopicConfig

logger = logging.getLogger("broker.server")

MIRROR_GROUP = "_mirror"
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


class ServerExtension(Protocol):
    """Another listener in this loop (broker/kafka/listener.py): it polls its sockets with ours
    and shares this storage and these groups, so nothing runs concurrently."""

    def attach(self, poller: zmq.Poller) -> None: ...
    def on_ready(self, fd: int, flags: int) -> None: ...
    def next_timeout_s(self) -> float | None: ...
    def run_timers(self, now: float) -> None: ...
    def on_append(self, topic: str, partition: int) -> None: ...
    def stats_fields(self) -> dict[str, Any]: ...
    def close(self) -> None: ...


class BrokerServer:
    def __init__(self, storage: Storage, endpoint: str, *, auto_create_topics: bool = True,
                 topic_config_for: Callable[[str], TopicConfig] | None = None, curve: ServerCurve | None = None,
                 limits: BrokerLimits | None = None, mirror_topics: Callable[[str], bool] | None = None):
        self.storage = storage
        self.mirror_topics = mirror_topics  # topics the mirror ships: protected before its first commit
        self.endpoint = endpoint
        self.curve = curve if endpoint.startswith("tcp://") else None
        self.auto_create_topics = auto_create_topics
        self.topic_config_for: Callable[[str], TopicConfig] = topic_config_for or (lambda name: storage.defaults)
        self.groups = GroupCoordinator(storage.data_dir, self._partition_count)
        self.context: zmq.Context[zmq.Socket[bytes]] = zmq.Context.instance()
        self.socket: zmq.Socket[bytes] | None = None
        self._stopping = False
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
        self.fetches = FetchService(storage, self.stats, self.reply_backlog, self._send)
        self.durable_acks = DurableAcks(storage, self._send)
        self._handlers = RequestHandlers(self).by_request
        self._monitor: zmq.Socket[bytes] | None = None
        self.extensions: list[ServerExtension] = []
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

    def bind(self) -> zmq.Socket[bytes]:
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
        return sock

    def stop(self, *_args: object) -> None:
        self._stopping = True

    def serve_forever(self) -> None:
        sock = self.socket or self.bind()
        monitor = self._monitor
        if monitor is None:
            raise BrokerError("the broker's socket monitor is gone: serve_forever after stop")
        poller = zmq.Poller()
        poller.register(sock, zmq.POLLIN)
        poller.register(monitor, zmq.POLLIN)
        for extension in self.extensions:
            extension.attach(poller)
        while not self._stopping:
            self.last_loop = time.monotonic()
            timeout_ms = self._next_timeout_ms()
            events = poller.poll(timeout_ms)
            if events:
                self.clients.read_monitor(monitor, self.stats, self.background.limiter)
                for _ in range(256):  # drain a burst, then look at timers
                    try:
                        frames = sock.recv_multipart(zmq.NOBLOCK, copy=False)
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
        self.durable_acks.complete()
        for fetch in self.fetches.take_all():
            self._guarded("shutdown_fetch", self.fetches.answer, fetch)
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
        parked_deadline = self.fetches.next_deadline()
        if parked_deadline is not None:
            waits.append(parked_deadline - now)
        waits.extend(w for w in (e.next_timeout_s() for e in self.extensions) if w is not None)
        return max(0, int(min(waits) * 1000) + 1)

    def _run_timers(self) -> None:
        now = time.monotonic()
        flushed = self._guarded("flush", self.storage.flush_due)
        if flushed or (flushed is None and self.durable_acks):
            self.durable_acks.complete()
        if self.fetches.parked:
            self._guarded("parked_fetch_expiry", self.fetches.expire, now)
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

    def _enforce_retention(self) -> None:
        self._guarded("retention", self.storage.enforce_retention)

    def _guarded(self, task: str, run: Callable[..., Any], *args: Any) -> Any:
        return self.background.run(task, run, *args)  # errors logged, counted, retried next turn

    def _append_when_disk_full(self, log: PartitionLog, view: memoryview) -> AppendResult:
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

    def _send(self, identity: bytes, frames: list[Any]) -> None:
        if self.socket is None:  # stopped: nobody is left to answer
            return
        try:
            self.socket.send_multipart([identity, *frames], copy=False)
        except zmq.ZMQError as exc:
            log_event(logger, logging.WARNING, "reply_failed", error=exc)

    def _handle(self, frames: list[zmq.Frame]) -> None:
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
            request = M.decode_request(header.request_kind, meta)
            reply = self._handlers[type(request)](identity, header.request_id, request, payloads)
            if reply is not None:
                self._send(identity, reply)
        except BrokerError as exc:
            self._reply_error(identity, kind, request_id, exc)
        except OSError as exc:
            log_event_limited(self.background.limiter, logger, logging.ERROR, "request_io_failed",
                              key=f"io-{kind}-{exc.errno}", kind=P.REQUEST_TYPES.get(kind, kind), error=repr(exc))
            self._reply_error(identity, kind, request_id, self.disk.error_for(exc, self.limits.fd_limit))
        except Exception as exc:
            log_event(logger, logging.ERROR, "request_failed", kind=P.REQUEST_TYPES.get(kind, kind), error=repr(exc))
            self._reply_error(identity, kind, request_id, BrokerError(f"internal error: {type(exc).__name__}: {exc}"))

    def _reply_error(self, identity: bytes, kind: int, request_id: int, exc: BrokerError) -> None:
        # errors are answered even for acks=none: a client ignores replies it does not await
        self._send(identity, P.error_reply(kind, request_id, exc))

    # -- effects both protocols share ------------------------------------------------------

    def _log_for_produce(self, topic: str, partition: int) -> PartitionLog:
        if not self.storage.has_topic(topic):
            if not self.auto_create_topics:
                raise UnknownTopicError(f"unknown topic {topic!r} (auto-creation is off)")
            self.create_topic(topic, self.topic_config_for(topic))
        return self.storage.log(topic, partition)

    def append_batch(self, topic: str, partition: int, view: memoryview) -> tuple[PartitionLog, AppendResult]:
        """Append one batch (both protocols): auto-creation, the disk-full retry, parked
        fetches woken. Returns (log, AppendResult)."""
        log = self._log_for_produce(topic, partition)
        try:
            result = log.append(view)
        except DiskFullError:
            result = self._append_when_disk_full(log, view)  # the disk guard may free space
        if self.disk.full:
            self.disk.clear("a write succeeded")
        for extension in self.extensions:
            extension.on_append(topic, partition)
        self.fetches.wake(topic, partition)
        return log, result

    def stats_json(self) -> dict[str, Any]:
        """The broker's limits, the counters of what they refused, and the gauges beside them."""
        return {
            "disk_full": self.disk.full, "disk_full_since_ns": self.disk.since_ns,
            "limits": self.limits.to_json(),
            "stats": {**self.stats.to_json(), "connections": self.clients.connections,
                      "parked_fetches": self.fetches.parked, "unread_reply_bytes": self.reply_backlog.total,
                      "partitions": len(self.storage.partition_logs())},
        }

    def check_partitions(self, topic: str, topic_partitions: int, added: int) -> None:
        try:
            self.limits.check_new_partitions(topic, topic_partitions, added, len(self.storage.partition_logs()))
        except ResourceLimitError:
            self.stats.partitions_refused += 1
            raise

    def create_topic(self, topic: str, config: TopicConfig) -> None:
        """Create a topic within the broker's partition limits (both protocols)."""
        if not self.storage.has_topic(topic):  # an existing one is refused by name below
            self.check_partitions(topic, config.partitions, config.partitions)
        self.storage.create_topic(topic, config)
        self._protect_unshipped(topic)

    def delete_topic(self, topic: str) -> None:
        """Delete a topic with its committed offsets and parked fetches (both protocols)."""
        self.storage.delete_topic(topic)
        self.groups.forget_topic(topic)
        self.fetches.wake_topic(topic)

    def configure_topic(self, topic: str, overrides: dict[str, Any]) -> TopicConfig:
        """Change a topic's config; partitions may only grow, within the broker's limits."""
        wanted = overrides.get("partitions")
        if isinstance(wanted, int) and not isinstance(wanted, bool) and self.storage.has_topic(topic):
            self.check_partitions(topic, wanted, max(0, wanted - self._partition_count(topic)))
        config = self.storage.configure_topic(topic, overrides)
        self._protect_unshipped(topic)  # added partitions
        return config

    def commit_offsets(self, group: str, offsets: dict[tuple[str, int], int],
                       metadata: dict[tuple[str, int], str] | None = None) -> None:
        """Store a group's offsets durably (both protocols share this store)."""
        self.groups.commit(group, offsets, metadata)
        if group == MIRROR_GROUP:
            for (topic, partition), offset in offsets.items():
                if self.storage.has_topic(topic) and partition < self._partition_count(topic):
                    self.storage.set_protected_offset(topic, partition, offset)

    def mirror_committed(self) -> dict[tuple[str, int], int]:
        """The mirror's committed offsets: what it has shipped of each partition."""
        return self.groups.fetch(MIRROR_GROUP)


if __name__ == "__main__":  # the command line moved out of the broker package (it reads edge's config)
    raise SystemExit("python -m broker.server has no command line any more: run `edge broker` "
                     "(python -m edge.cli broker) with the same flags")
