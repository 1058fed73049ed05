"""Kafka control-plane handlers for consumer groups: FindCoordinator, JoinGroup, SyncGroup,
Heartbeat, LeaveGroup, OffsetCommit, OffsetFetch, DescribeGroups, ListGroups.

Membership of Kafka-protocol groups lives in ``KafkaGroupCoordinator`` (broker/kafka/groups.py);
committed offsets live in the broker's one offset store (broker/groups.py), so a group
committed through Kafka is resumed by ``edge consume --group`` and the other way round.
Native groups show in ListGroups / DescribeGroups with protocol type ``edge``.

Synchronous handlers take (broker, body, version) and return the response values;
``join_group`` and ``sync_group`` take a ``Call`` and answer through ``call.respond`` (now or
when the rebalance completes).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..groups import GroupDescription
from .codec import RequestBody, ResponseValues, millis
from .errors import (
    COORDINATOR_NOT_AVAILABLE,
    INVALID_GROUP_ID,
    INVALID_REQUEST,
    NONE,
    OFFSET_METADATA_TOO_LARGE,
    UNKNOWN_TOPIC_OR_PARTITION,
)
from .groups import KafkaGroupCoordinator

if TYPE_CHECKING:  # the listener and the broker import these handlers
    from .broker import KafkaBroker
    from .listener import Call

NATIVE_PROTOCOL_TYPE = "edge"
MAX_OFFSET_METADATA_BYTES = 4096  # Kafka's offset.metadata.max.bytes default
KEY_TYPE_GROUP = 0


def find_coordinator(broker: KafkaBroker, body: RequestBody, version: int) -> ResponseValues:
    keys = list(getattr(body, "coordinator_keys", ()) or ())
    single = hasattr(body, "key")
    if single:
        keys = [body.key]
    key_type = getattr(body, "key_type", KEY_TYPE_GROUP)
    coordinators: list[dict[str, object]] = []
    for key in keys:
        if key_type != KEY_TYPE_GROUP:  # transactions are not served
            coordinators.append({"key": key, "error_code": COORDINATOR_NOT_AVAILABLE, "node_id": -1, "host": "",
                                 "port": -1, "error_message": "this broker has no transaction coordinator"})
        else:
            coordinators.append({"key": key, "error_code": NONE, "error_message": None, "node_id": broker.node_id,
                                 "host": broker.advertised_host, "port": broker.advertised_port})
    if single:
        return coordinators[0]
    return {"coordinators": coordinators}


# -- membership (answers may be parked) -----------------------------------------------------


def join_group(broker: KafkaBroker, call: Call) -> None:
    body = call.body
    session_ms = millis(body.session_timeout)
    rebalance_ms = millis(getattr(body, "rebalance_timeout", body.session_timeout))

    def respond(values: ResponseValues) -> None:
        if values.get("error_code", NONE) != NONE:
            values = {"generation_id": -1, "leader": "", "protocol_name": None, **values}
        call.respond(values)

    broker.kafka_groups.join(
        body.group_id, body.member_id, group_instance_id=getattr(body, "group_instance_id", None),
        client_id=call.client_id or "", client_host=call.client_host, session_timeout_ms=session_ms,
        rebalance_timeout_ms=rebalance_ms, protocol_type=body.protocol_type,
        protocols=[(p.name, bytes(p.metadata)) for p in body.protocols], respond=respond)


def sync_group(broker: KafkaBroker, call: Call) -> None:
    body = call.body
    assignments = {a.member_id: bytes(a.assignment) for a in body.assignments}
    broker.kafka_groups.sync(body.group_id, body.member_id, body.generation_id, assignments, call.respond)


def heartbeat(broker: KafkaBroker, body: RequestBody, version: int) -> ResponseValues:
    return {"error_code": broker.kafka_groups.heartbeat(body.group_id, body.member_id, body.generation_id)}


def leave_group(broker: KafkaBroker, body: RequestBody, version: int) -> ResponseValues:
    if hasattr(body, "members"):
        ids = [m.member_id for m in body.members]
        codes = broker.kafka_groups.leave(body.group_id, ids)
        return {"error_code": NONE, "members": [
            {"member_id": m.member_id, "group_instance_id": m.group_instance_id, "error_code": code}
            for m, code in zip(body.members, codes, strict=True)]}
    return {"error_code": broker.kafka_groups.leave(body.group_id, [body.member_id])[0]}


# -- offsets --------------------------------------------------------------------------------


def offset_commit(broker: KafkaBroker, body: RequestBody, version: int) -> ResponseValues:
    generation = getattr(body, "generation_id_or_member_epoch", getattr(body, "generation_id", -1))
    if not KafkaGroupCoordinator.valid_name(body.group_id):
        error = INVALID_GROUP_ID
    else:
        error = broker.kafka_groups.check_commit(body.group_id, body.member_id, generation)
    offsets: dict[tuple[str, int], int] = {}
    metadata: dict[tuple[str, int], str] = {}
    topics: list[dict[str, object]] = []
    for topic in body.topics:
        parts: list[dict[str, object]] = []
        for part in topic.partitions:
            code = error
            if not code:
                if not (broker.storage.has_topic(topic.name)
                        and 0 <= part.partition_index < broker.storage.topic_config(topic.name).partitions):
                    code = UNKNOWN_TOPIC_OR_PARTITION
                elif part.committed_offset < 0:
                    code = INVALID_REQUEST
                elif len((part.committed_metadata or "").encode()) > MAX_OFFSET_METADATA_BYTES:
                    code = OFFSET_METADATA_TOO_LARGE
                else:
                    offsets[(topic.name, part.partition_index)] = part.committed_offset
                    metadata[(topic.name, part.partition_index)] = part.committed_metadata or ""
            parts.append({"partition_index": part.partition_index, "error_code": code})
        topics.append({"name": topic.name, "partitions": parts})
    if offsets:
        broker.commit_offsets(body.group_id, offsets, metadata)
    return {"topics": topics}


def _fetch_group_offsets(broker: KafkaBroker, group_id: str,
                         topics: RequestBody | None) -> tuple[int, list[dict[str, object]]]:
    if not KafkaGroupCoordinator.valid_name(group_id):
        return INVALID_GROUP_ID, []
    if topics is None:
        committed = broker.native_groups.fetch(group_id)
        wanted: dict[str, list[int]] = {}
        for topic, partition in sorted(committed):
            wanted.setdefault(topic, []).append(partition)
    else:
        wanted = {t.name: list(t.partition_indexes) for t in topics}
        committed = broker.native_groups.fetch(group_id, [(t, p) for t, ps in wanted.items() for p in ps])
    metadata = broker.native_groups.fetch_metadata(group_id, list(committed))
    out: list[dict[str, object]] = []
    for topic, partitions in wanted.items():
        out.append({"name": topic, "partitions": [
            {"partition_index": p, "committed_offset": committed.get((topic, p), -1), "committed_leader_epoch": -1,
             "metadata": metadata.get((topic, p), ""), "error_code": NONE} for p in partitions]})
    return NONE, out


def offset_fetch(broker: KafkaBroker, body: RequestBody, version: int) -> ResponseValues:
    if hasattr(body, "groups"):
        groups: list[dict[str, object]] = []
        for group in body.groups:
            error, topics = _fetch_group_offsets(broker, group.group_id, group.topics)
            groups.append({"group_id": group.group_id, "topics": topics, "error_code": error})
        return {"groups": groups}
    error, topics = _fetch_group_offsets(broker, body.group_id, body.topics)
    return {"topics": topics, "error_code": error}


# -- listing ----------------------------------------------------------------------------------


def _native_state(info: GroupDescription) -> str:
    return "Stable" if info["members"] else "Empty"


def describe_groups(broker: KafkaBroker, body: RequestBody, version: int) -> ResponseValues:
    native = broker.native_groups.describe()
    groups: list[dict[str, object]] = []
    for group_id in body.groups:
        entry: dict[str, object] = {"error_code": NONE, "group_id": group_id, "group_state": "Dead",
                                    "protocol_type": "", "protocol_data": "", "members": []}
        described = broker.kafka_groups.describe(group_id)
        if described is not None and (described["members"] or group_id not in native):
            entry.update(described)
        elif group_id in native:
            info = native[group_id]
            entry.update(group_state=_native_state(info),
                         protocol_type=NATIVE_PROTOCOL_TYPE if info["members"] else "",
                         members=[{"member_id": m, "group_instance_id": None, "client_id": NATIVE_PROTOCOL_TYPE,
                                   "client_host": "", "member_metadata": b"", "member_assignment": b""}
                                  for m in info["members"]])
        elif not KafkaGroupCoordinator.valid_name(group_id):
            entry["error_code"] = INVALID_GROUP_ID
        groups.append(entry)
    return {"groups": groups}


def list_groups(broker: KafkaBroker, body: RequestBody, version: int) -> ResponseValues:
    states = set(getattr(body, "states_filter", ()) or ())
    types = {t.lower() for t in (getattr(body, "types_filter", ()) or ())}
    found: dict[str, dict[str, object]] = {}
    for group_id, info in broker.native_groups.describe().items():
        found[group_id] = {"group_id": group_id, "protocol_type": NATIVE_PROTOCOL_TYPE if info["members"] else "",
                           "group_state": _native_state(info), "group_type": "classic"}
    for group_id in broker.kafka_groups.groups:
        described = broker.kafka_groups.describe(group_id)
        if described is None:  # not reached: these are the coordinator's own groups
            continue
        if described["members"] or group_id not in found:
            found[group_id] = {"group_id": group_id, "protocol_type": described["protocol_type"],
                               "group_state": described["group_state"], "group_type": "classic"}
    groups = [g for _, g in sorted(found.items())
              if (not states or g["group_state"] in states) and (not types or g["group_type"] in types)]
    return {"error_code": NONE, "groups": groups}

