"""Consumer: reads partitions by assignment or as a member of a group, from any offset or time.

Guarantees:
- ``poll`` returns records in offset order per partition, each exactly once per position
  (a fetch starting mid-batch drops the records before the position); every batch is
  CRC-checked on decode, so a damaged record raises CorruptBatchError, never bad data.
- One fetch is kept in flight ahead of the application (prefetch), so reading overlaps
  processing; a seek discards the prefetched data.
- Fair across partitions: each fetch lists the partitions that returned data last, so a
  backlog on some partitions cannot starve the others of ``fetch_max_bytes``.
- Group mode: ``subscribe`` joins the group; heartbeats go out from ``poll`` (call it at
  least every session timeout); on rebalance the assignment changes and new partitions
  start at the group's committed offset, else at ``auto_offset_reset``.
- A position below the log start (deleted by retention) is reset by ``auto_offset_reset``
  and counted in ``reset_count``.
- A corrupt batch (found by the broker, or failing its CRC or decoding here) raises
  CorruptBatchError on every poll, unless ``skip_corrupt=True``: then it is reported
  (``on_corrupt(topic, partition, first_offset, next_offset, reason)``, the list
  ``skipped_corrupt`` and a log line) and reading goes on after it.

Not thread-safe: use a Consumer from one thread.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Callable, Iterable

from .. import protocol as P
from ..batch_checks import find_damaged_batch
from ..errors import BrokerError, CorruptBatchError, OffsetOutOfRangeError, UnknownGroupMemberError, error_from_code
from ..logs import log_event
from ..records import BatchValues, Record, decode_batches, decode_batches_values
from .connection import Connection

TopicPartition = tuple[str, int]


class Consumer:
    def __init__(self, endpoint: str, *, group: str | None = None, auto_offset_reset: str = "earliest",
                 fetch_max_bytes: int = 8 * 1024 * 1024, max_wait_ms: int = 500,
                 session_timeout_ms: int = 10_000, heartbeat_interval_ms: int = 1_000, timeout_s: float = 10.0,
                 skip_corrupt: bool = False,
                 on_corrupt: Callable[[str, int, int, int, str], None] | None = None):
        if auto_offset_reset not in ("earliest", "latest"):
            raise ValueError("auto_offset_reset must be 'earliest' or 'latest'")
        self.endpoint = endpoint
        self.group = group
        self.auto_offset_reset = auto_offset_reset
        self.fetch_max_bytes = fetch_max_bytes
        self.max_wait_ms = max_wait_ms
        self.session_timeout_ms = session_timeout_ms
        self.heartbeat_interval_s = heartbeat_interval_ms / 1000
        self.connection = Connection(endpoint, timeout_s=timeout_s)
        self.positions: dict[TopicPartition, int] = {}
        self.member_id: str | None = None
        self.generation = -1
        self.subscription: list[str] = []
        self.reset_count = 0
        self._last_heartbeat = 0.0
        self._prefetch: tuple[int, dict[TopicPartition, int]] | None = None
        self.skip_corrupt = skip_corrupt
        self.on_corrupt = on_corrupt
        self.skipped_corrupt: list[tuple[str, int, int, int, str]] = []

    # -- assignment ----------------------------------------------------------------------

    def _request(self, kind: int, meta: dict[str, Any]) -> dict[str, Any]:
        self._prefetch = None  # its reply would be consumed by this request's wait
        return self.connection.request(kind, meta).meta

    def assign(self, partitions: Iterable[TopicPartition]) -> None:
        """Read exactly these partitions, starting at the group's committed offsets (when a
        group is set) or at ``auto_offset_reset``."""
        wanted = [(str(t), int(p)) for t, p in partitions]
        committed = self.committed(wanted) if self.group else {}
        self.positions = {tp: self.positions.get(tp, committed.get(tp, -1)) for tp in wanted}
        for tp, pos in list(self.positions.items()):
            if pos < 0:
                self.positions[tp] = self._reset_offset(tp)
        self._prefetch = None

    def assignment(self) -> list[TopicPartition]:
        return sorted(self.positions)

    def subscribe(self, topics: list[str]) -> None:
        if not self.group:
            raise ValueError("subscribe needs a consumer group (Consumer(group=...))")
        self.subscription = list(topics)
        self._join()

    def _join(self) -> None:
        meta = self._request(P.JOIN_GROUP, {"group": self.group, "member_id": self.member_id,
                                            "topics": self.subscription,
                                            "session_timeout_ms": self.session_timeout_ms})
        self.member_id = meta["member_id"]
        self._apply_assignment(meta["generation"], meta["assignment"])

    def _apply_assignment(self, generation: int, assignment: list) -> None:
        self.generation = generation
        new = [(t, p) for t, p in assignment]
        keep = {tp: pos for tp, pos in self.positions.items() if tp in new}
        self.positions = keep
        self.assign(new)
        self._last_heartbeat = time.monotonic()

    def _heartbeat(self) -> None:
        if not self.group or self.member_id is None:
            return
        if time.monotonic() - self._last_heartbeat < self.heartbeat_interval_s:
            return
        try:
            meta = self._request(P.HEARTBEAT, {"group": self.group, "member_id": self.member_id,
                                               "generation": self.generation})
        except UnknownGroupMemberError:
            self._join()
            return
        self._last_heartbeat = time.monotonic()
        if meta["rebalance"]:
            self._apply_assignment(meta["generation"], meta["assignment"])

    # -- positions -----------------------------------------------------------------------

    def _list_offset(self, tp: TopicPartition, spec: str, timestamp: int | None = None) -> int:
        meta: dict[str, Any] = {"topic": tp[0], "partition": tp[1], "spec": spec}
        if timestamp is not None:
            meta["timestamp"] = int(timestamp)
        return self._request(P.LIST_OFFSETS, meta)["offset"]

    def _reset_offset(self, tp: TopicPartition) -> int:
        return self._list_offset(tp, self.auto_offset_reset)

    def seek(self, topic: str, partition: int, offset: int) -> None:
        self.positions[(topic, partition)] = int(offset)
        self._prefetch = None

    def seek_to_beginning(self, partitions: Iterable[TopicPartition] | None = None) -> None:
        for tp in list(partitions or self.positions):
            self.positions[tp] = self._list_offset(tp, "earliest")
        self._prefetch = None

    def seek_to_end(self, partitions: Iterable[TopicPartition] | None = None) -> None:
        for tp in list(partitions or self.positions):
            self.positions[tp] = self._list_offset(tp, "latest")
        self._prefetch = None

    def seek_to_time(self, timestamp_ns: int, partitions: Iterable[TopicPartition] | None = None) -> None:
        """Position each partition at its first offset whose capture time is >= ``timestamp_ns``
        (Kafka's offsetsForTimes); ``poll`` then returns everything from there, also records
        stamped earlier by a clock that stepped back, whatever the fetch size."""
        for tp in list(partitions or self.positions):
            self.positions[tp] = self._list_offset(tp, "timestamp", timestamp_ns)
        self._prefetch = None

    def position(self, topic: str, partition: int) -> int:
        return self.positions[(topic, partition)]

    # -- reading -------------------------------------------------------------------------

    def _fetch_meta(self, positions: dict[TopicPartition, int], wait_ms: int) -> dict[str, Any]:
        return {"partitions": [[t, p, o] for (t, p), o in positions.items()],
                "max_bytes": self.fetch_max_bytes, "max_wait_ms": wait_ms}

    def poll(self, timeout: float = 1.0) -> list[Record]:
        """Records available within ``timeout`` seconds (possibly none)."""
        return self._poll(timeout, columns=False)

    def poll_values(self, timeout: float = 1.0) -> list[BatchValues]:
        """``poll`` in bulk: the values available within ``timeout`` seconds as one
        BatchValues per batch (bytes plus numpy offsets, timestamps, starts and lengths),
        with no Python object per record; the consumer to use for many small records."""
        return self._poll(timeout, columns=True)

    def _poll(self, timeout: float, columns: bool) -> list:
        self._heartbeat()
        if not self.positions:
            time.sleep(min(timeout, 0.1))
            return []
        deadline = time.monotonic() + timeout
        while True:
            wait_ms = max(0, min(self.max_wait_ms, int((deadline - time.monotonic()) * 1000)))
            if self._prefetch is None:
                snapshot = dict(self.positions)
                rid = self.connection.send(P.FETCH, self._fetch_meta(snapshot, wait_ms), wait_s=1.0)
                self._prefetch = (rid, snapshot)
            rid, snapshot = self._prefetch
            reply = self._await(rid, max(deadline - time.monotonic(), 0) + wait_ms / 1000 + self.connection.timeout_s)
            self._prefetch = None
            records = self._apply_fetch(reply, snapshot, columns)
            if records:
                # prefetch the next chunk while the caller works on this one
                if self.positions:
                    snap = dict(self.positions)
                    try:
                        nrid = self.connection.send(P.FETCH, self._fetch_meta(snap, self.max_wait_ms))
                        self._prefetch = (nrid, snap)
                    except BrokerError:
                        self._prefetch = None
                return records
            if time.monotonic() >= deadline:
                return []

    def _await(self, request_id: int, timeout_s: float):
        deadline = time.monotonic() + timeout_s
        while True:
            reply = self.connection.recv(max(0.0, deadline - time.monotonic()))
            if reply is None:
                self.connection.reset()
                raise error_from_code(14, f"no fetch reply from the broker at {self.endpoint} within {timeout_s:.1f}s")
            if reply.header.request_id == request_id:
                reply.raise_for_error()
                return reply

    def _apply_fetch(self, reply, snapshot: dict[TopicPartition, int], columns: bool) -> list:
        out: list = []
        for entry, data in zip(reply.meta["partitions"], reply.payloads):
            tp = (entry["topic"], entry["partition"])
            if tp not in self.positions or self.positions[tp] != snapshot.get(tp):
                continue  # seeked or revoked meanwhile
            if entry["error"]:
                err = error_from_code(entry["error"], entry.get("message", ""))
                if isinstance(err, OffsetOutOfRangeError):
                    self.positions[tp] = self._reset_offset(tp)
                    self.reset_count += 1
                    continue
                if self.skip_corrupt and isinstance(err, CorruptBatchError) and err.resume_offset is not None:
                    self._skip_corrupt(tp, snapshot[tp], err.resume_offset, err.message)
                    continue
                raise err
            if self.skip_corrupt and len(data):
                data = self._without_damage(tp, data, snapshot[tp])
            if not len(data):
                continue
            if columns:
                chunks = decode_batches_values(data, topic=tp[0], partition=tp[1], min_offset=snapshot[tp])
                if chunks:
                    self._served(tp, int(chunks[-1].offsets[-1]) + 1)
                    out.extend(c for c in chunks if len(c))
                continue
            records = decode_batches(data, topic=tp[0], partition=tp[1], min_offset=snapshot[tp])
            if records:
                self._served(tp, records[-1].offset + 1)
                out.extend(records)
        return out

    def _without_damage(self, tp: TopicPartition, data, position: int):
        """The batches before the first damaged one; a damaged first batch is skipped."""
        found = find_damaged_batch(data)
        if found is None:
            return data
        at, header, reason = found
        if at:
            return memoryview(data)[:at]  # served now; the damaged batch is skipped next time
        self._skip_corrupt(tp, max(position, header.base_offset), header.next_offset, reason)
        return b""

    def _skip_corrupt(self, tp: TopicPartition, first: int, resume: int, reason: str) -> None:
        if resume <= first:
            raise CorruptBatchError(f"{tp[0]}/{tp[1]}: corrupt batch at offset {first} and no offset to resume at: {reason}")
        self.skipped_corrupt.append((tp[0], tp[1], first, resume, reason))
        log_event(logging.getLogger("broker.client"), logging.ERROR, "corrupt_batch_skipped", topic=tp[0],
                  partition=tp[1], first_offset=first, resume_offset=resume, reason=reason)
        if self.on_corrupt is not None:
            self.on_corrupt(tp[0], tp[1], first, resume, reason)
        self.positions[tp] = resume

    def _served(self, tp: TopicPartition, next_position: int) -> None:
        # a partition that returned data moves to the end of the next fetch's list: the
        # broker fills max_bytes in list order, so a fixed order would let the first
        # partitions' backlog starve the rest for as long as it lasts (Kafka's KIP-74 rotation)
        del self.positions[tp]
        self.positions[tp] = next_position

    # -- commits -------------------------------------------------------------------------

    def commit(self, offsets: dict[TopicPartition, int] | None = None) -> None:
        """Store offsets (default: the current positions) durably for the group."""
        if not self.group:
            raise ValueError("commit needs a consumer group")
        offsets = dict(self.positions) if offsets is None else offsets
        self._request(P.COMMIT_OFFSETS, {"group": self.group, "offsets": [[t, p, o] for (t, p), o in offsets.items()]})

    def committed(self, partitions: list[TopicPartition] | None = None) -> dict[TopicPartition, int]:
        if not self.group:
            return {}
        meta = {"group": self.group, "partitions": None if partitions is None else [list(tp) for tp in partitions]}
        return {(t, p): o for t, p, o in self._request(P.FETCH_OFFSETS, meta)["offsets"]}

    def close(self) -> None:
        if self.group and self.member_id is not None:
            try:
                self._request(P.LEAVE_GROUP, {"group": self.group, "member_id": self.member_id})
            except BrokerError:
                pass
        self.connection.close()

    def __enter__(self) -> "Consumer":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
