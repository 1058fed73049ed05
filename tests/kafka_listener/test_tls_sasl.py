"""TLS + SASL (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512) on the Kafka listener: a non-loopback bind
is accepted with both; clients with the right password work (SASL_SSL), a wrong password is
refused with SASL_AUTHENTICATION_FAILED and a log line, and a client skipping SASL gets its
connection closed before any other request is served."""

from __future__ import annotations

import socket
import ssl
import time

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic
from kio.schema.metadata.v12.request import MetadataRequest

from tests.kafka.harness import self_signed_cert

from .conftest import KafkaBrokerProcess, encode_request, read_frame


@pytest.fixture(scope="module")
def secured(tmp_path_factory):
    base = tmp_path_factory.mktemp("tls")
    cert, key = self_signed_cert(base)
    users = base / "users"
    users.write_text("# user:password\nviz:s3cret-pass\n")
    users.chmod(0o600)
    proc = KafkaBrokerProcess(base / "data", extra_args=[
        "--kafka-tls-cert", str(cert), "--kafka-tls-key", str(key), "--kafka-sasl-users", str(users),
        "--kafka-advertised", "127.0.0.1:0"])
    proc.extra_args[1] = f"0.0.0.0:{proc.kafka_port}"  # every interface: allowed with TLS and SASL
    proc.extra_args[-1] = f"127.0.0.1:{proc.kafka_port}"
    with proc:
        yield proc, cert


def client_config(broker, cert, password: str, mechanism: str = "PLAIN", user: str = "viz") -> dict:
    return {"bootstrap.servers": broker.bootstrap, "security.protocol": "SASL_SSL",
            "sasl.mechanisms": mechanism, "sasl.username": user, "sasl.password": password,
            "ssl.ca.location": str(cert), "socket.timeout.ms": 5000}


def admin(broker, cert, password: str, errors: list | None = None, mechanism: str = "PLAIN",
          user: str = "viz") -> AdminClient:
    return AdminClient({**client_config(broker, cert, password, mechanism, user),
                        "error_cb": lambda err: errors.append(err) if errors is not None else None})


def test_right_password_over_tls_works_wrong_one_is_refused(secured):
    broker, cert = secured
    assert "address=0.0.0.0:" in broker.log() and "tls=on" in broker.log()
    assert 'sasl="PLAIN/SCRAM-SHA-256/SCRAM-SHA-512, 1 users"' in broker.log()
    topics = admin(broker, cert, "s3cret-pass").list_topics(timeout=10)
    assert [b.port for b in topics.brokers.values()] == [broker.kafka_port]
    errors: list = []
    refused = admin(broker, cert, "wrong", errors)
    with pytest.raises(KafkaException):
        refused.list_topics(timeout=5)
    refused.poll(2)  # delivers the client's error callbacks
    assert any("Authentication failed: invalid username or password" in e.str() for e in errors), errors
    assert "event=kafka_sasl_failed" in broker.log() and "wrong" not in broker.log()


def authentication_error(config: dict, timeout_s: float = 20.0) -> KafkaError:
    """The first _AUTHENTICATION error a client with ``config`` reports (fails the test if none comes)."""
    errors: list[KafkaError] = []
    refused = AdminClient({**config, "error_cb": errors.append})
    with pytest.raises(KafkaException):
        refused.list_topics(timeout=1)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        refused.poll(0.2)  # delivers the client's error callbacks
        found = [e for e in errors if e.code() == KafkaError._AUTHENTICATION]
        if found:
            return found[0]
    raise AssertionError(f"no authentication error within {timeout_s}s: {errors}")


@pytest.mark.parametrize("mechanism", ["SCRAM-SHA-256", "SCRAM-SHA-512"])
def test_scram_right_password_produces_and_consumes_wrong_one_is_refused(secured, mechanism):
    broker, cert = secured
    topic = f"scram.{mechanism.lower()}"
    producer = Producer({**client_config(broker, cert, "s3cret-pass", mechanism), "enable.idempotence": True})
    producer.produce(topic, b"frame", key=b"k")
    assert producer.flush(15) == 0
    consumer = Consumer({**client_config(broker, cert, "s3cret-pass", mechanism), "group.id": f"g-{mechanism}"})
    try:
        consumer.assign([TopicPartition(topic, 0, 0)])
        msg = consumer.poll(10)
        assert msg is not None and msg.error() is None and (msg.key(), msg.value()) == (b"k", b"frame")
    finally:
        consumer.close()
    refusal = authentication_error(client_config(broker, cert, "wrong-pass", mechanism))
    expected = f"Authentication failed during authentication due to invalid credentials with SASL mechanism {mechanism}"
    assert expected in refusal.str(), refusal
    assert f"user=viz mechanism={mechanism} reason=" in broker.log() and "wrong-pass" not in broker.log()


