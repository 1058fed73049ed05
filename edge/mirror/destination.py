"""The cloud side: destination topics, and what they hold of this mirror's records.

A destination record is this mirror's own when its ``edge.vehicle`` header is this vehicle
and its ``edge.epoch`` header is this data directory's epoch (edge/mirror/resume.py). The
destination's evidence for a source partition = 1 + the largest ``edge.source.offset``
among its own committed records, found by scanning back from the end (read with
``isolation.level=read_committed``: records of a transaction the previous mirror did not
commit are invisible, and ``init_transactions`` has aborted them) at most
``resume_scan_records`` offsets. What to do with that evidence, or its absence, is decided
in edge/mirror/resume.py.
"""

from __future__ import annotations

import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient, ClusterMetadata, ConfigResource
from confluent_kafka.cimpl import NewTopic

from broker.base.names import HEADER_EPOCH, HEADER_VEHICLE
from broker.base.names import HEADER_SOURCE_OFFSET as HEADER_OFFSET
from broker.base.names import HEADER_SOURCE_PARTITION as HEADER_PARTITION
from broker.base.names import HEADER_SOURCE_TOPIC as HEADER_TOPIC
from broker.errors import BrokerError

from .reject import DestinationLimits

TAIL_RECORDS = 50  # read this many of the last records (aborted markers and controls take offsets too)


class MirrorError(BrokerError):
    """The mirror cannot proceed (destination missing and not creatable, record too large)."""


class RecordTooLargeError(MirrorError):
    """A record above the destination's max.message.bytes with ``too_large = "stop"``."""


# librdkafka properties that only a producer understands: [mirror.kafka] may set them for the
# shipping producer, but a consumer given one logs a CONFWARN on every start
PRODUCER_ONLY = frozenset({
    "acks", "request.required.acks", "compression.type", "compression.codec", "compression.level", "linger.ms",
    "queue.buffering.max.ms", "queue.buffering.max.kbytes", "queue.buffering.max.messages", "batch.size",
    "batch.num.messages", "enable.idempotence", "transactional.id", "transaction.timeout.ms", "message.timeout.ms",
    "delivery.timeout.ms", "retries", "message.send.max.retries", "partitioner", "sticky.partitioning.linger.ms",
    "enable.gapless.guarantee", "request.timeout.ms",
})


def kafka_settings(bootstrap: str, extra: dict[str, Any]) -> dict[str, Any]:
    """librdkafka's own log goes through ours, rate-limited (edge/third_party_logs.py)."""
    from edge.third_party_logs import librdkafka_logger

    return {"bootstrap.servers": bootstrap, "logger": librdkafka_logger(), **extra}


def consumer_settings(settings: dict[str, Any]) -> dict[str, Any]:
    """``settings`` without the producer-only properties."""
    return {k: v for k, v in settings.items() if k not in PRODUCER_ONLY}


METADATA_SLICE_S = 1.0  # longest uninterruptible wait for the destination's metadata


def cluster_metadata(admin: AdminClient, timeout: float, stop: threading.Event | None = None) -> ClusterMetadata:
    """``admin.list_topics`` waited for in slices of ``METADATA_SLICE_S``: a signal handler only
    runs between them (librdkafka holds the main thread inside the call), so a SIGTERM while the
    destination is unreachable stops the mirror within a second, not after ``timeout`` (20 s seen)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return admin.list_topics(timeout=min(METADATA_SLICE_S, max(0.05, deadline - time.monotonic())))
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError._TIMED_OUT or time.monotonic() >= deadline:
                raise
            if stop is not None and stop.is_set():
                raise MirrorError("stopped while waiting for the destination's metadata") from None


def ensure_topics(admin: AdminClient, wanted: dict[str, int], *, create: bool, replication: int,
                  max_message_bytes: int, timeout: float = 30.0,
                  stop: threading.Event | None = None) -> dict[str, DestinationLimits]:
    """Make sure each destination topic exists with the source's partition count; returns
    what each topic refuses (from its configs). Raises MirrorError naming what is wrong."""
    metadata = cluster_metadata(admin, timeout, stop)
    brokers = max(1, len(metadata.brokers))
    missing = {t: n for t, n in wanted.items() if t not in metadata.topics}
    if missing and not create:
        raise MirrorError(f"destination topics missing and create_topics is off: {', '.join(sorted(missing))}")
    if missing:
        futures = admin.create_topics(
            [NewTopic(t, n, min(replication, brokers), config={"max.message.bytes": str(max_message_bytes)})
             for t, n in missing.items()], operation_timeout=timeout)
        for topic, future in futures.items():
            try:
                future.result(timeout)
            except KafkaException as exc:
                if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                    raise MirrorError(f"cannot create destination topic {topic}: {exc}") from None
        deadline = time.monotonic() + timeout
        while True:  # a new topic takes a moment to appear in the metadata
            metadata = cluster_metadata(admin, timeout, stop)
            if all(t in metadata.topics and metadata.topics[t].partitions for t in wanted):
                break
            if time.monotonic() > deadline:
                raise MirrorError(f"destination topics not visible {timeout:.0f}s after creation: "
                                  f"{', '.join(sorted(t for t in wanted if t not in metadata.topics))}")
            time.sleep(0.2)
    for topic, count in wanted.items():
        have = len(metadata.topics[topic].partitions)
        if have < count:
            raise MirrorError(f"destination {topic} has {have} partitions, the source has {count}: "
                              "partitions must match")
    limits = {}
    described = admin.describe_configs([ConfigResource(ConfigResource.Type.TOPIC, t) for t in wanted])
    for resource, configs in described.items():
        limits[resource.name] = DestinationLimits.from_configs(configs.result(timeout))
    return limits


@dataclass(frozen=True)
class ResumeProbe:
    """What the destination says about one source partition of this vehicle and epoch.

    ``next_offset``: 1 + the largest matching ``edge.source.offset`` (None: no matching
    record found); ``scanned_to_start``: the scan reached the partition's low watermark (so
    "not found" means the destination holds none of this epoch's records), else it stopped
    at the scan bound; ``low``/``high``: the destination partition's watermarks."""
    next_offset: int | None
    scanned_to_start: bool
    low: int
    high: int


