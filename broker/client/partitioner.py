"""The producer's partitioner and the topic metadata it needs (Java's Partitioner and ProducerMetadata).

- ``TopicMetadata`` caches each topic's partition count and configured codec (Kafka's
  compression.type), asked of the broker on a request connection of its own (never the
  I/O thread's). A count of 1 is asked again after ``REFRESH_S`` (a topic may grow); a
  refresh waits at most ``METADATA_REFRESH_TIMEOUT_S`` and keeps the cached count when the
  broker does not answer at once: the caller is a sensor's publish loop, which must not
  stall on a dead broker. An unknown topic counts one partition (auto-created on first
  produce with the broker's defaults).
- ``Partitioner``: an explicit partition wins; else with a key (``partitioner="key"``)
  CRC-32C of the key modulo the partition count, so a key always lands on one partition;
  else round robin.

Thread-safe: the request connection is used under a lock.
"""

from __future__ import annotations

import itertools
import threading
import time

from crc32c import crc32c

from .. import protocol_messages as M
from ..errors import BrokerError, UnknownTopicError
from .connection import Connection

METADATA_REFRESH_TIMEOUT_S = 0.2
REFRESH_S = 5.0
PARTITIONERS = ("key", "round_robin")


class TopicMetadata:
    def __init__(self, endpoint: str):
        self._endpoint = endpoint
        self._lock = threading.Lock()
        self._conn: Connection | None = None
        self._partition_counts: dict[str, tuple[int, float]] = {}  # topic: (count, when learnt)
        self._codecs: dict[str, str] = {}  # each topic's configured codec (compression.type)

    def call(self, request: M.Request[M.ReplyT], timeout_s: float | None) -> M.ReplyT:
        """One request on the metadata connection (also INIT_PRODUCER_ID): its typed reply."""
        with self._lock:
            return self._call_locked(request, timeout_s)

    def _call_locked(self, request: M.Request[M.ReplyT], timeout_s: float | None) -> M.ReplyT:
        if self._conn is None:
            self._conn = Connection(self._endpoint, timeout_s=2.0)
        return self._conn.call(request, timeout_s=timeout_s)

    def partitions_of(self, topic: str) -> int:
        cached = self._partition_counts.get(topic)
        if cached is not None and (cached[0] > 1 or time.monotonic() - cached[1] < REFRESH_S):
            return cached[0]
        with self._lock:
            try:
                wait = METADATA_REFRESH_TIMEOUT_S if cached is not None else None
                topics = self._call_locked(M.MetadataRequest(topics=[topic]), wait).topics
                count = len(topics[topic]["partitions"])
                self._codecs[topic] = topics[topic].get("config", {}).get("codec", "none")
            except UnknownTopicError:
                count = 1
            except BrokerError:
                count = cached[0] if cached else 1
        self._partition_counts[topic] = (count, time.monotonic())
        return count

    def knows_codec(self, topic: str) -> bool:
        return topic in self._codecs

    def codec_of(self, topic: str) -> str:
        """The topic's configured codec (asked of the broker the first time), "none" unknown."""
        if topic not in self._codecs:
            self.partitions_of(topic)
        return self._codecs.get(topic, "none")

    def cached_codec(self, topic: str) -> str:
        """The codec learnt so far, without asking (the I/O thread must not block on it)."""
        return self._codecs.get(topic, "none")

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None


class Partitioner:
    def __init__(self, metadata: TopicMetadata, strategy: str, *, learn_codec: bool):
        if strategy not in PARTITIONERS:
            raise ValueError(f"partitioner must be 'key' or 'round_robin', not {strategy!r}")
        self._metadata = metadata
        self._strategy = strategy
        self._learn_codec = learn_codec  # no codec given: the topic's must be known before sending
        self._round_robin = itertools.count()

    def choose(self, topic: str, key: bytes | None, partition: int | None) -> int:
        if partition is not None:
            if self._learn_codec and not self._metadata.knows_codec(topic):
                self._metadata.partitions_of(topic)  # learns the topic's codec before the I/O thread needs it
            return partition
        count = self._metadata.partitions_of(topic)
        if count == 1:
            return 0
        if key is not None and self._strategy == "key":
            return crc32c(key) % count
        return next(self._round_robin) % count
