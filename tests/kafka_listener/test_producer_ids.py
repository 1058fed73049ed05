"""InitProducerId: ids never repeat, across restarts too (reserved a block at a time,
crash-safe); epochs bump on re-init; transactional ids are refused. OffsetForLeaderEpoch
answers the log end at the fixed epoch 0."""

from __future__ import annotations

import socket
from datetime import timedelta

from kio.schema.errors import ErrorCode
from kio.schema.init_producer_id.v4.request import InitProducerIdRequest
from kio.schema.init_producer_id.v4.response import InitProducerIdResponse
from kio.schema.offset_for_leader_epoch.v4.request import (
    OffsetForLeaderEpochRequest,
    OffsetForLeaderPartition,
    OffsetForLeaderTopic,
)
from kio.schema.offset_for_leader_epoch.v4.response import OffsetForLeaderEpochResponse

from broker.client import Admin, Producer
from broker.kafka.producer_ids import BLOCK, ProducerIds

from .conftest import decode_response, encode_request, read_frame


def test_ids_are_unique_across_restarts_and_epochs_bump(tmp_path):
    first = ProducerIds(tmp_path)
    ids = [first.init(-1, -1)[0] for _ in range(3)]
    assert ids == [0, 1, 2]
    assert first.init(1, 0) == (1, 1)  # re-init of a known producer: next epoch
    after_restart = ProducerIds(tmp_path)  # a crash right after: the rest of the block is skipped
    fresh, epoch = after_restart.init(-1, -1)
    assert fresh >= BLOCK and epoch == 0
    (tmp_path / "_kafka" / "producer-ids.json").write_text("{not json")
    damaged = ProducerIds(tmp_path)
    assert damaged.init(-1, -1)[0] > fresh  # unknown history: far above anything handed out


def _call(sock, api_key, version, corr, body, response_type):
    sock.sendall(encode_request(api_key, version, corr, body))
    return decode_response(read_frame(sock), response_type)[1]


def test_init_producer_id_and_offset_for_leader_epoch_on_the_wire(kafka_broker):
    with Admin(kafka_broker.endpoint) as native:
        native.create_topic("pid.t", partitions=1)
    with Producer(kafka_broker.endpoint) as producer:
        for i in range(3):
            producer.send("pid.t", b"x", partition=0)
        producer.flush()
    with socket.create_connection(("127.0.0.1", kafka_broker.kafka_port), timeout=5) as sock:
        new = InitProducerIdRequest(transactional_id=None, transaction_timeout=timedelta(seconds=60), producer_id=-1, producer_epoch=-1)
        a = _call(sock, 22, 4, 1, new, InitProducerIdResponse)
        b = _call(sock, 22, 4, 2, new, InitProducerIdResponse)
        assert a.error_code == b.error_code == ErrorCode.none and a.producer_id != b.producer_id
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
