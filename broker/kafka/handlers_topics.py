"""Kafka control-plane handlers for topics: Metadata, CreateTopics, DeleteTopics,
DescribeConfigs, IncrementalAlterConfigs, ListOffsets, OffsetForLeaderEpoch, InitProducerId.

Each handler takes the ``KafkaBroker`` (broker/kafka/broker.py) and the decoded request body
(any supported version; fields a version lacks are read with defaults) and returns plain
values that ``codec.build`` turns into the response of the request's version.

This broker is a cluster of one: node 0 leads every partition, with a replica set of [0].
The leader epoch of a partition is its storage log epoch (broker/storage/log_epochs.py,
bumped at every unclean open, stamped into every batch appended under it), so Kafka
clients detect truncation by recovery as KIP-320 consumers do (OffsetForLeaderEpoch).
"""

from __future__ import annotations

import logging
import uuid
from typing import TYPE_CHECKING

from ..errors import BrokerError
from ..logs import log_event
from .codec import RequestBody, ResponseValues, millis
from .errors import (
    FENCED_LEADER_EPOCH,
    INVALID_CONFIG,
    INVALID_PARTITIONS,
    INVALID_REPLICATION_FACTOR,
    INVALID_REQUEST,
    NONE,
    UNKNOWN_LEADER_EPOCH,
    UNKNOWN_TOPIC_ID,
    UNKNOWN_TOPIC_OR_PARTITION,
    UNSUPPORTED_VERSION,
    code_for,
)
from .topic_configs import ConfigValueError, kafka_view, overrides_from_kafka, topic_config_with

if TYPE_CHECKING:  # the broker imports these handlers
    from ..storage.partition_log import PartitionLog
    from ..topic_config import TopicConfig
    from .broker import KafkaBroker

logger = logging.getLogger("broker.kafka")

EARLIEST, LATEST, MAX_TIMESTAMP = -2, -1, -3
RESOURCE_TOPIC, RESOURCE_BROKER = 2, 4
SOURCE_DYNAMIC_TOPIC, SOURCE_STATIC_BROKER, SOURCE_DEFAULT = 1, 4, 5
TYPE_STRING, TYPE_INT, TYPE_LONG, TYPE_LIST, TYPE_BOOLEAN = 2, 3, 5, 7, 1
OP_SET, OP_DELETE = 0, 1
_CONFIG_TYPES = {"retention.ms": TYPE_LONG, "retention.bytes": TYPE_LONG, "segment.bytes": TYPE_INT,
                 "segment.ms": TYPE_LONG, "max.message.bytes": TYPE_INT, "cleanup.policy": TYPE_LIST}
_READ_ONLY = {"message.timestamp.type", "cleanup.policy"}


# -- metadata ---------------------------------------------------------------------------------


def _partitions(broker: KafkaBroker, name: str) -> list[dict[str, object]]:
    return [{"error_code": NONE, "partition_index": p, "leader_id": broker.node_id,
             "leader_epoch": broker.storage.log_epochs(name, p).current,
             "replica_nodes": [broker.node_id], "isr_nodes": [broker.node_id], "offline_replicas": []}
            for p in range(broker.storage.topic_config(name).partitions)]


def _topic_entry(broker: KafkaBroker, name: str) -> dict[str, object]:
    return {"error_code": NONE, "name": name, "topic_id": broker.topic_id(name), "is_internal": False,
            "partitions": _partitions(broker, name)}


def metadata(broker: KafkaBroker, body: RequestBody, version: int) -> ResponseValues:
    wanted = getattr(body, "topics", None)
    if wanted is None:
        entries = [_topic_entry(broker, name) for name in sorted(broker.storage.topics())]
    else:
        auto = getattr(body, "allow_auto_topic_creation", True)
        entries = []
        for topic in wanted:
            name = topic.name
            if name is None:
                name = broker.topic_name(getattr(topic, "topic_id", None))
                if name is None:
                    entries.append({"error_code": UNKNOWN_TOPIC_ID, "name": None,
                                    "topic_id": getattr(topic, "topic_id", None), "partitions": []})
                    continue
            entries.append(_metadata_for_name(broker, name, auto))
    return {"brokers": [{"node_id": broker.node_id, "host": broker.advertised_host, "port": broker.advertised_port}],
            "cluster_id": broker.cluster_id, "controller_id": broker.node_id, "topics": entries}


