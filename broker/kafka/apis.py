"""The Kafka APIs this listener serves, at which versions, and by which handler.

``SUPPORTED`` is what ApiVersions advertises (docs/PROTOCOL.md shows the same table). A
request for an API or version outside it is answered with UNSUPPORTED_VERSION (ApiVersions:
the v0 answer with this table, as Kafka does, so the client can pick a version).
Produce lists v0 (librdkafka turns compression off otherwise, KAFKA-18659); kio has no
schema below v3, so a v0-2 request closes its connection with a log line.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeAlias

from . import handlers_data as data
from . import handlers_groups as groups
from . import handlers_topics as topics
from .codec import RequestBody, ResponseValues

if TYPE_CHECKING:
    from .broker import KafkaBroker
    from .listener import Call

API_VERSIONS = 18

# (broker, body, version) -> the answer's values
AnswerNow: TypeAlias = "Callable[[KafkaBroker, RequestBody, int], ResponseValues]"
# (broker, call): answers through the call, now or later (parked)
AnswerLater: TypeAlias = "Callable[[KafkaBroker, Call], None]"


@dataclass(frozen=True)
class Api:
    key: int
    name: str
    min_version: int
    max_version: int
    answer: AnswerNow | None = None  # neither handler: answered by the listener itself
    answer_later: AnswerLater | None = None  # takes the Call and may answer later


APIS: dict[int, Api] = {api.key: api for api in [
    Api(18, "ApiVersions", 0, 3),
    Api(17, "SaslHandshake", 1, 1),  # answered by the listener (connection state)
    Api(36, "SaslAuthenticate", 0, 2),
    Api(0, "Produce", 0, 9, answer_later=data.produce),  # v0 listed for librdkafka (KAFKA-18659); kio starts at v3
    Api(1, "Fetch", 4, 12, answer_later=data.fetch),
    Api(3, "Metadata", 1, 12, topics.metadata),
    Api(2, "ListOffsets", 1, 7, topics.list_offsets),
    Api(10, "FindCoordinator", 0, 4, groups.find_coordinator),
    Api(11, "JoinGroup", 0, 9, answer_later=groups.join_group),
    Api(14, "SyncGroup", 0, 5, answer_later=groups.sync_group),
    Api(12, "Heartbeat", 0, 4, groups.heartbeat),
    Api(13, "LeaveGroup", 0, 5, groups.leave_group),
    Api(8, "OffsetCommit", 2, 9, groups.offset_commit),
    Api(9, "OffsetFetch", 1, 9, groups.offset_fetch),
    Api(15, "DescribeGroups", 0, 5, groups.describe_groups),
    Api(16, "ListGroups", 0, 5, groups.list_groups),
    Api(19, "CreateTopics", 2, 7, topics.create_topics),
    Api(20, "DeleteTopics", 1, 6, topics.delete_topics),
    Api(32, "DescribeConfigs", 1, 4, topics.describe_configs),
    Api(44, "IncrementalAlterConfigs", 0, 1, topics.incremental_alter_configs),
    Api(22, "InitProducerId", 0, 5, topics.init_producer_id),
    Api(23, "OffsetForLeaderEpoch", 2, 4, topics.offset_for_leader_epoch),
]}

SUPPORTED: dict[int, tuple[int, int]] = {a.key: (a.min_version, a.max_version) for a in APIS.values()}


def api_versions_values(error_code: int = 0) -> dict[str, object]:
    return {"error_code": error_code,
            "api_keys": [{"api_key": a.key, "min_version": a.min_version, "max_version": a.max_version}
                         for a in sorted(APIS.values(), key=lambda a: a.key)]}
