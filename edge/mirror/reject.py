"""Records the destination refuses: checks before sending, Kafka's error codes, policies.

A record Kafka rejects for what it is (not for the link's state) would abort every
transaction it is part of, forever. The mirror therefore
- checks before sending what it can know from the destination's topic configs: the size
  with key, headers and record/batch overhead against ``max.message.bytes``; a null key
  into a compacted topic; a capture time beyond ``message.timestamp.after.max.ms`` /
  ``before.max.ms`` (policy ``timestamp_out_of_range``: ``producer-time`` sends it with
  the producer's clock, the capture time stays in the ``edge.capture_ns`` header;
  ``reject`` hands it to ``on_reject``);
- learns the rest from delivery reports carrying one of ``RECORD_ERRORS`` (Kafka error
  codes, never message text): that transaction is aborted once, the record is remembered
  by (topic, partition, offset), and when it comes again its topic's ``on_reject`` policy
  applies: ``skip`` (counted, reported), ``stop-partition`` (its partition ships nothing
  more until restart; the record stays protected locally), ``dead-letter TOPIC`` (the
  record goes to TOPIC partition 0 with ``edge.reject.error`` and ``edge.reject.topic``
  headers, inside the same transaction). Other partitions never wait for it.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from typing import Any

from confluent_kafka import KafkaError

# per-record errors: retrying the same bytes can never succeed
RECORD_ERRORS = frozenset({KafkaError.INVALID_TIMESTAMP, KafkaError.INVALID_RECORD, KafkaError.MSG_SIZE_TOO_LARGE,
                           KafkaError.INVALID_MSG, KafkaError.RECORD_LIST_TOO_LARGE, KafkaError.POLICY_VIOLATION,
                           KafkaError.INVALID_MSG_SIZE})
# bytes a record adds beyond key, value and header bytes (varint lengths, attributes, deltas),
# and a batch's fixed header: max.message.bytes bounds the whole batch
RECORD_OVERHEAD = 64
BATCH_OVERHEAD = 61


def parse_policy(text: str) -> tuple[str, str | None]:
    """``skip`` | ``stop-partition`` | ``dead-letter TOPIC`` -> (action, dead-letter topic)."""
    parts = text.split()
    if parts in (["skip"], ["stop-partition"]):
        return parts[0], None
    if len(parts) == 2 and parts[0] == "dead-letter":
        return "dead-letter", parts[1]
    raise ValueError(f"on_reject {text!r}: use skip, stop-partition or 'dead-letter TOPIC'")


def policy_for(table: dict[str, str], topic: str) -> tuple[str, str | None]:
    for pattern, text in table.items():
        if fnmatch.fnmatchcase(topic, pattern):
            return parse_policy(text)
    return "stop-partition", None


@dataclass(frozen=True)
class DestinationLimits:
    """What a destination topic refuses, from its configs."""
    max_message_bytes: int
    compacted: bool
    timestamp_after_ms: int | None  # None: LogAppendTime topics take any timestamp
    timestamp_before_ms: int | None

    @classmethod
    def from_configs(cls, config: dict[str, Any]) -> DestinationLimits:
        def value(name: str) -> str | None:
            entry = config.get(name)
            return None if entry is None else entry.value
        log_append = value("message.timestamp.type") == "LogAppendTime"
        after, before = value("message.timestamp.after.max.ms"), value("message.timestamp.before.max.ms")
        return cls(int(value("max.message.bytes") or 1_048_588), "compact" in (value("cleanup.policy") or ""),
                   None if log_append or after is None else int(after),
                   None if log_append or before is None else int(before))

    def record_bytes(self, key: bytes | None, value: bytes, headers: list[tuple[str, bytes]]) -> int:
        return (len(value) + (len(key) if key else 0) + sum(len(k) + len(v) + 4 for k, v in headers)
                + RECORD_OVERHEAD + BATCH_OVERHEAD)

    def refusal(self, key: bytes | None, timestamp_ms: int, now_ms: int) -> tuple[int, str] | None:
        """(Kafka error code it would answer, why) for what the record is, not its size."""
        if self.compacted and key is None:
            return KafkaError.INVALID_RECORD, "null key into a compacted destination"
        if self.timestamp_after_ms is not None and timestamp_ms - now_ms > self.timestamp_after_ms - 60_000:
            return KafkaError.INVALID_TIMESTAMP, (f"capture time {(timestamp_ms - now_ms) / 1000:.0f}s ahead "
                                                  f"(destination tolerance {self.timestamp_after_ms} ms)")
        if self.timestamp_before_ms is not None and now_ms - timestamp_ms > self.timestamp_before_ms - 60_000:
            return KafkaError.INVALID_TIMESTAMP, (f"capture time {(now_ms - timestamp_ms) / 1000:.0f}s behind "
                                                  f"(destination tolerance {self.timestamp_before_ms} ms)")
        return None
