"""The mirror process: local topics → cloud Apache Kafka, exactly once per partition.

Guarantee (docs/MIRROR.md has the long form): every record of a mirrored partition that is
still in the local log when its turn comes appears exactly once, in offset order, in the
destination partition of the same number, as seen by read_committed consumers, or is
reported (refused by the destination and handled by ``on_reject``; deleted locally first).
How:
- a transactional producer (``transactional.id = edge-mirror-<vehicle>``): records are
  shipped in transactions committed every ``transaction_interval``; on start,
  ``init_transactions`` fences a previous instance and aborts what it had not committed;
- identity: records carry ``edge.vehicle`` and ``edge.epoch`` (this data directory's epoch,
  edge/mirror/resume.py); resume counts only records of both, from the destination while it
  holds them, else from the local ``_mirror`` commit (the choice and its reason are logged);
- after an aborted transaction the local positions go back to the last commit; records
  Kafka refused (by error code) are remembered and handled by their topic's policy when they
  come again (edge/mirror/reject.py), so one bad record never blocks other partitions;
- ``shipped_records``/``shipped_bytes`` count what Kafka committed;
- the uplink: order, caps, byte budget (uplink.py, budget.py), what a record becomes on the way
  (decimate.py); the loop's link/transaction states and typed Kafka errors (states.py).
Limits: one mirror per vehicle (the transactional id is the fence); records deleted by the
vehicle's disk guard before they were shipped cannot be shipped: each gap is counted as it is
met (``lost_to_retention``, ``lost_ranges``, ``event=mirror_lost_to_retention``);
consumers must read with isolation.level=read_committed (the librdkafka default).

Offline is normal: when the cluster is unreachable, commits are retried with backoff and no
more records are pulled from the local broker (memory stays bounded by
``max_buffer_bytes`` plus librdkafka's queue); shipping resumes when the link returns.
Progress is committed to the local broker as group ``_mirror`` (retention keeps what is not
shipped) and written to ``<data_dir>/.mirror/checkpoint.json`` for lag figures. Status goes
to the ``_health`` topic with key ``mirror`` every second from a thread of its own (so it
keeps coming while a Kafka call blocks), with its time, pid and last commit; every exit
leaves a final report with the reason (``state`` stopped or failed).
"""

from __future__ import annotations

import collections
import json
import logging
import os
import signal
import socket
import threading
import time
from pathlib import Path
from typing import Any

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka import Producer as KafkaProducer
from confluent_kafka.admin import AdminClient

from broker.base.names import (
    DRIVES_TOPIC,
    HEADER_REJECT_ERROR,
    HEADER_REJECT_TOPIC,
    HEALTH_TOPIC,
    MIRROR_GROUP,
)
from broker.client import Admin, Consumer, Producer
from broker.errors import BrokerError
from broker.logs import log_event
from broker.records import Record
from broker.storage.layout import atomic_write

from .bandwidth import TokenBucket
from .budget import UplinkBudget
from .config import MirrorConfig
from .decimate import Outgoing, UplinkShaper
from .destination import (
    Identity,
    MirrorError,
    RecordTooLargeError,
    ensure_topics,
    kafka_settings,
    resume_offsets,
)
from .reject import RECORD_ERRORS, DestinationLimits
from .resume import load_or_create_identity, resume_position
from .states import KafkaStateError, Link, LinkDown, TransactionAbortRequired, Txn, classify
from .uplink import UplinkPlan, lag_by_partition

logger = logging.getLogger("edge.mirror")
HEALTH_INTERVAL_S = 1.0
TP = tuple[str, int]
Buffers = dict[TP, "collections.deque[Record]"]  # local records in hand per partition, oldest first
Headers = list[tuple[str, bytes]]


