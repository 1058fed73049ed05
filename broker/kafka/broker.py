"""What the Kafka handlers see of the broker: one storage engine, one offset store, the Kafka
group membership, producer ids, and how this broker presents itself (node 0 of a cluster
of one, at the advertised address).

All state belongs to the BrokerServer's event loop (broker/server.py); the Kafka listener
runs in that loop, so native and Kafka requests never race. Topic creation and deletion,
and offset commits, go through the BrokerServer so that its side effects (mirror
protection, parked fetches, group offsets of deleted topics) apply to both protocols.
"""

from __future__ import annotations

import base64
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from .groups import KafkaGroupCoordinator

if TYPE_CHECKING:
    from ..server import BrokerServer
    from ..topic_config import TopicConfig
    from .listener import Call

NODE_ID = 0
MAX_PRODUCER_EPOCH = 32767
# Kafka's socket.request.max.bytes default: a request frame above this closes the connection
DEFAULT_MAX_REQUEST_BYTES = 100 * 1024 * 1024
_CLUSTER_ID_NAMESPACE = uuid.UUID("5d1c6f55-6a0f-4c8e-9f53-0b8f4d1e2a77")


@dataclass
class ParkedFetch:
    deadline: float
    call: Call
    partitions: set[tuple[str, int]]


class KafkaBroker:
    def __init__(self, server: BrokerServer, advertised_host: str, advertised_port: int, *,
                 max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES):
        self.server = server
        self.storage = server.storage
        self.native_groups = server.groups
        self.kafka_groups = KafkaGroupCoordinator()
        self.node_id = NODE_ID
        self.advertised_host = advertised_host
        self.advertised_port = advertised_port
        self.max_request_bytes = max_request_bytes
        data_id = uuid.uuid5(_CLUSTER_ID_NAMESPACE, str(Path(server.storage.data_dir).resolve()))
        self.cluster_id = base64.urlsafe_b64encode(data_id.bytes).decode().rstrip("=")
        self.parked_fetches: list[ParkedFetch] = []

    # -- parked fetches -------------------------------------------------------------------

    def park_fetch(self, call: Call, wait_s: float, partitions: set[tuple[str, int]]) -> None:
        self.parked_fetches.append(ParkedFetch(time.monotonic() + wait_s, call, partitions))

    def wake_fetches(self, topic: str, partition: int | None = None, now: float | None = None) -> None:
        """Answer parked fetches on (topic, partition) (all of the topic when None), and
        any whose wait is over at ``now``."""
        from .handlers_data import read_fetch

        keep: list[ParkedFetch] = []
        for parked in self.parked_fetches:
            due = now is not None and parked.deadline <= now
            touched = any(t == topic and (partition is None or p == partition) for t, p in parked.partitions)
            if due or touched:
                parked.call.respond_fetch(read_fetch(self, parked.call.body)[0])
            else:
                keep.append(parked)
        self.parked_fetches = keep

    def next_fetch_deadline(self) -> float | None:
        return min((p.deadline for p in self.parked_fetches), default=None)

    @property
    def auto_create_topics(self) -> bool:
        return self.server.auto_create_topics

    def topic_config_for(self, name: str) -> TopicConfig:
        return self.server.topic_config_for(name)

    # -- topics ---------------------------------------------------------------------------

    def topic_id(self, name: str) -> uuid.UUID:
        """The topic's id from the storage engine (a new one when a topic is re-created), as
        the UUID Kafka clients expect."""
        return uuid.UUID(hex=self.storage.topic_id(name))

    def topic_name(self, topic_id: uuid.UUID | None) -> str | None:
        if topic_id is None:
            return None
        return next((name for name in self.storage.topics() if self.topic_id(name) == topic_id), None)

    def create_topic(self, name: str, config: TopicConfig) -> None:
        self.server.create_topic(name, config)

    def init_producer(self, producer_id: int, epoch: int) -> tuple[int, int]:
        """(producer id, epoch) for InitProducerId: a known (id, epoch) gets the next epoch
        (KIP-360), else a new id from the storage's allocator, the one id space the native
        producers use too (ids never repeat, across restarts included)."""
        if producer_id >= 0 and 0 <= epoch < MAX_PRODUCER_EPOCH:
            return producer_id, epoch + 1
        return self.storage.producer_ids.allocate(), 0

    def delete_topic(self, name: str) -> None:
        self.server.delete_topic(name)
        self.wake_fetches(name)  # parked fetches on it answer UNKNOWN_TOPIC_OR_PARTITION

    def commit_offsets(self, group: str, offsets: dict[tuple[str, int], int],
                       metadata: dict[tuple[str, int], str] | None = None) -> None:
        self.server.commit_offsets(group, offsets, metadata)

    def broker_configs(self) -> dict[str, tuple[str, int]]:
        """Broker-level configs shown by DescribeConfigs: name -> (value, Kafka config type)."""
        return {
            "auto.create.topics.enable": (str(self.auto_create_topics).lower(), 1),
            "socket.request.max.bytes": (str(self.max_request_bytes), 3),
            "num.partitions": (str(self.storage.defaults.partitions), 3),
            "broker.id": (str(self.node_id), 3),
        }
