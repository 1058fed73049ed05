"""The broker's request handlers: one method per request message (broker/protocol_messages.py).

Guarantees:
- A handler gets a decoded, checked request and returns its reply frames, or None when the
  reply comes later (a parked fetch, a durable ack waiting for the interval flush) or never
  (PRODUCE with acks=none). A handler raising BrokerError gets an error reply from the
  dispatcher (broker/server.py); a failed request never changes the log.
- acks: ``none`` gets no reply, ``written`` a reply after the write, ``durable`` a reply
  once the batch is fsynced (at once for flush=batch/os, at the next interval flush for
  flush=interval: DurableAcks holds those until then).
- Handlers ask the BrokerServer for every effect shared with the Kafka listener (append,
  create/delete topic, commit), so both protocols behave alike.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from . import protocol as P
from . import protocol_messages as M
from .errors import BrokerError, InvalidConfigError, InvalidRequestError, UnknownTopicError
from .storage import Storage
from .storage.partition_log import AppendResult
from .storage.pins import shipped_progress
from .topic_config import TopicConfig

if TYPE_CHECKING:
    from .server import BrokerServer

Handler = Callable[[bytes, int, Any, list[Any]], list[Any] | None]


@dataclass
class DurableWaiter:
    identity: bytes
    request: M.ProduceRequest
    request_id: int
    needed: int  # the partition's durable offset that acknowledges the batch
    result: AppendResult


def produce_reply(result: AppendResult, durable_offset: int) -> M.ProduceReply:
    return M.ProduceReply(base_offset=result.base_offset, last_offset=result.last_offset,
                          append_time=result.append_time_ns, durable_offset=durable_offset)


class DurableAcks:
    """Produce replies with acks=durable waiting for the interval flush of their partition."""

    def __init__(self, storage: Storage, send: Callable[[bytes, list[Any]], None]):
        self._storage = storage
        self._send = send
        self._waiting: list[DurableWaiter] = []

    def __bool__(self) -> bool:
        return bool(self._waiting)

    def add(self, waiter: DurableWaiter) -> None:
        self._waiting.append(waiter)

    def complete(self) -> None:
        """Answer every waiter whose batch is now durable (or whose partition is gone)."""
        pending = []
        for waiter in self._waiting:
            try:
                durable = self._storage.log(waiter.request.topic, waiter.request.partition).durable_offset
            except BrokerError as exc:
                self._send(waiter.identity, P.error_reply(P.PRODUCE, waiter.request_id, exc))
                continue
            if durable >= waiter.needed:
                reply = produce_reply(waiter.result, durable)
                self._send(waiter.identity, M.ok_reply(waiter.request_id, waiter.request, reply))
            else:
                pending.append(waiter)
        self._waiting = pending


class RequestHandlers:
    def __init__(self, server: BrokerServer):
        self._server = server
        self._storage = server.storage
        self.by_request: dict[type[M.Request[Any]], Handler] = {
            M.ProduceRequest: self.produce, M.FetchRequest: self.fetch, M.ListOffsetsRequest: self.list_offsets,
            M.MetadataRequest: self.metadata, M.CreateTopicRequest: self.create_topic,
            M.DeleteTopicRequest: self.delete_topic, M.ConfigureTopicRequest: self.configure_topic,
            M.CommitOffsetsRequest: self.commit_offsets, M.FetchOffsetsRequest: self.fetch_offsets,
            M.JoinGroupRequest: self.join_group, M.HeartbeatRequest: self.heartbeat,
            M.LeaveGroupRequest: self.leave_group, M.ListGroupsRequest: self.list_groups, M.PingRequest: self.ping,
            M.PinSetRequest: self.pin_set, M.PinClearRequest: self.pin_clear, M.PinListRequest: self.pin_list,
            M.InitProducerIdRequest: self.init_producer_id,
        }

    # -- data ------------------------------------------------------------------------------

    def produce(self, identity: bytes, request_id: int, request: M.ProduceRequest,
                payloads: list[Any]) -> list[Any] | None:
        batch = payloads[0]
        view = batch.buffer if hasattr(batch, "buffer") else memoryview(batch)
        log, result = self._server.append_batch(request.topic, request.partition, view)
        if request.acks == P.ACKS_NONE:
            return None
        if request.acks == P.ACKS_DURABLE and not result.durable:
            if log.config.flush != "interval":
                log.flush()
            else:
                waiter = DurableWaiter(identity, request, request_id, result.last_offset + 1, result)
                self._server.durable_acks.add(waiter)
                return None
        return M.ok_reply(request_id, request, produce_reply(result, log.durable_offset))

    def fetch(self, identity: bytes, request_id: int, request: M.FetchRequest, payloads: list[Any]) -> None:
        self._server.fetches.handle(identity, request_id, request)

    def list_offsets(self, identity: bytes, request_id: int, request: M.ListOffsetsRequest,
                     payloads: list[Any]) -> list[Any]:
        log = self._storage.log(request.topic, request.partition)
        if request.spec == "earliest":
            offset, found = log.log_start_offset, True
        elif request.spec == "latest":
            offset, found = log.next_offset, True
        elif request.spec == "timestamp":
            if request.timestamp is None:
                raise InvalidRequestError("missing field 'timestamp'")
            found_offset = log.offset_for_time(request.timestamp)
            offset, found = (found_offset, True) if found_offset is not None else (log.next_offset, False)
        else:
            raise InvalidRequestError(f"spec must be earliest, latest or timestamp, not {request.spec!r}")
        return M.ok_reply(request_id, request, M.ListOffsetsReply(offset=offset, found=found))

    def metadata(self, identity: bytes, request_id: int, request: M.MetadataRequest, payloads: list[Any]) -> list[Any]:
        wanted, storage = request.topics, self._storage
        topics = {}
        for name, config in sorted(storage.topics().items()):
            if wanted is not None and name not in wanted:
                continue
            topics[name] = {
                "config": config.to_json_dict(),
                "id": storage.topic_id(name),
                "partitions": [
                    {"partition": log.partition, "log_start": log.log_start_offset, "next_offset": log.next_offset,
                     "log_epoch": storage.log_epochs(name, log.partition).current,
                     "durable_offset": log.durable_offset, "size_bytes": log.size_bytes,
                     "segments": len(log.segments), "protected_offset": log.protected_offset,
                     "future_records": log.future_records}
                    for log in storage.partition_logs(name)
                ],
            }
        if wanted:
            missing = [t for t in wanted if t not in topics]
            if missing:
                raise UnknownTopicError(f"unknown topic {missing[0]!r}")
        usage = os.statvfs(storage.data_dir)
        broker = {
            "endpoint": self._server.endpoint, "data_dir": str(storage.data_dir), "pid": os.getpid(),
            "disk_total_bytes": usage.f_blocks * usage.f_frsize, "disk_free_bytes": usage.f_bavail * usage.f_frsize,
            "deletions": storage.deletion_counts, "unshipped_deleted_bytes": storage.unshipped_deleted_bytes,
            "recovered_truncated_bytes": sum(r.truncated_bytes for r in storage.recovery_reports),
            "corrupt_batches": storage.corrupt_batch_count,
            "pins": len(storage.pins), "pinned_bytes": storage.total_pinned_bytes(),
            "pinned_deleted_bytes": storage.pinned_deleted_bytes,
            "time_ns": time.time_ns(),
            **self._server.stats_json(),
        }
        for extension in self._server.extensions:
            broker.update(extension.stats_fields())
        return M.ok_reply(request_id, request, M.MetadataReply(topics=topics, broker=broker))

    # -- topics ----------------------------------------------------------------------------

    def create_topic(self, identity: bytes, request_id: int, request: M.CreateTopicRequest,
                     payloads: list[Any]) -> list[Any]:
        config = self._topic_config_from(self._server.topic_config_for(request.topic), request.config)
        if request.if_not_exists and self._storage.has_topic(request.topic):
            return M.ok_reply(request_id, request, M.CreateTopicReply(created=False))
        self._server.create_topic(request.topic, config)
        return M.ok_reply(request_id, request, M.CreateTopicReply(created=True, config=config.to_json_dict()))

    @staticmethod
    def _topic_config_from(base: TopicConfig, overrides: dict[str, Any]) -> TopicConfig:
        try:
            return base.merged(overrides)
        except Exception as exc:  # pydantic ValidationError names the bad key
            raise InvalidConfigError(f"invalid topic config: {exc}") from None

    def delete_topic(self, identity: bytes, request_id: int, request: M.DeleteTopicRequest,
                     payloads: list[Any]) -> list[Any]:
        self._server.delete_topic(request.topic)
        return M.ok_reply(request_id, request, M.DeleteTopicReply(deleted=True))

    def configure_topic(self, identity: bytes, request_id: int, request: M.ConfigureTopicRequest,
                        payloads: list[Any]) -> list[Any]:
        config = self._server.configure_topic(request.topic, request.config)
        return M.ok_reply(request_id, request, M.ConfigureTopicReply(config=config.to_json_dict()))

    # -- groups ----------------------------------------------------------------------------

    def commit_offsets(self, identity: bytes, request_id: int, request: M.CommitOffsetsRequest,
                       payloads: list[Any]) -> list[Any]:
        offsets = {(topic, partition): offset for topic, partition, offset in request.offsets}
        self._server.commit_offsets(request.group, offsets)
        return M.ok_reply(request_id, request, M.CommitOffsetsReply(committed=len(offsets)))

    def fetch_offsets(self, identity: bytes, request_id: int, request: M.FetchOffsetsRequest,
                      payloads: list[Any]) -> list[Any]:
        wanted = None if request.partitions is None else list(request.partitions)
        offsets = self._server.groups.fetch(request.group, wanted)
        return M.ok_reply(request_id, request,
                          M.FetchOffsetsReply(offsets=tuple((t, p, o) for (t, p), o in sorted(offsets.items()))))

    def join_group(self, identity: bytes, request_id: int, request: M.JoinGroupRequest,
                   payloads: list[Any]) -> list[Any]:
        member_id, generation, assignment = self._server.groups.join(
            request.group, request.member_id, list(request.topics), request.session_timeout_ms / 1000)
        return M.ok_reply(request_id, request, M.JoinGroupReply(member_id=member_id, generation=generation,
                                                                assignment=tuple(assignment)))

    def heartbeat(self, identity: bytes, request_id: int, request: M.HeartbeatRequest,
                  payloads: list[Any]) -> list[Any]:
        rebalance, generation, assignment = self._server.groups.heartbeat(request.group, request.member_id,
                                                                          request.generation)
        return M.ok_reply(request_id, request, M.HeartbeatReply(rebalance=rebalance, generation=generation,
                                                                assignment=tuple(assignment)))

    def leave_group(self, identity: bytes, request_id: int, request: M.LeaveGroupRequest,
                    payloads: list[Any]) -> list[Any]:
        self._server.groups.leave(request.group, request.member_id)
        return M.ok_reply(request_id, request, M.LeaveGroupReply(left=True))

    def list_groups(self, identity: bytes, request_id: int, request: M.ListGroupsRequest,
                    payloads: list[Any]) -> list[Any]:
        return M.ok_reply(request_id, request, M.ListGroupsReply(groups=self._server.groups.describe()))

    # -- pins (events' pinned offset ranges, broker/storage/pins.py) ------------------------

    def pin_set(self, identity: bytes, request_id: int, request: M.PinSetRequest, payloads: list[Any]) -> list[Any]:
        pin = self._storage.set_pin(request.id, request.label, list(request.topics), request.start_ns, request.end_ns)
        return M.ok_reply(request_id, request, M.PinSetReply(pin=pin.to_json()))

    def pin_clear(self, identity: bytes, request_id: int, request: M.PinClearRequest,
                  payloads: list[Any]) -> list[Any]:
        self._storage.clear_pin(request.id)
        return M.ok_reply(request_id, request, M.PinClearReply(cleared=True))

    def pin_list(self, identity: bytes, request_id: int, request: M.PinListRequest, payloads: list[Any]) -> list[Any]:
        """Every pin with what the mirror has shipped of it."""
        report = self._storage.pins_report()
        committed = self._server.mirror_committed()
        for body in report["pins"]:
            pin = self._storage.pins.get(body["id"])
            if pin is not None:  # the report lists the pins there are
                body.update(shipped_progress(pin, committed))
        return M.ok_reply(request_id, request, M.PinListReply(
            pins=report["pins"], pinned_bytes=report["pinned_bytes"],
            pinned_deleted_bytes=report["pinned_deleted_bytes"], time_ns=time.time_ns()))

    # -- the rest --------------------------------------------------------------------------

    def init_producer_id(self, identity: bytes, request_id: int, request: M.InitProducerIdRequest,
                         payloads: list[Any]) -> list[Any]:
        # Kafka's InitProducerId for an idempotent (non-transactional) producer: a new id, epoch 0
        return M.ok_reply(request_id, request, M.InitProducerIdReply(
            producer_id=self._storage.producer_ids.allocate(), producer_epoch=0))

    def ping(self, identity: bytes, request_id: int, request: M.PingRequest, payloads: list[Any]) -> list[Any]:
        return M.ok_reply(request_id, request, M.PingReply(time_ns=time.time_ns(), version=P.VERSION))
