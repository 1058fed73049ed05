"""Consumer groups through the Kafka protocol: two confluent-kafka members split the
partitions, commits land in the one offset store the native client reads (and the other
way round), ListGroups/DescribeGroups show them, wrong generations get Kafka's errors."""

from __future__ import annotations

import socket
import time

from confluent_kafka import Consumer, ConsumerGroupTopicPartitions, TopicPartition
from confluent_kafka.admin import AdminClient
from kio.schema.errors import ErrorCode
from kio.schema.heartbeat.v4.request import HeartbeatRequest
from kio.schema.heartbeat.v4.response import HeartbeatResponse

from broker.client import Admin

from .conftest import decode_response, encode_request, read_frame


def consumer(broker, group: str, assigned: dict, name: str, topic: str) -> Consumer:
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": group, "enable.auto.commit": False,
                  "session.timeout.ms": 6000, "heartbeat.interval.ms": 200})
    c.subscribe([topic], on_assign=lambda _c, parts: assigned.__setitem__(name, sorted(p.partition for p in parts)))
    return c


def poll_until(consumers, condition, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached")
        for c in consumers:
            c.poll(0.05)


def test_two_members_split_partitions_and_share_offsets_with_native(kafka_broker):
    with Admin(kafka_broker.endpoint) as native:
        native.create_topic("grp.t", partitions=4)
    assigned: dict[str, list[int]] = {}
    first = consumer(kafka_broker, "grp.g1", assigned, "first", "grp.t")
    poll_until([first], lambda: assigned.get("first") == [0, 1, 2, 3])
    second = consumer(kafka_broker, "grp.g1", assigned, "second", "grp.t")
    poll_until([first, second], lambda: len(assigned.get("first", [])) == 2 and len(assigned.get("second", [])) == 2)
    assert sorted(assigned["first"] + assigned["second"]) == [0, 1, 2, 3]

    mine = assigned["first"][0]
    first.commit(offsets=[TopicPartition("grp.t", mine, 7)], asynchronous=False)
    with Admin(kafka_broker.endpoint) as native:
        assert native.group_offsets("grp.g1") == {("grp.t", mine): 7}
        theirs = assigned["second"][0]
        native.commit_offsets("grp.g1", {("grp.t", theirs): 11})
    committed = {tp.partition: tp.offset for tp in second.committed(
        [TopicPartition("grp.t", p) for p in range(4)], timeout=10)}
    assert committed[mine] == 7 and committed[theirs] == 11

    admin = AdminClient({"bootstrap.servers": kafka_broker.bootstrap})
    listed = {g.group_id: g for g in admin.list_consumer_groups().result(10).valid}
    assert listed["grp.g1"].state.name == "STABLE"
    described = admin.describe_consumer_groups(["grp.g1"])["grp.g1"].result(10)
    assert len(described.members) == 2
    assert sorted(tp.partition for m in described.members for tp in m.assignment.topic_partitions) == [0, 1, 2, 3]

    second.close()  # LeaveGroup: the first member takes everything back
    poll_until([first], lambda: assigned.get("first") == [0, 1, 2, 3])
    first.close()
    with Admin(kafka_broker.endpoint) as native:
        assert native.group_offsets("grp.g1") == {("grp.t", mine): 7, ("grp.t", theirs): 11}


def test_heartbeat_with_unknown_member_or_generation_gets_kafka_errors(kafka_broker):
    with Admin(kafka_broker.endpoint) as native:
        native.create_topic("grp.hb", partitions=1)
    assigned: dict[str, list[int]] = {}
    member = consumer(kafka_broker, "grp.hb", assigned, "only", "grp.hb")
    poll_until([member], lambda: assigned.get("only") == [0])
    member_id = member.memberid()
    try:
        with socket.create_connection(("127.0.0.1", kafka_broker.kafka_port), timeout=5) as sock:
            for corr, (mid, generation, expected) in enumerate([
                    ("nobody", 1, ErrorCode.unknown_member_id),
                    (member_id, 999, ErrorCode.illegal_generation)]):
                sock.sendall(encode_request(12, 4, corr, HeartbeatRequest(
                    group_id="grp.hb", generation_id=generation, member_id=mid, group_instance_id=None)))
                _, body = decode_response(read_frame(sock), HeartbeatResponse)
                assert body.error_code == expected
    finally:
        member.close()


def test_native_groups_are_listed_to_kafka_clients(kafka_broker):
    with Admin(kafka_broker.endpoint) as native:
        native.create_topic("grp.native", partitions=1)
        native.commit_offsets("grp.native-only", {("grp.native", 0): 3})
    admin = AdminClient({"bootstrap.servers": kafka_broker.bootstrap})
    listed = {g.group_id for g in admin.list_consumer_groups().result(10).valid}
    assert "grp.native-only" in listed
    offsets = admin.list_consumer_group_offsets(
        [ConsumerGroupTopicPartitions("grp.native-only")])["grp.native-only"].result(10)
    assert [(tp.topic, tp.partition, tp.offset) for tp in offsets.topic_partitions] == [("grp.native", 0, 3)]


def test_commit_metadata_is_stored_returned_and_survives_restart(tmp_path):
    """OffsetCommit's metadata string is kept with the offset (as Kafka), survives a broker
    restart, is cleared by a later commit without one (native commits included), and a
    string over Kafka's 4096-byte limit is refused with OFFSET_METADATA_TOO_LARGE."""
    from confluent_kafka import KafkaException

    from .conftest import KafkaBrokerProcess

    data = tmp_path / "data"
    tps = [TopicPartition("meta.t", p) for p in range(2)]
    with KafkaBrokerProcess(data) as broker:
        with Admin(broker.endpoint) as native:
            native.create_topic("meta.t", partitions=2)
        c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "meta.g", "enable.auto.commit": False})
        c.commit(offsets=[TopicPartition("meta.t", 0, 5, metadata="ckpt-5"),
                          TopicPartition("meta.t", 1, 9, metadata="")], asynchronous=False)
        got = {tp.partition: (tp.offset, tp.metadata) for tp in c.committed(tps, timeout=10)}
        assert got == {0: (5, "ckpt-5"), 1: (9, "")}
        try:
            c.commit(offsets=[TopicPartition("meta.t", 1, 10, metadata="x" * 4097)], asynchronous=False)
            raise AssertionError("oversized metadata was accepted")
        except KafkaException as exc:
            assert exc.args[0].name() == "OFFSET_METADATA_TOO_LARGE"
        c.close()
        with Admin(broker.endpoint) as native:
            assert native.group_offsets("meta.g") == {("meta.t", 0): 5, ("meta.t", 1): 9}
    with KafkaBrokerProcess(data) as broker:
        c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "meta.g", "enable.auto.commit": False})
        assert c.committed(tps[:1], timeout=10)[0].metadata == "ckpt-5"
        with Admin(broker.endpoint) as native:
            native.commit_offsets("meta.g", {("meta.t", 0): 6})
        got = c.committed(tps[:1], timeout=10)[0]
        assert got.offset == 6 and not got.metadata  # librdkafka shows an empty string as None here
        c.close()
