"""TLS + SASL/PLAIN on the Kafka listener: a non-loopback bind is accepted with both;
clients with the right password work (SASL_SSL), a wrong password is refused with
SASL_AUTHENTICATION_FAILED and a log line, and a client skipping SASL gets its connection
closed before any other request is served."""

from __future__ import annotations

import socket
import ssl
import subprocess

import pytest
from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient
from kio.schema.metadata.v12.request import MetadataRequest

from .conftest import KafkaBrokerProcess, encode_request, read_frame


@pytest.fixture(scope="module")
def secured(tmp_path_factory):
    base = tmp_path_factory.mktemp("tls")
    cert, key, users = base / "broker.pem", base / "broker.key", base / "users"
    out = subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out",
                          str(cert), "-days", "1", "-subj", "/CN=localhost", "-addext",
                          "subjectAltName=IP:127.0.0.1,DNS:localhost"], capture_output=True, timeout=60, check=False)
    assert out.returncode == 0, out.stderr
    users.write_text("# user:password\nviz:s3cret-pass\n")
    users.chmod(0o600)
    proc = KafkaBrokerProcess(base / "data", extra_args=[
        "--kafka-tls-cert", str(cert), "--kafka-tls-key", str(key), "--kafka-sasl-users", str(users),
        "--kafka-advertised", "127.0.0.1:0"])
    proc.extra_args[1] = f"0.0.0.0:{proc.kafka_port}"  # every interface: allowed with TLS and SASL
    proc.extra_args[-1] = f"127.0.0.1:{proc.kafka_port}"
    with proc:
        yield proc, cert


def admin(broker, cert, password: str, errors: list | None = None) -> AdminClient:
    return AdminClient({"bootstrap.servers": broker.bootstrap, "security.protocol": "SASL_SSL",
                        "sasl.mechanisms": "PLAIN", "sasl.username": "viz", "sasl.password": password,
                        "ssl.ca.location": str(cert), "socket.timeout.ms": 5000,
                        "error_cb": lambda err: errors.append(err) if errors is not None else None})


def test_right_password_over_tls_works_wrong_one_is_refused(secured):
    broker, cert = secured
    assert "address=0.0.0.0:" in broker.log() and "tls=on" in broker.log() and "1 users" in broker.log()
    topics = admin(broker, cert, "s3cret-pass").list_topics(timeout=10)
    assert [b.port for b in topics.brokers.values()] == [broker.kafka_port]
    errors: list = []
    refused = admin(broker, cert, "wrong", errors)
    with pytest.raises(KafkaException):
        refused.list_topics(timeout=5)
    refused.poll(2)  # delivers the client's error callbacks
    assert any("Authentication failed: invalid username or password" in e.str() for e in errors), errors
    assert "event=kafka_sasl_failed" in broker.log() and "wrong" not in broker.log()


def test_requests_before_sasl_close_the_connection(secured):
    broker, cert = secured
    context = ssl.create_default_context(cafile=str(cert))
    with socket.create_connection(("127.0.0.1", broker.kafka_port), timeout=5) as raw, \
            context.wrap_socket(raw, server_hostname="localhost") as sock:
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