def test_requests_before_sasl_close_the_connection(secured):
    broker, cert = secured
    context = ssl.create_default_context(cafile=str(cert))
    with (socket.create_connection(("127.0.0.1", broker.kafka_port), timeout=5) as raw,
          context.wrap_socket(raw, server_hostname="localhost") as sock):
        sock.sendall(encode_request(3, 12, 1, MetadataRequest(topics=None, allow_auto_topic_creation=False,
                                                              include_topic_authorized_operations=False)))
        assert read_frame(sock) == b""
    assert "reason=unauthenticated" in broker.log()
    with socket.create_connection(("127.0.0.1", broker.kafka_port), timeout=5) as raw:  # plaintext: no TLS
        raw.sendall(encode_request(3, 12, 1, MetadataRequest(topics=None, allow_auto_topic_creation=False,
                                                             include_topic_authorized_operations=False)))
        try:
            assert read_frame(raw) == b""
        except ConnectionResetError:
            pass  # closed with unread bytes: a reset, also closed
    assert "reason=tls_handshake" in broker.log()


# -- differential: the same SCRAM client configs against Apache Kafka (the session's one-node
# cluster of tests/kafka/fixtures.py has a SCRAM listener for this) -------------------------


def scram_scenario(bootstrap: str, cert, mechanism: str) -> dict:
    config = {"bootstrap.servers": bootstrap, "security.protocol": "SASL_SSL", "sasl.mechanisms": mechanism,
              "sasl.username": "viz", "sasl.password": "s3cret-pass", "ssl.ca.location": str(cert),
              "socket.timeout.ms": 10000}
    out: dict = {}
    topic = f"scram.diff.{mechanism.lower()}"
    admin_client = AdminClient(config)
    admin_client.create_topics([NewTopic(topic, 1, 1)])[topic].result(30)
    producer = Producer(config)
    producer.produce(topic, b"frame", key=b"k")
    out["unflushed"] = producer.flush(30)
    consumer = Consumer({**config, "group.id": "scram-diff"})
    try:
        consumer.assign([TopicPartition(topic, 0, 0)])
        msg = consumer.poll(20)
        out["consumed"] = None if msg is None else (msg.error(), msg.key(), msg.value(), msg.offset())
    finally:
        consumer.close()
    refusal = authentication_error({**config, "sasl.password": "wrong-pass"})
    out["wrong_password"] = (refusal.name(), "Authentication failed during authentication due to invalid "
                             f"credentials with SASL mechanism {mechanism}" in refusal.str())
    return out


@pytest.mark.parametrize("mechanism", ["SCRAM-SHA-256", "SCRAM-SHA-512"])
def test_scram_client_config_works_alike_on_apache_kafka(secured, kafka_single, mechanism):
    broker, cert = secured
    ours = scram_scenario(broker.bootstrap, cert, mechanism)
    theirs = scram_scenario(kafka_single.sasl_bootstrap_servers, kafka_single.tls_cert, mechanism)
    assert ours == theirs
    assert ours["consumed"] == (None, b"k", b"frame", 0) and ours["wrong_password"] == ("_AUTHENTICATION", True)


def test_java_client_authenticates_with_scram(secured, tmp_path):
    """Kafka's own Java SCRAM client (kafka-topics) against our listener."""
    from .test_java_tools import kafka_tool

    broker, cert = secured
    config = tmp_path / "client.properties"
    config.write_text("security.protocol=SASL_SSL\nsasl.mechanism=SCRAM-SHA-512\n"
                      "sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required "
                      'username="viz" password="s3cret-pass";\n'
                      f"ssl.truststore.type=PEM\nssl.truststore.location={cert}\n")
    out = kafka_tool("org.apache.kafka.tools.TopicCommand", "--bootstrap-server", broker.bootstrap,
                     "--command-config", str(config), "--create", "--topic", "scram.java", "--partitions", "2")
    assert "Created topic scram.java." in out