def _metadata_for_name(broker: KafkaBroker, name: str, auto: bool) -> dict[str, object]:
    if not broker.storage.has_topic(name):
        try:
            if not (auto and broker.auto_create_topics):
                return {"error_code": UNKNOWN_TOPIC_OR_PARTITION, "name": name, "topic_id": None, "partitions": []}
            broker.create_topic(name, broker.topic_config_for(name))
        except BrokerError as exc:
            return {"error_code": code_for(exc), "name": name, "topic_id": None, "partitions": []}
    return _topic_entry(broker, name)


# -- create / delete --------------------------------------------------------------------------


def create_topics(broker: KafkaBroker, body: RequestBody, version: int) -> ResponseValues:
    validate_only = getattr(body, "validate_only", False)
    results: list[dict[str, object]] = []
    for topic in body.topics:
        result: dict[str, object] = {"name": topic.name, "error_code": NONE, "error_message": None,
                                     "topic_config_error_code": 0}
        try:
            config = _config_for_new_topic(broker, topic)
            if broker.storage.has_topic(topic.name):
                raise _Refused(36, f"Topic '{topic.name}' already exists.")
            if not validate_only:
                broker.create_topic(topic.name, config)
            result.update(topic_id=broker.topic_id(topic.name) if not validate_only else None,
                          num_partitions=config.partitions,
                          replication_factor=1,
                          configs=[{"name": k, "value": v, "read_only": k in _READ_ONLY,
                                    "config_source": SOURCE_DEFAULT, "is_sensitive": False}
                                   for k, v in kafka_view(config).items()])
        except _Refused as exc:
            result.update(error_code=exc.code, error_message=exc.message)
        except BrokerError as exc:
            result.update(error_code=code_for(exc), error_message=exc.message)
        results.append(result)
    return {"topics": results}


class _Refused(Exception):
    def __init__(self, code: int, message: str):
        super().__init__(message)
        self.code, self.message = code, message


def _config_for_new_topic(broker: KafkaBroker, topic: RequestBody) -> TopicConfig:
    if topic.replication_factor not in (-1, 1):
        raise _Refused(INVALID_REPLICATION_FACTOR,
                       f"replication factor {topic.replication_factor}: this broker is a cluster of one (use 1 or -1)")
    if topic.assignments:
        raise _Refused(INVALID_REQUEST, "manual replica assignments are not supported")
    base = broker.topic_config_for(topic.name)
    try:
        overrides = overrides_from_kafka({c.name: c.value for c in topic.configs}, base)
        if topic.num_partitions != -1:
            if not 1 <= topic.num_partitions <= 1024:
                raise _Refused(INVALID_PARTITIONS, f"num_partitions must be 1..1024, not {topic.num_partitions}")
            overrides["partitions"] = topic.num_partitions
        return topic_config_with(base, overrides)
    except ConfigValueError as exc:
        raise _Refused(INVALID_CONFIG, str(exc)) from None


def delete_topics(broker: KafkaBroker, body: RequestBody, version: int) -> ResponseValues:
    wanted: list[tuple[str | None, uuid.UUID | None]]
    if hasattr(body, "topic_names"):
        wanted = [(name, None) for name in body.topic_names]
    else:
        wanted = [(t.name, t.topic_id) for t in body.topics]
    responses: list[dict[str, object]] = []
    for asked, topic_id in wanted:
        name = asked if asked is not None else broker.topic_name(topic_id)
        if name is None:
            responses.append({"name": None, "topic_id": topic_id, "error_code": UNKNOWN_TOPIC_ID,
                              "error_message": f"no topic with id {topic_id}"})
            continue
        entry: dict[str, object] = {"name": name, "topic_id": None, "error_code": NONE, "error_message": None}
        try:
            entry["topic_id"] = broker.topic_id(name)
            broker.delete_topic(name)
        except BrokerError as exc:
            entry.update(error_code=code_for(exc), error_message=exc.message)
        responses.append(entry)
    return {"responses": responses}


