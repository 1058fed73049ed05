"""Kafka's own Java tools (from the distribution tests/kafka/harness.py fetches, run by
class name: the Maven download has no bin/ scripts) against the listener."""

from __future__ import annotations

import subprocess

from broker.client import Admin
from tests.kafka.harness import kafka_libs


def kafka_tool(main_class: str, *args: str) -> str:
    out = subprocess.run(["java", "-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC", "-cp", f"{kafka_libs()}/*",
                          main_class, *args], capture_output=True, text=True, timeout=90, check=False)
    assert out.returncode == 0, out.stdout + out.stderr
    return out.stdout


def test_kafka_topics_create_and_describe(kafka_broker):
    kafka_tool("org.apache.kafka.tools.TopicCommand", "--bootstrap-server", kafka_broker.bootstrap, "--create",
               "--topic", "java.topics", "--partitions", "3", "--config", "retention.ms=7200000")
    described = kafka_tool("org.apache.kafka.tools.TopicCommand", "--bootstrap-server", kafka_broker.bootstrap,
                           "--describe", "--topic", "java.topics")
    assert "PartitionCount: 3" in described and "ReplicationFactor: 1" in described
    assert "retention.ms=7200000" in described
    assert described.count("Leader: 0\tReplicas: 0\tIsr: 0") == 3
    with Admin(kafka_broker.endpoint) as native:
        assert native.list_topics()["java.topics"]["config"]["retention_age"] == "2h"


def test_kafka_consumer_groups_describe_shows_native_commits(kafka_broker):
    with Admin(kafka_broker.endpoint) as native:
        native.create_topic("java.groups", partitions=2)
        native.commit_offsets("java.viz", {("java.groups", 0): 0, ("java.groups", 1): 0})
    listed = kafka_tool("org.apache.kafka.tools.consumer.group.ConsumerGroupCommand", "--bootstrap-server",
                        kafka_broker.bootstrap, "--list")
    assert "java.viz" in listed.split()
    described = kafka_tool("org.apache.kafka.tools.consumer.group.ConsumerGroupCommand", "--bootstrap-server",
                           kafka_broker.bootstrap, "--describe", "--group", "java.viz")
    rows = [line.split() for line in described.splitlines() if line.startswith("java.viz")]
    assert sorted((r[1], r[2], r[3], r[4]) for r in rows) == [("java.groups", "0", "0", "0"),
                                                              ("java.groups", "1", "0", "0")]


def test_console_producer_and_consumer_with_a_group(kafka_broker):
    lines = [f"line-{i}" for i in range(5)]
    out = subprocess.run(["java", "-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC", "-cp", f"{kafka_libs()}/*",
                          "org.apache.kafka.tools.ConsoleProducer", "--bootstrap-server", kafka_broker.bootstrap,
                          "--topic", "java.console"], input="\n".join(lines) + "\n", capture_output=True, text=True,
                         timeout=90, check=False)
    assert out.returncode == 0, out.stderr
    read = kafka_tool("org.apache.kafka.tools.consumer.ConsoleConsumer", "--bootstrap-server", kafka_broker.bootstrap,
                      "--topic", "java.console", "--group", "java.viz2", "--from-beginning", "--max-messages", "5",
                      "--timeout-ms", "30000")
    assert read.splitlines() == lines
    with Admin(kafka_broker.endpoint) as native:
        assert native.group_offsets("java.viz2") == {("java.console", 0): 5}
