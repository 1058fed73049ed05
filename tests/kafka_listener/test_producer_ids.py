"""InitProducerId: ids come from the storage's allocator, the id space native producers use
too (two protocols must never share an id, or they would share sequence state); a known
(id, epoch) gets the next epoch; transactional ids are refused. OffsetForLeaderEpoch answers
the log end at the fixed epoch 0."""

from __future__ import annotations

import socket
import struct
from datetime import timedelta

from kio.schema.errors import ErrorCode
from kio.schema.fetch.v11.request import FetchPartition, FetchRequest, FetchTopic
from kio.schema.fetch.v11.response import FetchResponse
from kio.schema.init_producer_id.v4.request import InitProducerIdRequest
from kio.schema.init_producer_id.v4.response import InitProducerIdResponse
from kio.schema.offset_for_leader_epoch.v4.request import (
    OffsetForLeaderEpochRequest,
    OffsetForLeaderPartition,
    OffsetForLeaderTopic,
)
from kio.schema.offset_for_leader_epoch.v4.response import OffsetForLeaderEpochResponse

from broker.client import Admin, Producer

from .conftest import decode_response, encode_request, read_frame

PRODUCER_ID_AT = 43  # RecordBatch v2: producerId i64


def _stored_producer_id(sock, topic: str) -> int:
    ask = FetchRequest(replica_id=-1, max_wait=timedelta(0), min_bytes=1, max_bytes=1 << 20, isolation_level=0,
                       session_id=0, session_epoch=-1, topics=(FetchTopic(topic=topic, partitions=(FetchPartition(
                           partition=0, current_leader_epoch=-1, fetch_offset=0, log_start_offset=-1,
                           partition_max_bytes=1 << 20),)),), forgotten_topics_data=(), rack_id="")
    records = _call(sock, 1, 11, 99, ask, FetchResponse).responses[0].partitions[0].records
    return struct.unpack_from(">q", records, PRODUCER_ID_AT)[0]


def _call(sock, api_key, version, corr, body, response_type):
    sock.sendall(encode_request(api_key, version, corr, body))
    return decode_response(read_frame(sock), response_type)[1]


def test_init_producer_id_and_offset_for_leader_epoch_on_the_wire(kafka_broker):
    with Admin(kafka_broker.endpoint) as native:
        native.create_topic("pid.t", partitions=1)
    with Producer(kafka_broker.endpoint) as producer:
        for _ in range(3):
            producer.send("pid.t", b"x", partition=0)
        producer.flush()
    with socket.create_connection(("127.0.0.1", kafka_broker.kafka_port), timeout=5) as sock:
        new = InitProducerIdRequest(transactional_id=None, transaction_timeout=timedelta(seconds=60),
                                    producer_id=-1, producer_epoch=-1)
        a = _call(sock, 22, 4, 1, new, InitProducerIdResponse)
        b = _call(sock, 22, 4, 2, new, InitProducerIdResponse)
        assert a.error_code == b.error_code == ErrorCode.none and a.producer_id != b.producer_id
        native_id = _stored_producer_id(sock, "pid.t")  # the native producer's, from its stored batch
        assert native_id >= 0 and native_id not in (a.producer_id, b.producer_id)
        bump = InitProducerIdRequest(transactional_id=None, transaction_timeout=timedelta(seconds=60),
                                     producer_id=a.producer_id, producer_epoch=a.producer_epoch)
        bumped = _call(sock, 22, 4, 5, bump, InitProducerIdResponse)
        assert (bumped.producer_id, bumped.producer_epoch) == (a.producer_id, a.producer_epoch + 1)
        txn = InitProducerIdRequest(transactional_id="t1", transaction_timeout=timedelta(seconds=60), producer_id=-1,
                                    producer_epoch=-1)
        assert _call(sock, 22, 4, 3, txn, InitProducerIdResponse).error_code != ErrorCode.none
        ask = OffsetForLeaderEpochRequest(replica_id=-1, topics=(OffsetForLeaderTopic(topic="pid.t", partitions=(
            OffsetForLeaderPartition(partition=0, current_leader_epoch=0, leader_epoch=0),
            OffsetForLeaderPartition(partition=5, current_leader_epoch=0, leader_epoch=0))),))
        answer = _call(sock, 23, 4, 4, ask, OffsetForLeaderEpochResponse)
        first, missing = answer.topics[0].partitions
        assert (first.error_code, first.leader_epoch, first.end_offset) == (ErrorCode.none, 0, 3)
        assert missing.error_code == ErrorCode.unknown_topic_or_partition
