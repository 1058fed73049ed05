"""Kafka data-plane handlers: Produce and Fetch.

The on-disk batch is Kafka's RecordBatch v2 (docs/FORMAT.md), so neither direction touches
records: Produce hands each batch of a partition's ``records`` to ``BrokerServer.append_batch``
(which validates the batch, writes baseOffset in place and appends it as sent), and Fetch
answers with the bytes ``PartitionLog.read`` returns, unchanged.

- acks 0: no answer (as Kafka). acks 1 and -1 (all): answered once written; this broker is
  its own in-sync replica set, so "all" is the leader's write, as on a one-node Kafka
  cluster (fsync follows the topic's flush policy, docs/RELIABILITY.md).
- Fetch with no data and ``max_wait`` > 0 is parked until a write to one of its partitions
  or the wait ends (``ParkedFetch`` in the listener); an empty partition's ``records`` is
  zero-length, never null (librdkafka and the Java client both expect bytes).
- Fetch sessions (KIP-227) are not kept: session id 0 tells clients to send full fetches.
"""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING

from ..errors import BrokerError
from .codec import RequestBody, millis
from .errors import CORRUPT_MESSAGE, INVALID_RECORD, NONE, UNKNOWN_TOPIC_OR_PARTITION, code_for
from .fetch_encode import FetchPartitionValues, FetchResponseValues
from .handlers_topics import check_current_epoch

if TYPE_CHECKING:  # the listener and the broker import these handlers
    from .broker import KafkaBroker
    from .listener import Call

BATCH_LENGTH = struct.Struct(">i")  # RecordBatch: baseOffset i64, batchLength i32 (bytes after it)
BATCH_LENGTH_AT = 8
LOG_OVERHEAD = 12
ACKS_NONE = 0
MAX_FETCH_WAIT_MS = 60_000


class _Corrupt(Exception):
    """The records field does not split into whole batches."""


def split_batches(records: bytes | memoryview) -> list[memoryview]:
    """The RecordBatches of a Produce partition's ``records`` (usually one)."""
    view = memoryview(records)
    batches: list[memoryview] = []
    pos = 0
    while pos < len(view):
        if len(view) - pos < LOG_OVERHEAD:
            raise _Corrupt(f"{len(view) - pos} bytes after the last batch: not a batch header")
        (length,) = BATCH_LENGTH.unpack_from(view, pos + BATCH_LENGTH_AT)
        end = pos + LOG_OVERHEAD + length
        if length <= 0 or end > len(view):
            raise _Corrupt(f"batch length {length} does not fit the {len(view) - pos} bytes sent")
        batches.append(view[pos:end])
        pos = end
    return batches


def produce(broker: KafkaBroker, call: Call) -> None:
    body = call.body
    responses: list[dict[str, object]] = []
    for topic in body.topic_data:
        parts: list[dict[str, object]] = []
        for part in topic.partition_data:
            parts.append(_produce_partition(broker, topic.name, part.index, part.records))
        responses.append({"name": topic.name, "partition_responses": parts})
    if body.acks != ACKS_NONE:
        call.respond({"responses": responses})
    else:
        call.respond_nothing()


def _produce_partition(broker: KafkaBroker, topic: str, partition: int,
                       records: bytes | memoryview | None) -> dict[str, object]:
    entry: dict[str, object] = {"index": partition, "error_code": NONE, "base_offset": -1, "log_append_time": -1,
             "log_start_offset": -1, "record_errors": [], "error_message": None}
    if records is None or len(records) == 0:
        entry.update(error_code=INVALID_RECORD, error_message="no record batch")
        return entry
    try:
        batches = split_batches(records)
        if not broker.storage.has_topic(topic) and not broker.auto_create_topics:
            entry.update(error_code=UNKNOWN_TOPIC_OR_PARTITION, error_message=f"unknown topic {topic!r}")
            return entry
        appended = [broker.server.append_batch(topic, partition, batch) for batch in batches]
        log, first = appended[-1][0], appended[0][1]  # the log as it is now; the first batch's offset
        entry.update(base_offset=first.base_offset, log_start_offset=log.log_start_offset)
        if log.config.timestamp_type == "LogAppendTime":  # the time the broker stamped, as Kafka answers
            entry["log_append_time"] = first.append_time_ns // 1_000_000
    except _Corrupt as exc:
        entry.update(error_code=CORRUPT_MESSAGE, error_message=str(exc))
    except BrokerError as exc:
        entry.update(error_code=code_for(exc), error_message=exc.message)
    return entry


# -- fetch ------------------------------------------------------------------------------------


def fetch_partitions(body: RequestBody) -> list[tuple[str, int, int, int, int]]:
    """(topic, partition, offset, partition max bytes, current leader epoch or -1) for every
    partition asked."""
    return [(t.topic, p.partition, p.fetch_offset, p.partition_max_bytes, getattr(p, "current_leader_epoch", -1))
            for t in body.topics for p in t.partitions]


def read_fetch(broker: KafkaBroker, body: RequestBody) -> tuple[FetchResponseValues, int]:
    """The Fetch answer for ``body`` now, and how many record bytes it carries."""
    budget = max(body.max_bytes, 1)
    total = 0
    topics: dict[str, list[FetchPartitionValues]] = {}
    for topic, partition, offset, part_max, client_epoch in fetch_partitions(body):
        entry: FetchPartitionValues = {"partition_index": partition, "error_code": NONE, "high_watermark": -1,
                 "last_stable_offset": -1, "log_start_offset": -1, "aborted_transactions": None,
                 "preferred_read_replica": -1, "records": b""}
        try:
            log = broker.storage.log(topic, partition)
            entry["error_code"] = check_current_epoch(client_epoch, broker.storage.log_epochs(topic, partition).current)
            if entry["error_code"] != NONE:  # the client's view is stale: it refreshes metadata, then validates
                total += 1
                topics.setdefault(topic, []).append(entry)
                continue
            entry["high_watermark"] = entry["last_stable_offset"] = log.next_offset
            entry["log_start_offset"] = log.log_start_offset
            if budget > 0:  # a read returns at least one whole batch, even above the limits (KIP-74)
                data = log.read(offset, max(min(part_max, budget), 1))
                if len(data):
                    entry["records"] = data  # the stored bytes, sent as they are (fetch_encode)
                    total += len(data)
                    budget -= len(data)
        except BrokerError as exc:
            entry["error_code"] = code_for(exc)
            total += 1  # an error is news: answer now
        topics.setdefault(topic, []).append(entry)
    return ({"error_code": NONE, "session_id": 0,
             "responses": [{"topic": t, "partitions": parts} for t, parts in topics.items()]}, total)


def fetch_wait_ms(body: RequestBody) -> int:
    return max(0, min(millis(body.max_wait), MAX_FETCH_WAIT_MS))


def fetch(broker: KafkaBroker, call: Call) -> None:
    """Answer now if there is data (or an error, or no wait); else park until a write to one
    of the partitions or the wait ends (``KafkaBroker.park_fetch``)."""
    values, total = read_fetch(broker, call.body)
    wait_ms = fetch_wait_ms(call.body)
    if total >= max(call.body.min_bytes, 1) or wait_ms == 0:
        call.respond_fetch(values)
        return
    broker.park_fetch(call, wait_ms / 1000, {(t, p) for t, p, *_ in fetch_partitions(call.body)})
