"""confluent-kafka AdminClient and kcat against the listener: topics, configs (Kafka names
mapped onto TopicConfig), deletion, auto-creation, ListOffsets, groups listing."""

from __future__ import annotations

import subprocess

import pytest
from confluent_kafka import KafkaException, TopicPartition
from confluent_kafka.admin import (
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    NewTopic,
    OffsetSpec,
)

from broker.client import Admin


def admin_for(broker) -> AdminClient:
    return AdminClient({"bootstrap.servers": broker.bootstrap, "socket.timeout.ms": 5000})


def test_create_describe_alter_delete_topic(kafka_broker):
    admin = admin_for(kafka_broker)
    new = NewTopic("adm.create", num_partitions=3, replication_factor=1,
                   config={"retention.ms": "3600000", "segment.bytes": "1048576"})
    admin.create_topics([new])["adm.create"].result(10)

    # the native client sees the same topic with the mapped settings
    with Admin(kafka_broker.endpoint) as native:
        config = native.list_topics()["adm.create"]["config"]
    assert config["partitions"] == 3 and config["retention_age"] == "1h" and config["segment_bytes"] == 1048576

    resource = ConfigResource(ConfigResource.Type.TOPIC, "adm.create")
    described = admin.describe_configs([resource])[resource].result(10)
    assert described["retention.ms"].value == "3600000"
    assert described["segment.bytes"].value == "1048576"
    assert described["retention.bytes"].value == "-1"
    assert described["message.timestamp.type"].value == "CreateTime"
    assert not described["retention.ms"].is_default and described["retention.bytes"].is_default

    alter = ConfigResource(ConfigResource.Type.TOPIC, "adm.create", incremental_configs=[
        ConfigEntry("retention.bytes", "1073741824", incremental_operation=AlterConfigOpType.SET),
        ConfigEntry("retention.ms", None, incremental_operation=AlterConfigOpType.DELETE)])
    admin.incremental_alter_configs([alter])[alter].result(10)
    described = admin.describe_configs([resource])[resource].result(10)
    assert described["retention.bytes"].value == "1073741824"
    assert described["retention.ms"].value == "86400000" or described["retention.ms"].value == "-1"

    # a value outside TopicConfig's range is Kafka's INVALID_CONFIG naming the key
    bad = ConfigResource(ConfigResource.Type.TOPIC, "adm.create", incremental_configs=[
        ConfigEntry("segment.bytes", "12", incremental_operation=AlterConfigOpType.SET)])
    with pytest.raises(KafkaException) as err:
        admin.incremental_alter_configs([bad])[bad].result(10)
    assert err.value.args[0].name() == "INVALID_CONFIG" and "segment_bytes" in err.value.args[0].str()

    with pytest.raises(KafkaException) as err:
        admin.create_topics([NewTopic("adm.create", 1, 1)])["adm.create"].result(10)
    assert err.value.args[0].name() == "TOPIC_ALREADY_EXISTS"
    with pytest.raises(KafkaException) as err:
        admin.create_topics([NewTopic("adm.rf3", 1, 3)])["adm.rf3"].result(10)
    assert err.value.args[0].name() == "INVALID_REPLICATION_FACTOR"

    admin.create_topics([NewTopic("adm.validate", 2, 1)], validate_only=True)["adm.validate"].result(10)
    with Admin(kafka_broker.endpoint) as native:
        assert "adm.validate" not in native.list_topics()  # validated, not created

    admin.delete_topics(["adm.create"])["adm.create"].result(10)
    with Admin(kafka_broker.endpoint) as native:
        assert "adm.create" not in native.list_topics()
    with pytest.raises(KafkaException) as err:
        admin.delete_topics(["adm.create"])["adm.create"].result(10)
    assert err.value.args[0].name() == "UNKNOWN_TOPIC_OR_PART"


def test_list_topics_and_kcat_metadata(kafka_broker):
    with Admin(kafka_broker.endpoint) as native:
        native.create_topic("adm.native", partitions=2)
    metadata = admin_for(kafka_broker).list_topics(timeout=10)
    assert len(metadata.topics["adm.native"].partitions) == 2
    assert [b.port for b in metadata.brokers.values()] == [kafka_broker.kafka_port]
    out = subprocess.run(["kcat", "-b", kafka_broker.bootstrap, "-L", "-t", "adm.native"], capture_output=True,
                         text=True, timeout=20, check=False)
    assert out.returncode == 0, out.stderr
    assert 'topic "adm.native" with 2 partitions' in out.stdout
    assert "partition 1, leader 0, replicas: 0, isrs: 0" in out.stdout


def test_list_offsets_earliest_latest_and_by_time(kafka_broker):
    from broker.client import Producer

    with Admin(kafka_broker.endpoint) as native:
        native.create_topic("adm.offsets", partitions=1)
    with Producer(kafka_broker.endpoint) as producer:
        for i in range(5):
            producer.send("adm.offsets", f"v{i}".encode(), partition=0, timestamp_ns=(1_000 + i) * 10**9)
            producer.flush()  # one batch per record: the time index is per batch
    admin = admin_for(kafka_broker)
    tp = TopicPartition("adm.offsets", 0)
    assert admin.list_offsets({tp: OffsetSpec.earliest()})[tp].result(10).offset == 0
    assert admin.list_offsets({tp: OffsetSpec.latest()})[tp].result(10).offset == 5
    found = admin.list_offsets({tp: OffsetSpec.for_timestamp(1_002_000)})[tp].result(10)
    assert found.offset == 2
    after = admin.list_offsets({tp: OffsetSpec.for_timestamp(9_999_000_000)})[tp].result(10)
    assert after.offset == -1