class MirrorService:
    def __init__(self, config: MirrorConfig, vehicle: str, endpoint: str, state_dir: Path):
        self.config = config
        self.vehicle = vehicle
        self.endpoint = endpoint
        self.state_dir = state_dir
        self.stop_event = threading.Event()
        self.bucket = TokenBucket(config.bandwidth) if config.bandwidth else None
        self.uplink = UplinkPlan(config)  # events first, live before backlog, per-topic caps (uplink.py)
        self.budget = UplinkBudget(config.budget, config.budget_period, state_dir) if config.budget else None
        self.budget_warning: str | None = None  # the budget left is smaller than the complete events' backlog
        self.link = Link.STARTING
        self.txn = Txn.NONE
        self.shipped_records = 0
        self.shipped_bytes = 0
        self.skipped_too_large = 0
        self.sampled_out = 0
        self.lost_to_retention = 0
        # the newest [topic, partition, first, last] deleted locally before they shipped
        self.lost_ranges: collections.deque[list[Any]] = collections.deque(maxlen=20)
        self.identity: Identity | None = None
        self.shaper = UplinkShaper(config, vehicle)  # what a record becomes on the uplink (decimate.py)
        self.state = "running"
        self.stop_reason: str | None = None
        self.last_commit_ns: int | None = None
        self.last_progress_ns: int | None = None  # last commit, or last moment nothing waited to be shipped
        self.retimed = 0  # sent with the producer's time: capture time beyond the destination's tolerance
        self.rejected = 0
        self.rejections: collections.deque[dict[str, Any]] = collections.deque(maxlen=20)
        self.stopped_partitions: dict[str, dict[str, Any]] = {}
        self._poison: dict[tuple[TP, int], tuple[int, str]] = {}  # refused by Kafka: policy applies next time
        # delivery reports of the open transaction with a per-record error: (tp, offset, code, text)
        self._refused: list[tuple[TP, int, int, str]] = []
        self._dead_lettered: set[tuple[TP, int]] = set()
        self._dead_letter_failed: set[tuple[TP, int]] = set()
        self._suspects: dict[TP, tuple[int, int]] = {}  # offsets refused in a batch: ship them one per batch
        self._txn_records = self._txn_bytes = 0
        self._read_to: dict[TP, int] = {}
        self.sessions = 0
        self.last_error: str | None = None
        self.committed: dict[TP, int] = {}
        self.ends: dict[TP, tuple[int, int, int]] = {}  # log_start, next_offset, size_bytes
        self._rate_window: collections.deque[tuple[float, int]] = collections.deque(maxlen=30)
        self._health = Producer(endpoint, linger_ms=0, on_full="fail", request_timeout_s=2.0)
        self._health_lock = threading.Lock()
        self._health_stop = threading.Event()
        self.started_ns = time.time_ns()

    # -- outside view --------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        partitions = lag_by_partition(self.ends, self.committed)
        lag_records = sum(p["lag_records"] for p in partitions.values())
        lag_bytes = sum(p["lag_bytes"] for p in partitions.values())
        window = list(self._rate_window)
        rate = 0.0
        if len(window) > 1 and window[-1][0] > window[0][0]:
            rate = (window[-1][1] - window[0][1]) / (window[-1][0] - window[0][0])
        budget = self.budget.status() if self.budget else None
        return {"state": self.state, "stop_reason": self.stop_reason, "link": self.link.value, "vehicle": self.vehicle,
                "lag_records": lag_records,
                "lag_bytes": lag_bytes, "partitions": partitions, "shipped_records": self.shipped_records,
                "shipped_bytes": self.shipped_bytes, "throughput_bytes_per_s": round(rate, 1),
                "skipped_too_large": self.skipped_too_large, "sampled_out": self.sampled_out,
                "capped": self.uplink.capped, "event_partitions": len(self.uplink.event_partitions),
                "event_backlog_bytes": self.uplink.event_backlog_bytes, "transcoded": self.shaper.transcoded,
                "budget": budget, "budget_warning": self.budget_warning,
                **({f"budget_{k}": budget[k] for k in ("limit_bytes", "spent_bytes", "remaining_bytes", "exhausted")}
                   if budget else {}),
                "lost_to_retention": self.lost_to_retention, "lost_ranges": list(self.lost_ranges),
                "epoch": self.identity.epoch if self.identity else None, "retimed": self.retimed,
                "rejected": self.rejected, "rejections": list(self.rejections),
                "stopped_partitions": dict(self.stopped_partitions), "last_commit_ns": self.last_commit_ns,
                "last_progress_ns": self.last_progress_ns,
                "started_ns": self.started_ns, "stall_after_ns": self.config.stall_after_ns(),
                "pid": os.getpid(), "host": socket.gethostname(), "sessions": self.sessions,
                "last_error": self.last_error,
                "time_ns": time.time_ns()}

    def publish_health(self) -> None:
        """Called by the ship loop and, every second, by the health thread: a report keeps
        coming while Kafka calls block, so a missing report means the process is gone."""
        with self._health_lock:
            try:
                report = self.status()
            except RuntimeError:
                return  # a dict changed size under us (ship loop thread): the next second reports
            try:
                self._health.send(HEALTH_TOPIC, json.dumps(report).encode(), key=b"mirror",
                                  headers={"sensor": "mirror", "encoding": "json"})
            except BrokerError:
                pass

    def _report_every_second(self) -> None:
        while not self._health_stop.wait(HEALTH_INTERVAL_S):
            self.publish_health()

    # -- main loop -----------------------------------------------------------------------

    def run(self) -> int:
        reporter = threading.Thread(target=self._report_every_second, name="mirror-health", daemon=True)
        reporter.start()
        try:
            return self._run()
        except BaseException as exc:
            self._final("failed", f"fatal: {exc!r}", code=1)
            raise
        finally:
            self._health_stop.set()
            reporter.join(5)

    def _run(self) -> int:
        backoff = 1.0
        while not self.stop_event.is_set():
            try:
                self.sessions += 1
                self._session()
                backoff = 1.0
            except RecordTooLargeError as exc:
                return self._final("stopped", f"too_large = stop: {exc}", code=1)
            except KafkaException as exc:  # a call outside the commit path: classified like the others
                self._link_down(classify(exc))
            except (MirrorError, BrokerError) as exc:  # typed: KafkaStateError, budget file, destination, local broker
                self._link_down(exc)
            except Exception as exc:
                log_event(logger, logging.ERROR, "mirror_session_failed", error=repr(exc))
                self._link_down(exc)
            if self.stop_event.wait(backoff):
                break
            backoff = min(backoff * 2, 30.0)
        return self._final("stopped", "stop requested (SIGTERM/SIGINT)", code=0)

    def _final(self, state: str, reason: str, *, code: int) -> int:
        """The last status this process publishes: why it is no longer shipping."""
        self._health_stop.set()
        self.state, self.stop_reason = state, reason
        log_event(logger, logging.ERROR if code else logging.INFO, "mirror_stopped", reason=reason, exit_code=code)
        self.publish_health()
        with self._health_lock:
            self._health.close(timeout=2)
        return code

    def _load_identity(self, *, shipped_before: bool) -> Identity:
        if self.identity is None:
            identity, created = load_or_create_identity(self.state_dir, self.vehicle, shipped_before=shipped_before)
            self.identity = identity
            self.shaper.set_epoch(identity.epoch)
            log_event(logger, logging.INFO, "mirror_epoch", epoch=identity.epoch, created=created,
                      adopts_unmarked=identity.adopts_unmarked)
        return self.identity

    def _count_lost(self, tp: TP, first: int, next_held: int) -> None:
        """Offsets [first, next_held) of ``tp`` were deleted locally before they were shipped."""
        self.lost_to_retention += next_held - first
        self.lost_ranges.append([tp[0], tp[1], first, next_held - 1])
        log_event(logger, logging.ERROR, "mirror_lost_to_retention", topic=tp[0], partition=tp[1],
                  first_missing=first, last_missing=next_held - 1, records=next_held - first)

    def _link_down(self, exc: Exception) -> None:
        self.link = Link.DOWN
        self.last_error = str(exc)
        log_event(logger, logging.WARNING, "mirror_link_down", error=exc, kind=type(exc).__name__)
        self.publish_health()

    def _source_partitions(self, admin: Admin) -> dict[str, int]:
        topics = admin.list_topics()
        ships = {t: info for t, info in topics.items()
                 if self.config.selects(t) or (self.config.catalog and t == DRIVES_TOPIC)}  # the drive catalog too
        self.ends = {(t, p["partition"]): (p["log_start"], p["next_offset"], p["size_bytes"])
                     for t, info in ships.items() for p in info["partitions"]}
        return {t: len(info["partitions"]) for t, info in ships.items()}

    def _session(self) -> None:
        cfg = self.config
        settings = kafka_settings(cfg.bootstrap_servers, cfg.kafka)
        with Admin(self.endpoint) as admin:
            sources = self._source_partitions(admin)
        if not sources:
            self.link = Link.IDLE
            self.stop_event.wait(2.0)
            return
        dest = {t: cfg.destination_topic(self.vehicle, t) for t in sources}
        kadmin = AdminClient(settings)
        wanted = {**dict.fromkeys(cfg.dead_letter_topics(), 1), **{dest[t]: n for t, n in sources.items()}}
        limits = ensure_topics(kadmin, wanted, create=cfg.create_topics, replication=cfg.replication_factor,
                               max_message_bytes=72 * 1024 * 1024, stop=self.stop_event)
        producer = KafkaProducer({
            **settings, "transactional.id": f"edge-mirror-{self.vehicle}", "enable.idempotence": True,
            "acks": "all", "compression.type": settings.get("compression.type", "zstd"),
            "linger.ms": settings.get("linger.ms", 20),
            "message.max.bytes": max(limit.max_message_bytes for limit in limits.values()) + 1024,
            "queue.buffering.max.kbytes": settings.get("queue.buffering.max.kbytes", 65536),
            "transaction.timeout.ms": settings.get("transaction.timeout.ms", 300_000),
        })
        producer.init_transactions(60)  # fences a previous mirror and aborts its open transaction
        with Admin(self.endpoint) as admin:
            local = admin.group_offsets(MIRROR_GROUP)
        identity = self._load_identity(shipped_before=bool(local))
        probes = resume_offsets(settings, [(dest[t], p, t, p) for t, n in sources.items() for p in range(n)],
                                identity, shared=cfg.shared_destination, scan_limit=cfg.resume_scan_records)
        positions: dict[TP, int] = {}
        for tp, (start, end, _size) in self.ends.items():
            positions[tp], lost_from = resume_position(tp, start, end, probes.get(tp), local.get(tp),
                                                       cfg.resume_scan_records, identity.epoch)
            if lost_from is not None:
                self._count_lost(tp, lost_from, start)
        self.committed = dict(positions)
        self._read_to = dict(positions)  # next offset expected from the local consumer, per partition
        consumer = Consumer(self.endpoint, fetch_max_bytes=8 * 1024 * 1024, max_wait_ms=200)
        shipping = [tp for tp in positions if f"{tp[0]}/{tp[1]}" not in self.stopped_partitions]
        consumer.assign(shipping)
        for t, p in shipping:
            consumer.seek(t, p, positions[(t, p)])
        self._refused.clear()
        self._txn_records = self._txn_bytes = 0
        self.txn = Txn.NONE
        self.shaper.forget_all()
        log_event(logger, logging.INFO, "mirror_session", partitions=len(positions), bootstrap=cfg.bootstrap_servers)
        try:
            self._ship(producer, consumer, dest, limits, positions)
        finally:
            consumer.close()

    def _ship(self, producer: KafkaProducer, consumer: Consumer, dest: dict[str, str],
              limits: dict[str, DestinationLimits], positions: dict[TP, int]) -> None:
        cfg = self.config
        buffers: Buffers = collections.defaultdict(collections.deque)
        buffered = 0
        pending: dict[TP, int] = {}
        txn_started = time.monotonic()
        last_refresh = time.monotonic()
        self._note_events()
        order = self.uplink.order(positions)
        while True:
            stopping = self.stop_event.is_set()
            if not stopping and buffered < cfg.max_buffer_bytes:
                for record in consumer.poll(0.05 if any(buffers.values()) else 0.2):
                    tp = (record.topic, record.partition)
                    expected = self._read_to.get(tp, record.offset)
                    if record.offset > expected and not cfg.is_latest_only(tp[0]):
                        self._count_lost(tp, expected, record.offset)  # the disk guard deleted them meanwhile
                    self._read_to[tp] = record.offset + 1
                    buffers[tp].append(record)
                    buffered += len(record.value)
            for tp in order:
                if cfg.is_latest_only(tp[0]) and len(buffers[tp]) > 1:
                    newest = buffers[tp].pop()
                    skipped = buffers[tp]
                    buffered -= sum(len(r.value) for r in skipped)
                    pending[tp] = newest.offset  # skipped records count as passed over
                    buffers[tp] = collections.deque([newest])
            # ship from the first partition in the plan's order with records, oldest first
            interval_s = cfg.transaction_interval / 1e9
            waits = self.uplink.capped + (self.budget.passed_over if self.budget else 0)
            for tp in order:
                queue = buffers[tp]
                while queue and self.txn is not Txn.DOOMED and not (
                        self.txn is Txn.OPEN and time.monotonic() - txn_started >= interval_s):
                    outgoing = self.shaper.outgoing(queue[0], limits[dest[tp[0]]])
                    if outgoing is not None and not outgoing.too_large:
                        if not self.uplink.admits(queue[0], outgoing.size):
                            break  # over its topic's cap: other partitions ship meanwhile
                        if self.budget is not None and not self.budget.try_spend(outgoing.size):
                            break  # no budget left for it this period: it waits, protected locally
                    record = queue.popleft()
                    self.shaper.forget(tp)
                    buffered -= len(record.value)
                    if outgoing is None:
                        self.sampled_out += 1
                        pending[tp] = record.offset + 1
                        continue
                    if self.txn is Txn.NONE:
                        producer.begin_transaction()
                        self.txn, txn_started = Txn.OPEN, time.monotonic()
                    if not self._ship_one(producer, record, outgoing, dest[tp[0]], limits):
                        buffered -= sum(len(r.value) for r in queue)
                        queue.clear()
                        consumer.assign([p for p in consumer.assignment() if p != tp])
                        break  # partition stopped by its on_reject policy
                    pending[tp] = record.offset + 1
            if waits != self.uplink.capped + (self.budget.passed_over if self.budget else 0) \
                    and buffered >= cfg.max_buffer_bytes:
                time.sleep(0.005)  # only capped or budget-bound partitions wait and no room to read more
            now = time.monotonic()
            if self.txn is not Txn.NONE and (now - txn_started >= interval_s or stopping or self.txn is Txn.DOOMED):
                self._commit(producer, consumer, pending, buffers)
                buffered = sum(len(r.value) for q in buffers.values() for r in q)
            if stopping and self.txn is Txn.NONE:
                return
            if self.txn is Txn.NONE and (not any(buffers.values()) or (self.budget and self.budget.blocked)):
                self.last_progress_ns = time.time_ns()  # caught up, or waiting for budget by design: not a stall
            if now - last_refresh >= 1.0:
                last_refresh = now
                with Admin(self.endpoint) as admin:
                    sources = self._source_partitions(admin)
                self._note_events(pending)
                heads = {tp: queue[0].timestamp for tp, queue in buffers.items() if queue}
                order = self.uplink.order(positions, live=self.uplink.live(self.ends, heads, time.time_ns()))
                self._seek_latest_only(consumer, positions)
                self.publish_health()
                if set(sources) - set(dest) or any(tp not in positions for tp in self.ends):
                    if self.txn is not Txn.NONE:
                        self._commit(producer, consumer, pending, buffers)
                    return  # new topics or partitions: a new session picks them up
            producer.poll(0)

    def _note_events(self, pending: dict[TP, int] | None = None) -> None:
        """Complete events first; say so once when the budget left cannot carry their backlog."""
        with Admin(self.endpoint) as admin:
            pins = admin.list_pins()["pins"]
        record_bytes = {tp: size / max(1, end - start) for tp, (start, end, size) in self.ends.items()}
        self.uplink.note_events(pins, {**self.committed, **(pending or {})}, record_bytes)
        if self.budget is not None:
            self.budget_warning = self.budget.check_event_backlog(self.uplink.event_backlog_bytes)

    def _ship_one(self, producer: KafkaProducer, record: Record, outgoing: Outgoing, dest_topic: str,
                  limits: dict[str, DestinationLimits]) -> bool:
        """Ship (or pass over, by policy) one record; False: its partition is stopped."""
        value, headers = outgoing.value, outgoing.headers
        limit = limits[dest_topic]
        if outgoing.too_large:
            self.skipped_too_large += 1
            message = (f"record {record.topic}/{record.partition}@{record.offset} of {outgoing.size} bytes with key, "
                       f"headers and overhead is too large for {dest_topic} "
                       f"(max.message.bytes {limit.max_message_bytes})")
            log_event(logger, logging.ERROR, "mirror_record_too_large", topic=record.topic, partition=record.partition,
                      offset=record.offset, bytes=outgoing.size, limit=limit.max_message_bytes,
                      action=self.config.too_large)
            if self.config.too_large == "stop":
                raise RecordTooLargeError(message)
            return True
        timestamp_ms = record.timestamp // 1_000_000
        tp = (record.topic, record.partition)
        known = self._poison.get((tp, record.offset))
        refusal = known or limit.refusal(record.key, timestamp_ms, int(time.time() * 1000))
        if refusal is not None and refusal[0] == KafkaError.INVALID_TIMESTAMP and known is None \
                and self.config.timestamp_out_of_range == "producer-time":
            timestamp_ms, refusal = 0, None  # librdkafka stamps it now; edge.capture_ns keeps the capture time
            self.retimed += 1
        if refusal is not None:
            return self._apply_policy(producer, record, value, headers, limits, *refusal)
        if self.bucket is not None:
            self.bucket.acquire(len(value))
        refused = self._produce(producer, dest_topic, value, record.key, record.partition, timestamp_ms, headers, tp,
                                record.offset)
        if refused is not None:
            self._poison[(tp, record.offset)] = refused
            return self._apply_policy(producer, record, value, headers, limits, *refused)
        suspect = self._suspects.get(tp)
        if suspect is not None and suspect[0] <= record.offset <= suspect[1]:
            producer.flush(30)  # alone in its batch: a refusal now names this record
            if record.offset == suspect[1]:
                del self._suspects[tp]
        return True

    def _produce(self, producer: KafkaProducer, topic: str, value: bytes, key: bytes | None, partition: int,
                 timestamp_ms: int, headers: Headers, tp: TP, offset: int) -> tuple[int, str] | None:
        """Queue one record in the open transaction; returns (code, why) when librdkafka
        refuses the record itself (nothing queued, the transaction is intact)."""
        def delivered(err: KafkaError | None, _msg: object, tp: TP = tp, offset: int = offset) -> None:
            if err is not None and err.code() in RECORD_ERRORS:
                self._refused.append((tp, offset, err.code(), err.str()))
        while True:
            try:
                wire: list[tuple[str, str | bytes | None]] = [*headers]
                producer.produce(topic, value, key=key, partition=partition, timestamp=timestamp_ms, headers=wire,
                                 on_delivery=delivered)
                break
            except BufferError:
                producer.poll(0.1)  # librdkafka's queue is full: the link is slow or down
            except KafkaException as exc:
                error = exc.args[0]
                if error.code() in RECORD_ERRORS:
                    return error.code(), f"librdkafka refused it: {error.str()}"
                self.txn = Txn.DOOMED  # e.g. an earlier record failed: the transaction can only be aborted
                return None
        self._txn_records += 1
        self._txn_bytes += len(value)
        return None

    def _apply_policy(self, producer: KafkaProducer, record: Record, value: bytes, headers: Headers,
                      limits: dict[str, DestinationLimits], code: int,
                      why: str) -> bool:
        tp = (record.topic, record.partition)
        action, dead_letter = self.config.reject_policy(record.topic)
        self.rejected += 1
        self.rejections.append({"topic": tp[0], "partition": tp[1], "offset": record.offset, "error": why,
                                "code": code, "action": action, "time_ns": time.time_ns()})
        log_event(logger, logging.ERROR, "mirror_record_rejected", topic=tp[0], partition=tp[1], offset=record.offset,
                  kafka_error=code, error=why, action=action if dead_letter is None else f"dead-letter {dead_letter}")
        if action == "skip":
            return True
        if action == "dead-letter" and dead_letter is not None and (tp, record.offset) not in self._dead_letter_failed:
            extra = [(HEADER_REJECT_ERROR, why.encode()), (HEADER_REJECT_TOPIC, self.config.destination_topic(
                self.vehicle, tp[0]).encode())]
            if self._produce(producer, dead_letter, value, record.key, 0, 0, [*headers, *extra], tp,
                             record.offset) is None:
                self._dead_lettered.add((tp, record.offset))
                return True
            self._dead_letter_failed.add((tp, record.offset))
        self.stopped_partitions[f"{tp[0]}/{tp[1]}"] = {"offset": record.offset, "error": why, "code": code}
        log_event(logger, logging.ERROR, "mirror_partition_stopped", topic=tp[0], partition=tp[1], offset=record.offset,
                  error=why, remedy="fix the destination or set on_reject, then restart the mirror")
        return False

    def _commit(self, producer: KafkaProducer, consumer: Consumer, pending: dict[TP, int], buffers: Buffers) -> None:
        """OPEN → NONE by a commit; DOOMED, or a commit Kafka says must be aborted, → NONE by an
        abort (positions back to the last commit). LinkDown retries with backoff; any other
        typed error ends the session (the transaction stays open: the next session's
        init_transactions aborts it)."""
        if self.txn is Txn.DOOMED:
            self._aborted(producer, consumer, pending, buffers, "a produce failed in this transaction")
            return
        delay = 1.0
        while True:
            try:
                producer.commit_transaction(30)
                break
            except KafkaException as exc:
                error: KafkaStateError = classify(exc)
                self.link = Link.DOWN
                self.last_error = str(error)
                if isinstance(error, TransactionAbortRequired):
                    self._aborted(producer, consumer, pending, buffers, error)
                    return
                if not isinstance(error, LinkDown):
                    raise error from None
                self.publish_health()
                if self.stop_event.wait(delay) and delay > 8:
                    raise error from None
                delay = min(delay * 2, 30.0)
        self.txn = Txn.NONE
        self.link = Link.UP
        self.last_commit_ns = self.last_progress_ns = time.time_ns()
        self.shipped_records += self._txn_records  # what Kafka committed, not what was attempted
        self.shipped_bytes += self._txn_bytes
        self._txn_records = self._txn_bytes = 0
        self._dead_lettered.clear()
        self.committed.update(pending)
        pending.clear()
        self._rate_window.append((time.monotonic(), self.shipped_bytes))
        self._checkpoint()

    def _aborted(self, producer: KafkaProducer, consumer: Consumer, pending: dict[TP, int], buffers: Buffers,
                 error: object) -> None:
        """Abort the transaction, remember the records Kafka refused (their policy applies when
        they come again), and go back to the last commit."""
        producer.flush(10)  # the delivery reports of this transaction name the refused records
        refused = list(self._refused)
        self._refused.clear()
        log_event(logger, logging.WARNING, "mirror_transaction_aborted", error=error, refused_records=len(refused))
        self._abort(producer)
        by_partition: dict[TP, list[tuple[int, int, str]]] = collections.defaultdict(list)
        for tp, offset, code, why in refused:
            by_partition[tp].append((offset, code, why))
        for tp, entries in by_partition.items():
            if len(entries) > 1:
                # Kafka refuses a batch whole: which record is bad is not known. Next time these
                # offsets go one per batch, so a refusal names its record.
                lo, hi = min(e[0] for e in entries), max(e[0] for e in entries)
                old = self._suspects.get(tp, (lo, hi))
                self._suspects[tp] = (min(lo, old[0]), max(hi, old[1]))
                continue
            offset, code, why = entries[0]
            if (tp, offset) in self._dead_lettered:
                self._dead_letter_failed.add((tp, offset))  # the dead-letter topic refused it too
            self._poison[(tp, offset)] = (code, f"Kafka refused it: {why}")
        self._dead_lettered.clear()
        self._txn_records = self._txn_bytes = 0
        self.txn = Txn.NONE
        self.shaper.forget_all()
        for (t, p), o in self.committed.items():
            if f"{t}/{p}" not in self.stopped_partitions:
                consumer.seek(t, p, o)
        self._read_to.update(self.committed)
        for queue in buffers.values():
            queue.clear()
        pending.clear()

    def _abort(self, producer: KafkaProducer) -> None:
        while True:
            try:
                producer.abort_transaction(30)
                return
            except KafkaException as exc:
                error = classify(exc)
                if not isinstance(error, LinkDown):
                    raise error from None
                time.sleep(1.0)

    def _seek_latest_only(self, consumer: Consumer, positions: dict[TP, int]) -> None:
        for tp, (_start, end, _size) in self.ends.items():
            if self.config.is_latest_only(tp[0]) and tp in consumer.positions and end - consumer.position(*tp) > 1:
                consumer.seek(tp[0], tp[1], end - 1)

    def _checkpoint(self) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        body = {f"{t}/{p}": o for (t, p), o in sorted(self.committed.items())}
        atomic_write(self.state_dir / "checkpoint.json", json.dumps(body).encode())
        try:
            with Admin(self.endpoint, timeout_s=2.0) as admin:
                admin.commit_offsets(MIRROR_GROUP, dict(self.committed))
        except BrokerError as exc:
            log_event(logger, logging.WARNING, "mirror_local_commit_failed", error=exc)


def run_mirror(app: Any, endpoint: str) -> int:
    from broker.base import sdnotify

    if app.mirror is None:
        raise MirrorError(f"{app.source}: no [mirror] section: nothing to mirror")
    service = MirrorService(app.mirror, app.vehicle.id, endpoint, app.broker.data_dir / ".mirror")
    signal.signal(signal.SIGTERM, lambda *_: service.stop_event.set())
    signal.signal(signal.SIGINT, lambda *_: service.stop_event.set())
    sdnotify.ready("mirror running")
    watchdog = sdnotify.Watchdog().start()
    try:
        return service.run()
    finally:
        watchdog.stop()
