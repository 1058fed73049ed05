"""The cloud side: destination topics, and where to resume from what they actually hold.

Resume point of a source partition = 1 + the largest ``edge.source.offset`` header among
the last committed records of its destination partition (read with
``isolation.level=read_committed``: records of a transaction the previous mirror did not
commit are invisible, and ``init_transactions`` has aborted them). An empty destination
partition resumes at the local log start. The local checkpoint is never consulted for
this: it only feeds lag figures and retention protection.
"""

from __future__ import annotations

import time
import uuid

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic

from broker.errors import BrokerError

HEADER_VEHICLE = "edge.vehicle"
HEADER_TOPIC = "edge.source.topic"
HEADER_PARTITION = "edge.source.partition"
HEADER_OFFSET = "edge.source.offset"
HEADER_CAPTURE = "edge.capture_ns"
TAIL_RECORDS = 50  # read this many of the last records (aborted markers and controls take offsets too)


class MirrorError(BrokerError):
    """The mirror cannot proceed (destination missing and not creatable, record too large)."""


# librdkafka properties that only a producer understands: [mirror.kafka] may set them for the
# shipping producer, but a consumer given one logs a CONFWARN on every start
PRODUCER_ONLY = frozenset({
    "acks", "request.required.acks", "compression.type", "compression.codec", "compression.level", "linger.ms",
    "queue.buffering.max.ms", "queue.buffering.max.kbytes", "queue.buffering.max.messages", "batch.size",
    "batch.num.messages", "enable.idempotence", "transactional.id", "transaction.timeout.ms", "message.timeout.ms",
    "delivery.timeout.ms", "retries", "message.send.max.retries", "partitioner", "sticky.partitioning.linger.ms",
    "enable.gapless.guarantee", "request.timeout.ms",
})


def kafka_settings(bootstrap: str, extra: dict) -> dict:
    """librdkafka's own log goes through ours, rate-limited (edge/third_party_logs.py)."""
    from edge.third_party_logs import librdkafka_logger

    return {"bootstrap.servers": bootstrap, "logger": librdkafka_logger(), **{k: v for k, v in extra.items()}}


def consumer_settings(settings: dict) -> dict:
    """``settings`` without the producer-only properties."""
    return {k: v for k, v in settings.items() if k not in PRODUCER_ONLY}


def ensure_topics(admin: AdminClient, wanted: dict[str, int], *, create: bool, replication: int,
                  max_message_bytes: int, timeout: float = 30.0) -> dict[str, int]:
    """Make sure each destination topic exists with the source's partition count; returns
    each topic's max.message.bytes. Raises MirrorError naming what is wrong."""
    metadata = admin.list_topics(timeout=timeout)
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
                if "TOPIC_ALREADY_EXISTS" not in str(exc):
                    raise MirrorError(f"cannot create destination topic {topic}: {exc}") from None
        deadline = time.monotonic() + timeout
        while True:  # a new topic takes a moment to appear in the metadata
            metadata = admin.list_topics(timeout=timeout)
            if all(t in metadata.topics and metadata.topics[t].partitions for t in wanted):
                break
            if time.monotonic() > deadline:
                raise MirrorError(f"destination topics not visible {timeout:.0f}s after creation: "
                                  f"{', '.join(sorted(t for t in wanted if t not in metadata.topics))}")
            time.sleep(0.2)
    for topic, count in wanted.items():
        have = len(metadata.topics[topic].partitions)
        if have < count:
            raise MirrorError(f"destination {topic} has {have} partitions, the source has {count}: partitions must match")
    limits = {}
    futures = admin.describe_configs([ConfigResource(ConfigResource.Type.TOPIC, t) for t in wanted])
    for resource, future in futures.items():
        config = future.result(timeout)
        limits[resource.name] = int(config["max.message.bytes"].value)
    return limits


def _last_source_offset(consumer: Consumer, dest_topic: str, dest_partition: int, src_topic: str,
                        src_partition: int, start: int, timeout: float) -> tuple[int | None, bool]:
    """(largest edge.source.offset in [start, LSO), whether any committed record was seen)."""
    consumer.assign([TopicPartition(dest_topic, dest_partition, start)])
    best, seen = None, False
    while True:
        msg = consumer.poll(timeout)
        if msg is None:
            raise MirrorError(f"reading the tail of {dest_topic}[{dest_partition}] timed out")
        if msg.topic() != dest_topic or msg.partition() != dest_partition:
            continue  # not this read's partition (defensive: the consumer is fresh)
        if msg.error():
            if msg.error().code() == KafkaError._PARTITION_EOF:
                return best, seen
            raise MirrorError(f"reading {dest_topic}[{dest_partition}]: {msg.error()}")
        if msg.offset() < start:
            continue
        seen = True
        headers = dict(msg.headers() or [])
        if headers.get(HEADER_TOPIC, b"").decode() == src_topic and \
                headers.get(HEADER_PARTITION, b"").decode() == str(src_partition):
            offset = int(headers[HEADER_OFFSET])
            best = offset if best is None else max(best, offset)


def resume_offsets(settings: dict, partitions: list[tuple[str, int, str, int]], timeout: float = 30.0) -> dict:
    """``partitions``: (dest topic, dest partition, source topic, source partition).
    Returns {(source topic, source partition): next offset to ship, or None if nothing of
    it was ever committed}.

    The last offsets of a partition may all belong to a transaction that a killed mirror
    left open (aborted by the fencing, invisible to read_committed): the window read grows
    backwards until a committed record is found or the partition's start is reached."""
    conf = {**consumer_settings(settings), "enable.auto.commit": False, "isolation.level": "read_committed",
            "auto.offset.reset": "earliest", "enable.partition.eof": True}
    result: dict[tuple[str, int], int | None] = {}
    for dest_topic, dest_partition, src_topic, src_partition in partitions:
        probe = Consumer({**conf, "group.id": f"edge-mirror-resume-{uuid.uuid4().hex}"})
        try:
            low, high = probe.get_watermark_offsets(TopicPartition(dest_topic, dest_partition), timeout=timeout)
        finally:
            probe.close()
        result[(src_topic, src_partition)] = None
        window = TAIL_RECORDS
        while high > low:
            start = max(low, high - window)
            # a fresh consumer per read: an end-of-partition event or a record still queued
            # from an earlier assignment must never be taken for this window's answer (it
            # once made a resume ship a partition again from its start)
            consumer = Consumer({**conf, "group.id": f"edge-mirror-resume-{uuid.uuid4().hex}"})
            try:
                best, seen = _last_source_offset(consumer, dest_topic, dest_partition, src_topic, src_partition,
                                                 start, timeout)
            finally:
                consumer.close()
            if best is not None:
                result[(src_topic, src_partition)] = best + 1
                break
            if seen:
                raise MirrorError(f"{dest_topic}[{dest_partition}] holds committed records without this "
                                  f"vehicle's mirror headers: another writer? (one mirror per vehicle)")
            if start == low:
                break  # nothing committed at all: ship from the local log start
            window *= 8
    return result
