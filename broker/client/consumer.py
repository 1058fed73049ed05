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
- A position that is no longer in the log is an event, never a silent jump (broker.client.
  resets): below the log start (retention), taken back by crash recovery (the partition's
  log epoch, sent with every fetch, ended below the position; KIP-320), or on a re-created
  topic (its id changed). ``auto_offset_reset`` earliest/latest resets and reports it to
  ``on_reset`` (an OffsetReset: range, records skipped / taken back), logs one line and
  counts it in ``stats``; ``error``/``none`` raises the typed error instead and moves nothing.
- A deleted topic: its partitions leave the assignment and ``poll`` raises
  UnknownTopicError once, after returning the records the same fetch brought for others.
- Broker restarts and lost replies: the fetch in flight is dropped (a dropped connection is
  noticed at once, a silent loss after ``timeout_s``) and ``poll`` fetches again from the
  positions with bounded backoff. A broker back within the poll's timeout is invisible to
  the caller; one still away at its end raises BrokerUnavailableError (retriable) and the
  next ``poll`` goes on from the same positions: positions move only with records
  returned, so nothing is skipped or duplicated. ``broker_lost_since`` says since when.
- ``auto_commit_interval_ms``: in group mode commit the positions (what ``poll`` returned)
  periodically, before giving up partitions in a rebalance, and at ``close``.
- A corrupt batch (found by the broker, or failing its CRC or decoding here) raises
  CorruptBatchError on every poll, unless ``skip_corrupt=True``: then it is reported
  (``on_corrupt(topic, partition, first_offset, next_offset, reason)``, the list
  ``skipped_corrupt`` and a log line) and reading goes on after it.

Not thread-safe: use a Consumer from one thread.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any

from .. import protocol_messages as M
from ..batch_checks import find_damaged_batch
from ..errors import (
    BrokerError,
    BrokerUnavailableError,
    CorruptBatchError,
    LogTruncatedError,
    OffsetOutOfRangeError,
    UnknownGroupMemberError,
    UnknownPartitionError,
    UnknownTopicError,
    error_from_code,
)
from ..logs import log_event
from ..records import BatchValues, Record, decode_batches, decode_batches_values
from .connection import Connection, Reply
from .resets import RESET_POLICIES, OffsetReset, reset_for

logger = logging.getLogger("broker.client.consumer")

TopicPartition = tuple[str, int]
RETRY_BACKOFF_MIN_S = 0.05
RETRY_BACKOFF_MAX_S = 1.0
DISCONNECT_CHECK_S = 0.25  # a lost connection is noticed within this while awaiting a reply
# after a rebalance, heartbeat often for a while: a partition moving between members is handed
# over at the old owner's next request and picked up at the new owner's next (broker.groups)
REBALANCE_SETTLE_S = 3.0
REBALANCE_HEARTBEAT_S = 0.1
POSITION_ERRORS = (OffsetOutOfRangeError.code, LogTruncatedError.code)
GONE_ERRORS = (UnknownTopicError.code, UnknownPartitionError.code)


