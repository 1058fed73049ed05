"""The API's way to the broker: a pool of client connections usable from any thread.

Guarantees:
- A broker connection (``broker.client.Admin``) is used by one thread at a time: callers
  borrow one from the pool and give it back; a connection that timed out is discarded.
- Reads go through the client library's wire calls (metadata, list offsets, fetch) and
  ``broker.records.decode_batches``: records are CRC-checked before anything is served.
- Bounded work per request: ``read_records`` stops at ``limit`` records or ``max_bytes``
  fetched, whichever comes first.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from broker import protocol_messages as M
from broker.client import Admin
from broker.errors import BrokerError, BrokerUnavailableError, UnknownPartitionError
from broker.records import Record, decode_batches, parse_header

FETCH_CHUNK_BYTES = 4 * 1024 * 1024


class BrokerGateway:
    def __init__(self, endpoint: str, *, timeout_s: float = 5.0, max_idle: int = 16):
        self.endpoint = endpoint
        self.timeout_s = timeout_s
        self._idle: queue.LifoQueue[Admin] = queue.LifoQueue(maxsize=max_idle)
        self._closed = threading.Event()

    @contextmanager
    def admin(self) -> Iterator[Admin]:
        """Borrow a connection; it goes back to the pool unless the broker timed out on it."""
        if self._closed.is_set():
            raise BrokerUnavailableError("the API is shutting down")
        try:
            admin = self._idle.get_nowait()
        except queue.Empty:
            admin = Admin(self.endpoint, timeout_s=self.timeout_s)
        healthy = True
        try:
            yield admin
        except BrokerUnavailableError:
            healthy = False
            raise
        finally:
            if healthy and not self._closed.is_set():
                try:
                    self._idle.put_nowait(admin)
                except queue.Full:
                    admin.close()
            else:
                admin.close()

    def close(self) -> None:
        self._closed.set()
        while True:
            try:
                self._idle.get_nowait().close()
            except queue.Empty:
                return

    # -- reads ---------------------------------------------------------------------------

    def ping(self) -> dict[str, Any]:
        with self.admin() as admin:
            return admin.ping()

    def metadata(self, topics: list[str] | None = None) -> dict[str, Any]:
        with self.admin() as admin:
            return admin.metadata(topics)

    def describe_topic(self, topic: str) -> dict[str, Any]:
        """{"config", "partitions"}; raises UnknownTopicError."""
        with self.admin() as admin:
            return admin.describe_topic(topic)

    def partition_info(self, topic: str, partition: int) -> dict[str, Any]:
        parts = self.describe_topic(topic)["partitions"]
        if not 0 <= partition < len(parts):
            raise UnknownPartitionError(f"topic {topic!r} has {len(parts)} partition(s), no partition {partition}")
        part: dict[str, Any] = parts[partition]
        return part

    def offset_for_time(self, topic: str, partition: int, timestamp_ns: int) -> int:
        with self.admin() as admin:
            return admin.list_offset(topic, partition, "timestamp", timestamp_ns)

    def fetch_raw(self, topic: str, partition: int, offset: int, max_bytes: int) -> tuple[dict[str, Any], memoryview]:
        """One fetch (no wait): the partition's reply entry and whole batches from ``offset``."""
        with self.admin() as admin:
            request = M.FetchRequest(partitions=(M.FetchPosition(topic, partition, offset),), max_bytes=max_bytes,
                                     max_wait_ms=0)
            reply = admin.connection.request(request.KIND, request.to_meta())  # its batches come as payloads
        entry = reply.meta["partitions"][0]
        if entry.get("error"):
            from broker.errors import error_from_code

            raise error_from_code(entry["error"], entry.get("message", "fetch failed"))
        return entry, memoryview(reply.payloads[0]) if reply.payloads else memoryview(b"")

    def read_records(self, topic: str, partition: int, start: int, limit: int, *,
                     max_bytes: int = 4 * FETCH_CHUNK_BYTES, timestamp_floor: int | None = None) -> list[Record]:
        """Up to ``limit`` records from ``start`` on (those with a capture time below
        ``timestamp_floor`` skipped), reading at most about ``max_bytes``."""
        out: list[Record] = []
        offset, fetched = start, 0
        while len(out) < limit and fetched < max_bytes:
            entry, data = self.fetch_raw(topic, partition, offset, FETCH_CHUNK_BYTES)
            if not len(data):
                break
            fetched += len(data)
            records = decode_batches(data, topic=topic, partition=partition, min_offset=offset)
            if not records:
                break
            offset = records[-1].offset + 1
            if timestamp_floor is not None:
                records = [r for r in records if r.timestamp >= timestamp_floor]
            out.extend(records[: limit - len(out)])
            if offset >= entry.get("next_offset", offset):
                break
        return out

    def record_at(self, topic: str, partition: int, offset: int) -> Record:
        """The record at exactly ``offset``; OffsetOutOfRangeError when it is not held."""
        from broker.errors import OffsetOutOfRangeError

        _, data = self.fetch_raw(topic, partition, offset, 1)
        records: Iterable[Record] = decode_batches(data, topic=topic, partition=partition, min_offset=offset)
        for record in records:
            if record.offset == offset:
                return record
        raise OffsetOutOfRangeError(f"offset {offset} is not held in {topic}/{partition}")

    def latest_record(self, topic: str, partitions: list[dict[str, Any]] | None = None) -> Record | None:
        """The newest record (by capture time) over the topic's partitions; None if empty."""
        parts = partitions if partitions is not None else self.describe_topic(topic)["partitions"]
        best: Record | None = None
        for p in parts:
            if p["next_offset"] <= p["log_start"]:
                continue
            try:
                record = self.record_at(topic, p["partition"], p["next_offset"] - 1)
            except BrokerError:
                continue  # deleted by retention meanwhile: skip this partition
            if best is None or record.timestamp > best.timestamp:
                best = record
        return best

    def first_timestamp(self, topic: str, partition: int, offset: int) -> int | None:
        """Capture time of the batch holding ``offset`` (header only, nothing decoded)."""
        try:
            _, data = self.fetch_raw(topic, partition, offset, 1)
        except BrokerError:
            return None
        if not len(data):
            return None
        return parse_header(data).first_timestamp
