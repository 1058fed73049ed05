"""Differential: one confluent-kafka control-plane scenario run against real Apache Kafka
(the KRaft node of tests/kafka/fixtures.py) and against our listener must give the same
answers (values a cluster chooses itself, such as default segment sizes, are left out)."""

from __future__ import annotations

import time

from confluent_kafka import Consumer, KafkaException, TopicPartition
from confluent_kafka.admin import (
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    NewTopic,
    OffsetSpec,
)

COMPARED_CONFIGS = ("retention.ms", "retention.bytes", "cleanup.policy", "message.timestamp.type",
                    "max.message.bytes")


def _error_name(future) -> str:
    try:
        future.result(20)
    except KafkaException as exc:
        return exc.args[0].name()
    return "NONE"


def scenario(bootstrap: str) -> dict:
    admin = AdminClient({"bootstrap.servers": bootstrap, "socket.timeout.ms": 10000})
    out: dict = {}
    topic = "diff.topic"
    out["create"] = _error_name(admin.create_topics([NewTopic(topic, 2, 1, config={
        "retention.ms": "3600000", "max.message.bytes": "2000000"})])[topic])
    out["create_again"] = _error_name(admin.create_topics([NewTopic(topic, 1, 1)])[topic])
    out["create_rf3"] = _error_name(admin.create_topics([NewTopic("diff.rf3", 1, 3)])["diff.rf3"])
    deadline = time.monotonic() + 20
    while len(admin.list_topics(topic, timeout=10).topics[topic].partitions) != 2:  # Kafka: leaders settle
        assert time.monotonic() < deadline
        time.sleep(0.1)
    out["partitions"] = sorted(admin.list_topics(topic, timeout=10).topics[topic].partitions)
    resource = ConfigResource(ConfigResource.Type.TOPIC, topic)
    configs = admin.describe_configs([resource])[resource].result(20)
    out["configs"] = {k: (configs[k].value, configs[k].is_default) for k in COMPARED_CONFIGS}
    alter = ConfigResource(ConfigResource.Type.TOPIC, topic, incremental_configs=[
        ConfigEntry("retention.bytes", "536870912", incremental_operation=AlterConfigOpType.SET)])
    out["alter"] = _error_name(admin.incremental_alter_configs([alter])[alter])
    configs = admin.describe_configs([resource])[resource].result(20)
    out["altered"] = configs["retention.bytes"].value
    tps = [TopicPartition(topic, p) for p in range(2)]
    out["earliest"] = [admin.list_offsets({tp: OffsetSpec.earliest()})[tp].result(20).offset for tp in tps]
    out["latest"] = [admin.list_offsets({tp: OffsetSpec.latest()})[tp].result(20).offset for tp in tps]

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "diff.group", "enable.auto.commit": False})
    deadline = time.monotonic() + 30
    while True:  # Kafka creates __consumer_offsets on first use: retriable until its coordinator is up
        try:
            consumer.commit(offsets=[TopicPartition(topic, 1, 5)], asynchronous=False)
            break
        except KafkaException as exc:
            if not exc.args[0].retriable() and exc.args[0].name() not in ("NOT_COORDINATOR",
                                                                          "COORDINATOR_NOT_AVAILABLE"):
                raise
            assert time.monotonic() < deadline, exc
            time.sleep(0.2)
    out["committed"] = [(tp.partition, tp.offset) for tp in consumer.committed(tps, timeout=20)]
    consumer.close()
    groups = {g.group_id: g.state.name for g in admin.list_consumer_groups().result(20).valid}
    out["group_state"] = groups.get("diff.group")

    out["delete"] = _error_name(admin.delete_topics([topic])[topic])
    deadline = time.monotonic() + 20
    while topic in admin.list_topics(timeout=10).topics:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    out["delete_again"] = _error_name(admin.delete_topics([topic])[topic])
    return out


def test_control_plane_answers_match_apache_kafka(kafka_single, kafka_broker):
    ours = scenario(kafka_broker.bootstrap)
    theirs = scenario(kafka_single.bootstrap_servers)
    assert ours == theirs
    assert ours["create"] == "NONE" and ours["committed"] == [(0, -1001), (1, 5)]


def delivery_timestamps(bootstrap: str) -> dict:
    """What a producer's delivery reports say of each record's time, per topic timestamp type."""
    from confluent_kafka import TIMESTAMP_CREATE_TIME, TIMESTAMP_LOG_APPEND_TIME, Producer

    admin = AdminClient({"bootstrap.servers": bootstrap, "socket.timeout.ms": 10000})
    names = {"CreateTime": "diff.ts.create", "LogAppendTime": "diff.ts.append"}
    for kind, topic in names.items():
        admin.create_topics([NewTopic(topic, 1, 1, config={"message.timestamp.type": kind})])[topic].result(20)
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
    reports: dict = {}
    sent_ms = 1_767_225_600_000  # 2026-01-01: far from now, so the two times cannot be confused
    before = int(time.time() * 1000)
    for kind, topic in names.items():
        producer.produce(topic, b"v", timestamp=sent_ms, on_delivery=lambda err, msg, kind=kind: reports.update(
            {kind: (err, msg.timestamp())}))
    assert producer.flush(30) == 0
    after = int(time.time() * 1000)
    types = {TIMESTAMP_CREATE_TIME: "create", TIMESTAMP_LOG_APPEND_TIME: "log_append"}
    out = {}
    for kind, (err, (ts_type, ts)) in sorted(reports.items()):
        assert err is None, err
        out[kind] = (types.get(ts_type, ts_type), "sent" if ts == sent_ms else
                     "append time" if before - 1000 <= ts <= after + 1000 else ts)
    for topic in names.values():
        admin.delete_topics([topic])[topic].result(20)
    return out


def test_produce_acknowledgements_carry_the_log_append_time_as_kafkas_do(kafka_single, kafka_broker):
    ours = delivery_timestamps(kafka_broker.bootstrap)
    assert ours == delivery_timestamps(kafka_single.bootstrap_servers)
    # the broker's append time comes back in the Produce response (it was always -1 here)
    assert ours == {"CreateTime": ("create", "sent"), "LogAppendTime": ("log_append", "append time")}