@dataclass(frozen=True)
class Identity:
    """Which destination records are this mirror's own: vehicle, data-directory epoch, and
    whether records without an epoch header (shipped before epochs existed) count as ours."""
    vehicle: str
    epoch: str
    adopts_unmarked: bool = False

    def owns(self, headers: dict[str, bytes]) -> bool:
        if headers.get(HEADER_VEHICLE) != self.vehicle.encode():
            return False
        epoch = headers.get(HEADER_EPOCH)
        return epoch == self.epoch.encode() if epoch is not None else self.adopts_unmarked


def _last_source_offset(consumer: Consumer, dest_topic: str, dest_partition: int, src_topic: str,
                        src_partition: int, start: int, end: int, identity: Identity, shared: bool,
                        timeout: float) -> int | None:
    """The largest edge.source.offset of this identity's records in [start, end)."""
    consumer.assign([TopicPartition(dest_topic, dest_partition, start)])
    best = None
    while True:
        msg = consumer.poll(timeout)
        if msg is None:
            raise MirrorError(f"reading the tail of {dest_topic}[{dest_partition}] timed out")
        if msg.topic() != dest_topic or msg.partition() != dest_partition:
            continue  # not this read's partition (defensive: the consumer is fresh)
        error = msg.error()
        if error is not None:
            if error.code() == KafkaError._PARTITION_EOF:
                return best
            raise MirrorError(f"reading {dest_topic}[{dest_partition}]: {error}")
        offset = msg.offset()
        if offset is None or offset >= end:
            return best  # the part after ``end`` was read by an earlier window
        if offset < start:
            continue
        raw = msg.headers() or []
        pairs = raw.items() if isinstance(raw, dict) else raw  # librdkafka gives a list; its typing allows a dict
        headers = {k: v if isinstance(v, bytes) else (v or "").encode() for k, v in pairs}
        if HEADER_VEHICLE not in headers and not shared:
            raise MirrorError(f"{dest_topic}[{dest_partition}] holds committed records without mirror headers "
                              f"(offset {offset}): another writer? (one mirror per vehicle)")
        if identity.owns(headers) and headers.get(HEADER_TOPIC, b"").decode() == src_topic and \
                headers.get(HEADER_PARTITION, b"").decode() == str(src_partition):
            source_offset = int(headers[HEADER_OFFSET])
            best = source_offset if best is None else max(best, source_offset)


def resume_offsets(settings: dict[str, Any], partitions: list[tuple[str, int, str, int]], identity: Identity, *,
                   shared: bool = False, scan_limit: int = 10_000,
                   timeout: float = 30.0) -> dict[tuple[str, int], ResumeProbe]:
    """``partitions``: (dest topic, dest partition, source topic, source partition).
    Returns {(source topic, source partition): ResumeProbe}.

    Only records of ``identity`` (this vehicle, this data directory's epoch) count. The
    last offsets of a partition may belong to other vehicles (shared destination), to an
    older epoch, or to a transaction a killed mirror left open (aborted by the fencing,
    invisible to read_committed): the scan goes backwards in growing windows, each read
    once, until a record of ours is found, the partition's start is reached, or
    ``scan_limit`` offsets were scanned."""
    conf = {**consumer_settings(settings), "enable.auto.commit": False, "isolation.level": "read_committed",
            "auto.offset.reset": "earliest", "enable.partition.eof": True}
    result: dict[tuple[str, int], ResumeProbe] = {}
    for dest_topic, dest_partition, src_topic, src_partition in partitions:
        probe = Consumer({**conf, "group.id": f"edge-mirror-resume-{uuid.uuid4().hex}"})
        try:
            low, high = probe.get_watermark_offsets(TopicPartition(dest_topic, dest_partition), timeout=timeout)
        finally:
            probe.close()
        found, end, window = None, high, TAIL_RECORDS
        while end > low and found is None and high - end < scan_limit:
            start = max(low, end - window, high - scan_limit)
            # a fresh consumer per read: an end-of-partition event or a record still queued
            # from an earlier assignment must never be taken for this window's answer (it
            # once made a resume ship a partition again from its start)
            consumer = Consumer({**conf, "group.id": f"edge-mirror-resume-{uuid.uuid4().hex}"})
            try:
                found = _last_source_offset(consumer, dest_topic, dest_partition, src_topic, src_partition,
                                            start, end, identity, shared, timeout)
            finally:
                consumer.close()
            end, window = start, window * 8
        result[(src_topic, src_partition)] = ResumeProbe(None if found is None else found + 1,
                                                        found is not None or end <= low, low, high)
    return result