# -- configs ----------------------------------------------------------------------------------


def describe_configs(broker: KafkaBroker, body: RequestBody, version: int) -> ResponseValues:
    results: list[dict[str, object]] = []
    for resource in body.resources:
        keys = resource.configuration_keys
        result: dict[str, object] = {"error_code": NONE, "error_message": None, "resource_type": resource.resource_type,
                  "resource_name": resource.resource_name, "configs": []}
        if resource.resource_type == RESOURCE_TOPIC:
            if not broker.storage.has_topic(resource.resource_name):
                result.update(error_code=UNKNOWN_TOPIC_OR_PARTITION,
                              error_message=f"unknown topic {resource.resource_name!r}")
            else:
                current = kafka_view(broker.storage.topic_config(resource.resource_name))
                default = kafka_view(broker.topic_config_for(resource.resource_name))
                result["configs"] = [
                    {"name": name, "value": value, "read_only": name in _READ_ONLY, "is_sensitive": False,
                     "config_source": SOURCE_DEFAULT if value == default[name] else SOURCE_DYNAMIC_TOPIC,
                     "config_type": _CONFIG_TYPES.get(name, TYPE_STRING), "synonyms": []}
                    for name, value in current.items() if keys is None or name in keys]
        elif resource.resource_type == RESOURCE_BROKER:
            result["configs"] = [
                {"name": name, "value": value, "read_only": True, "is_sensitive": False,
                 "config_source": SOURCE_STATIC_BROKER, "config_type": kind, "synonyms": []}
                for name, (value, kind) in broker.broker_configs().items() if keys is None or name in keys]
        else:
            result.update(error_code=INVALID_REQUEST,
                          error_message=f"resource type {resource.resource_type} is not supported")
        results.append(result)
    return {"results": results}


def incremental_alter_configs(broker: KafkaBroker, body: RequestBody, version: int) -> ResponseValues:
    responses: list[dict[str, object]] = []
    for resource in body.resources:
        entry: dict[str, object] = {"error_code": NONE, "error_message": None, "resource_type": resource.resource_type,
                 "resource_name": resource.resource_name}
        name = resource.resource_name
        try:
            if resource.resource_type != RESOURCE_TOPIC:
                raise _Refused(INVALID_REQUEST, "only topic configs can be altered")
            if not broker.storage.has_topic(name):
                raise _Refused(UNKNOWN_TOPIC_OR_PARTITION, f"unknown topic {name!r}")
            changes: dict[str, str | None] = {}
            for config in resource.configs:
                if config.config_operation not in (OP_SET, OP_DELETE):
                    raise _Refused(INVALID_REQUEST, f"{config.name}: APPEND/SUBTRACT apply to list configs only")
                changes[config.name] = config.value if config.config_operation == OP_SET else None
            overrides = overrides_from_kafka(changes, broker.topic_config_for(name))
            topic_config_with(broker.storage.topic_config(name), overrides)  # validates everything first
            if not getattr(body, "validate_only", False) and overrides:
                broker.storage.configure_topic(name, overrides)
        except _Refused as exc:
            entry.update(error_code=exc.code, error_message=exc.message)
        except ConfigValueError as exc:
            entry.update(error_code=INVALID_CONFIG, error_message=str(exc))
        except BrokerError as exc:
            entry.update(error_code=code_for(exc), error_message=exc.message)
        responses.append(entry)
    return {"responses": responses}


# -- offsets ----------------------------------------------------------------------------------