class Consumer:
    def __init__(self, endpoint: str, *, group: str | None = None, auto_offset_reset: str = "earliest",
                 fetch_max_bytes: int = 8 * 1024 * 1024, max_wait_ms: int = 500,
                 session_timeout_ms: int = 10_000, heartbeat_interval_ms: int = 1_000, timeout_s: float = 10.0,
                 skip_corrupt: bool = False,
                 on_corrupt: Callable[[str, int, int, int, str], None] | None = None,
                 on_reset: Callable[[OffsetReset], None] | None = None, auto_commit_interval_ms: int | None = None):
        """``auto_offset_reset``: earliest | latest | error | none (see broker.client.resets);
        with error/none a partition with no committed offset and no seek starts at the log
        start. ``on_reset(OffsetReset)`` hears every reset; ``auto_commit_interval_ms`` (group
        mode) commits positions that often, on rebalance and on close (None: only ``commit``)."""
        if auto_offset_reset not in RESET_POLICIES:
            raise ValueError(f"auto_offset_reset must be one of {', '.join(RESET_POLICIES)}, not {auto_offset_reset!r}")
        self.endpoint = endpoint
        self.group = group
        self.auto_offset_reset = auto_offset_reset
        self.fetch_max_bytes = fetch_max_bytes
        self.max_wait_ms = max_wait_ms
        self.session_timeout_ms = session_timeout_ms
        self.heartbeat_interval_s = heartbeat_interval_ms / 1000
        self.connection = Connection(endpoint, timeout_s=timeout_s, watch_disconnects=True)
        self.positions: dict[TopicPartition, int] = {}
        self.member_id: str | None = None
        self.generation = -1
        self.subscription: list[str] = []
        self.on_reset = on_reset
        self.auto_commit_interval_s = None if auto_commit_interval_ms is None else auto_commit_interval_ms / 1000
        self.stats = {"resets": 0, "records_skipped": 0, "records_taken_back": 0, "reset_refusals": 0,
                      "fetch_retries": 0, "broker_outages": 0, "topics_lost": 0}
        self.reset_events: deque[OffsetReset] = deque(maxlen=100)  # the latest, for callers without on_reset
        self.broker_lost_since: float | None = None
        self._backoff_s = RETRY_BACKOFF_MIN_S
        self._pending_error: BrokerError | None = None
        self._topic_ids: dict[str, str | None] = {}
        self._log_epochs: dict[TopicPartition, int] = {}
        self._last_commit = time.monotonic()
        self._last_heartbeat = 0.0
        self._settle_until = 0.0  # heartbeat fast until then: partitions are being handed over
        self._prefetch: tuple[int, dict[TopicPartition, int]] | None = None
        self.skip_corrupt = skip_corrupt
        self.on_corrupt = on_corrupt
        self.skipped_corrupt: list[tuple[str, int, int, int, str]] = []

    @property
    def reset_count(self) -> int:
        return self.stats["resets"]

    # -- assignment ----------------------------------------------------------------------

    def _call(self, request: M.Request[M.ReplyT]) -> M.ReplyT:
        self._prefetch = None  # its reply would be consumed by this request's wait
        return self.connection.call(request)

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
        if self.group is None:
            raise ValueError("joining needs a consumer group (Consumer(group=...))")
        joined = self._call(M.JoinGroupRequest(group=self.group, member_id=self.member_id,
                                               topics=tuple(self.subscription),
                                               session_timeout_ms=self.session_timeout_ms))
        self.member_id = joined.member_id
        self._apply_assignment(joined.generation, list(joined.assignment))

    def _apply_assignment(self, generation: int, assignment: list[tuple[str, int]]) -> None:
        self.generation = -1  # until applied: if this fails, the next heartbeat gets the assignment again
        new = [(t, p) for t, p in assignment]
        revoked = {tp: pos for tp, pos in self.positions.items() if tp not in new}
        if revoked and self.auto_commit_interval_s is not None:
            try:
                self.commit(revoked)  # before the next request: the coordinator hands them over after it
            except BrokerError as exc:  # the assignment is applied all the same: never read a revoked partition
                log_event(logger, logging.WARNING, "consumer_revoke_commit_failed", group=self.group,
                          partitions=len(revoked), error=exc.message,
                          effect="the next owner starts at the last commit: records after it are read again")
        keep = {tp: pos for tp, pos in self.positions.items() if tp in new}
        self.positions = keep
        self.assign(new)
        self.generation = generation
        self._last_heartbeat = time.monotonic()
        self._settle_until = self._last_heartbeat + REBALANCE_SETTLE_S

    def _heartbeat(self) -> None:
        if not self.group or self.member_id is None or self.broker_lost_since is not None:
            return  # while the broker is away the fetch path finds out when it is back
        now = time.monotonic()
        interval = self.heartbeat_interval_s if now >= self._settle_until else min(self.heartbeat_interval_s,
                                                                                    REBALANCE_HEARTBEAT_S)
        if now - self._last_heartbeat < interval:
            return
        try:
            beat = self._call(M.HeartbeatRequest(group=self.group, member_id=self.member_id,
                                                 generation=self.generation))
        except UnknownGroupMemberError:
            self._join()  # e.g. the broker restarted: positions of partitions kept are kept
            return
        except BrokerUnavailableError as exc:
            if not exc.retriable:
                raise
            self._lost_broker(exc)
            return
        self._last_heartbeat = time.monotonic()
        if beat.rebalance:
            self._apply_assignment(beat.generation, list(beat.assignment))

    # -- positions -----------------------------------------------------------------------

    def _list_offset(self, tp: TopicPartition, spec: str, timestamp: int | None = None) -> int:
        return self._call(M.ListOffsetsRequest(topic=tp[0], partition=tp[1], spec=spec,
                                               timestamp=None if timestamp is None else int(timestamp))).offset

    def _reset_offset(self, tp: TopicPartition) -> int:
        return self._list_offset(tp, "latest" if self.auto_offset_reset == "latest" else "earliest")

    def seek(self, topic: str, partition: int, offset: int) -> None:
        self.positions[(topic, partition)] = int(offset)
        self._log_epochs.pop((topic, partition), None)  # an explicit position: nothing to check it against
        self._prefetch = None

    def seek_to_beginning(self, partitions: Iterable[TopicPartition] | None = None) -> None:
        for tp in list(partitions or self.positions):
            self.positions[tp] = self._list_offset(tp, "earliest")
            self._log_epochs.pop(tp, None)
        self._prefetch = None

    def seek_to_end(self, partitions: Iterable[TopicPartition] | None = None) -> None:
        for tp in list(partitions or self.positions):
            self.positions[tp] = self._list_offset(tp, "latest")
            self._log_epochs.pop(tp, None)
        self._prefetch = None

    def seek_to_time(self, timestamp_ns: int, partitions: Iterable[TopicPartition] | None = None) -> None:
        """Position each partition at its first offset whose capture time is >= ``timestamp_ns``
        (Kafka's offsetsForTimes); ``poll`` then returns everything from there, also records
        stamped earlier by a clock that stepped back, whatever the fetch size."""
        for tp in list(partitions or self.positions):
            self.positions[tp] = self._list_offset(tp, "timestamp", timestamp_ns)
            self._log_epochs.pop(tp, None)
        self._prefetch = None

    def position(self, topic: str, partition: int) -> int:
        return self.positions[(topic, partition)]

    # -- reading -------------------------------------------------------------------------

    def _fetch_request(self, positions: dict[TopicPartition, int], wait_ms: int) -> M.FetchRequest:
        epochs = self._log_epochs
        return M.FetchRequest(partitions=tuple(M.FetchPosition(t, p, o, epochs.get((t, p)))
                                               for (t, p), o in positions.items()),
                              max_bytes=self.fetch_max_bytes, max_wait_ms=wait_ms)

    def poll(self, timeout: float = 1.0) -> list[Record]:
        """Records available within ``timeout`` seconds (possibly none)."""
        return self._poll(timeout, columns=False)

    def poll_values(self, timeout: float = 1.0) -> list[BatchValues]:
        """``poll`` in bulk: the values available within ``timeout`` seconds as one
        BatchValues per batch (bytes plus numpy offsets, timestamps, starts and lengths),
        with no Python object per record; the consumer to use for many small records."""
        return self._poll(timeout, columns=True)

    def _poll(self, timeout: float, columns: bool) -> list[Any]:
        if self._pending_error is not None:
            error, self._pending_error = self._pending_error, None
            raise error
        self._heartbeat()
        self._maybe_auto_commit()
        if not self.positions:
            time.sleep(min(timeout, 0.1))
            return []
        deadline = time.monotonic() + timeout
        while True:
            wait_ms = max(0, min(self.max_wait_ms, int((deadline - time.monotonic()) * 1000)))
            try:
                if self._prefetch is None:
                    snapshot = dict(self.positions)
                    connect_s = min(1.0, max(deadline - time.monotonic(), 0.01))
                    rid = self.connection.send_request(self._fetch_request(snapshot, wait_ms), wait_s=connect_s)
                    self._prefetch = (rid, snapshot)
                rid, snapshot = self._prefetch
                self._prefetch = None  # taken: a reply lost from here on is never awaited again
                reply = self._await(
                    rid, max(deadline - time.monotonic(), 0) + wait_ms / 1000 + self.connection.timeout_s)
            except BrokerUnavailableError as exc:
                if not exc.retriable:
                    raise
                self._lost_broker(exc)
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise BrokerUnavailableError(f"{exc.message} (retried for {timeout:.1f}s; positions are kept: "
                                                 "poll again to resume)") from None
                time.sleep(min(self._backoff_s, remaining))
                self._backoff_s = min(self._backoff_s * 2, RETRY_BACKOFF_MAX_S)
                continue
            if self.broker_lost_since is not None:
                self._found_broker()
            records = self._apply_fetch(reply, snapshot, columns)
            if records:
                # prefetch the next chunk while the caller works on this one
                if self.positions:
                    snap = dict(self.positions)
                    try:
                        nrid = self.connection.send_request(self._fetch_request(snap, self.max_wait_ms))
                        self._prefetch = (nrid, snap)
                    except BrokerError:
                        self._prefetch = None
                return records
            if time.monotonic() >= deadline:
                return []

    def _lost_broker(self, exc: BrokerError) -> None:
        self.stats["fetch_retries"] += 1
        if self.broker_lost_since is None:
            self.broker_lost_since = time.monotonic()
            self.stats["broker_outages"] += 1
            log_event(logger, logging.WARNING, "consumer_broker_lost", endpoint=self.endpoint, error=exc.message,
                      effect="retrying from the current positions")

    def _found_broker(self) -> None:
        lost_s = 0.0 if self.broker_lost_since is None else time.monotonic() - self.broker_lost_since
        log_event(logger, logging.INFO, "consumer_broker_back", endpoint=self.endpoint,
                  seconds=f"{lost_s:.2f}", retries=self.stats["fetch_retries"])
        self.broker_lost_since = None
        self._backoff_s = RETRY_BACKOFF_MIN_S

    def _await(self, request_id: int, timeout_s: float) -> Reply:
        deadline = time.monotonic() + timeout_s
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self.connection.reset()
                raise BrokerUnavailableError(
                    f"no fetch reply from the broker at {self.endpoint} within {timeout_s:.1f}s")
            reply = self.connection.recv(min(remaining, DISCONNECT_CHECK_S))
            if reply is None:
                if self.connection.take_disconnect():
                    raise BrokerUnavailableError(f"the connection to the broker at {self.endpoint} dropped "
                                                 "while a fetch was in flight")
                continue
            if reply.header.request_id == request_id:
                reply.raise_for_error()
                return reply

    def _apply_fetch(self, reply: Reply, snapshot: dict[TopicPartition, int], columns: bool) -> list[Any]:
        out: list[Any] = []
        topic_ids, problems = self._topic_ids, []
        for entry, payload in zip(reply.meta["partitions"], reply.payloads, strict=False):
            tp = (entry["topic"], entry["partition"])
            if tp not in self.positions or self.positions[tp] != snapshot.get(tp):
                continue  # seeked or revoked meanwhile
            if entry["error"]:
                problems.append(entry)
                continue
            topic_id = entry.get("topic_id")
            if topic_ids.setdefault(tp[0], topic_id) != topic_id:
                problems.append(entry)  # deleted and created again since we last read it
                continue
            if "log_epoch" in entry:
                self._log_epochs[tp] = entry["log_epoch"]
            data = payload
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
        if problems:
            error = self._handle_problems(problems)
            if error is not None:
                if not out:
                    raise error
                self._pending_error = error  # deliver what the others brought first
        return out

    def _without_damage(self, tp: TopicPartition, data: Any, position: int) -> Any:
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
            raise CorruptBatchError(
                f"{tp[0]}/{tp[1]}: corrupt batch at offset {first} and no offset to resume at: {reason}")
        self.skipped_corrupt.append((tp[0], tp[1], first, resume, reason))
        log_event(logging.getLogger("broker.client"), logging.ERROR, "corrupt_batch_skipped", topic=tp[0],
                  partition=tp[1], first_offset=first, resume_offset=resume, reason=reason)
        if self.on_corrupt is not None:
            self.on_corrupt(tp[0], tp[1], first, resume, reason)
        self.positions[tp] = resume

    def _handle_problems(self, entries: list[dict[str, Any]]) -> BrokerError | None:
        """Resets, lost topics and other per-partition errors of one fetch reply; returns the
        first error to raise (after the records of the other partitions are delivered)."""
        first_error: BrokerError | None = None
        new_ids: dict[str, str] = {}
        for entry in entries:
            tp = (entry["topic"], entry["partition"])
            code = entry["error"]
            topic_id: str | None = entry.get("topic_id")
            # a changed id explains any position error too (the old position means nothing now)
            recreated = topic_id is not None and self._topic_ids.get(tp[0], topic_id) != topic_id
            if code in GONE_ERRORS:
                del self.positions[tp]
                self._log_epochs.pop(tp, None)
                self._topic_ids.pop(tp[0], None)
                self.stats["topics_lost"] += 1
                log_event(logger, logging.WARNING, "consumer_partition_gone", topic=tp[0], partition=tp[1],
                          reason=entry.get("message", ""), effect="removed from the assignment")
                error: BrokerError | None = error_from_code(
                    code, f"{tp[0]}/{tp[1]}: {entry.get('message', 'unknown topic')} "
                    "(removed from this consumer's assignment)")
            elif code in POSITION_ERRORS or recreated:
                if recreated and topic_id is not None:
                    new_ids[tp[0]] = topic_id
                event = reset_for(entry, self.positions[tp], self.auto_offset_reset, recreated=recreated)
                error = self._reset(tp, event)
            else:
                error = error_from_code(code, entry.get("message", ""))
                if self.skip_corrupt and isinstance(error, CorruptBatchError) and error.resume_offset is not None:
                    try:
                        self._skip_corrupt(tp, self.positions[tp], error.resume_offset, error.message)
                        error = None
                    except CorruptBatchError as exc:
                        error = exc
            first_error = first_error or error
        self._topic_ids.update(new_ids)  # under error/none the re-creation is raised once
        return first_error

    def _reset(self, tp: TopicPartition, event: OffsetReset) -> BrokerError | None:
        """Apply (or, under error/none, refuse) one reset and report it."""
        if self.auto_offset_reset in ("error", "none"):
            self.stats["reset_refusals"] += 1
            log_event(logger, logging.WARNING, "consumer_offset_out_of_range", reason=event.reason,
                      detail=event.describe())
            return event.error()
        self.positions[tp] = event.to_offset
        self._log_epochs.pop(tp, None)
        self.stats["resets"] += 1
        self.stats["records_skipped"] += event.skipped
        self.stats["records_taken_back"] += event.taken_back
        self.reset_events.append(event)
        log_event(logger, logging.WARNING, "consumer_offset_reset", reason=event.reason, topic=event.topic,
                  partition=event.partition, from_offset=event.from_offset, to_offset=event.to_offset,
                  skipped=event.skipped, taken_back=event.taken_back, policy=event.policy)
        if self.on_reset is not None:
            self.on_reset(event)
        return None

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
        self._call(M.CommitOffsetsRequest(group=self.group, offsets=tuple((t, p, o) for (t, p), o in offsets.items())))

    def committed(self, partitions: list[TopicPartition] | None = None) -> dict[TopicPartition, int]:
        if not self.group:
            return {}
        wanted = None if partitions is None else tuple((t, p) for t, p in partitions)
        return {(t, p): o for t, p, o in self._call(M.FetchOffsetsRequest(group=self.group, partitions=wanted)).offsets}

    def _maybe_auto_commit(self) -> None:
        if (self.auto_commit_interval_s is None or not self.group or self.broker_lost_since is not None
                or time.monotonic() - self._last_commit < self.auto_commit_interval_s):
            return
        self._last_commit = time.monotonic()
        if self.positions:
            try:
                self.commit()
            except BrokerUnavailableError as exc:
                if not exc.retriable:
                    raise
                self._lost_broker(exc)

    def close(self) -> None:
        if self.auto_commit_interval_s is not None and self.group and self.positions:
            try:
                self.commit()
            except BrokerError as exc:
                log_event(logger, logging.WARNING, "consumer_final_commit_failed", group=self.group, error=exc.message)
        if self.group and self.member_id is not None:
            try:
                self._call(M.LeaveGroupRequest(group=self.group, member_id=self.member_id))
            except BrokerError:
                pass
        self.connection.close()

    def __enter__(self) -> Consumer:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