def list_offsets(broker: KafkaBroker, body: RequestBody, version: int) -> ResponseValues:
    topics: list[dict[str, object]] = []
    for topic in body.topics:
        parts: list[dict[str, object]] = []
        for part in topic.partitions:
            entry: dict[str, object] = {"partition_index": part.partition_index, "error_code": NONE,
                                        "timestamp": -1, "offset": -1, "leader_epoch": -1}
            try:
                log = broker.storage.log(topic.name, part.partition_index)
                found = _list_offset(log, millis(part.timestamp))
                entry.update(found)
                epochs = broker.storage.log_epochs(topic.name, part.partition_index)
                offset = found.get("offset", -1)
                # the epoch of the record found (Kafka); the log end belongs to the current epoch
                entry["leader_epoch"] = -1 if offset < 0 else (
                    epochs.current if offset >= log.next_offset else epochs.epoch_at(offset))
            except BrokerError as exc:
                entry["error_code"] = code_for(exc)
            parts.append(entry)
        topics.append({"name": topic.name, "partitions": parts})
    return {"topics": topics}


def _list_offset(log: PartitionLog, timestamp_ms: int) -> dict[str, int]:
    if timestamp_ms == EARLIEST:
        return {"offset": log.log_start_offset}
    if timestamp_ms == LATEST:
        return {"offset": log.next_offset}
    if timestamp_ms == MAX_TIMESTAMP:
        last = log.next_offset - 1
        return {"offset": last, "timestamp": -1} if last >= log.log_start_offset else {}
    if timestamp_ms < 0:
        return {"error_code": UNSUPPORTED_VERSION}
    found = log.record_at_time(timestamp_ms * 1_000_000)
    if found is None:
        return {}  # no record at or after that time: offset -1, timestamp -1, as Kafka
    offset, record_ns = found
    return {"offset": offset, "timestamp": record_ns // 1_000_000}  # the found record's time, as Kafka


def offset_for_leader_epoch(broker: KafkaBroker, body: RequestBody, version: int) -> ResponseValues:
    topics: list[dict[str, object]] = []
    for topic in body.topics:
        parts: list[dict[str, object]] = []
        for part in topic.partitions:
            entry: dict[str, object] = {"partition": part.partition, "error_code": NONE, "leader_epoch": -1,
                                        "end_offset": -1}
            try:
                log = broker.storage.log(topic.topic, part.partition)
                epochs = broker.storage.log_epochs(topic.topic, part.partition)
                entry["error_code"] = check_current_epoch(getattr(part, "current_leader_epoch", -1), epochs.current)
                found = epochs.floor(part.leader_epoch) if entry["error_code"] == NONE else None
                if found is not None:  # Kafka: the largest epoch <= the one asked, and where it ended
                    entry.update(leader_epoch=found, end_offset=epochs.end_offset(found, log.next_offset))
            except BrokerError as exc:
                entry["error_code"] = code_for(exc)
            parts.append(entry)
        topics.append({"topic": topic.topic, "partitions": parts})
    return {"topics": topics}


def check_current_epoch(client_epoch: int, current: int) -> int:
    """Kafka's check of a request's current_leader_epoch (-1: not given): an older one is
    FENCED_LEADER_EPOCH (the client refreshes metadata), a newer one UNKNOWN_LEADER_EPOCH."""
    if client_epoch < 0 or client_epoch == current:
        return NONE
    return FENCED_LEADER_EPOCH if client_epoch < current else UNKNOWN_LEADER_EPOCH


def init_producer_id(broker: KafkaBroker, body: RequestBody, version: int) -> ResponseValues:
    if body.transactional_id is not None:
        log_event(logger, logging.WARNING, "kafka_transactions_refused", transactional_id=body.transactional_id)
        return {"error_code": UNSUPPORTED_VERSION, "producer_id": -1, "producer_epoch": -1}
    producer_id, epoch = broker.init_producer(getattr(body, "producer_id", -1), getattr(body, "producer_epoch", -1))
    return {"error_code": NONE, "producer_id": producer_id, "producer_epoch": epoch}

