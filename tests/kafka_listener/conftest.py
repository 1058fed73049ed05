"""Fixtures: a real ``edge broker`` with its Kafka listener on a free loopback port, and raw
Kafka-protocol requests (encoded with kio) for the tests that check framing and errors."""

from __future__ import annotations

import io
import socket
import struct

import pytest

from tests.support.broker_process import BrokerProcess, free_tcp_port


class KafkaBrokerProcess(BrokerProcess):
    def __init__(self, data_dir, extra_args=None):
        self.kafka_port = free_tcp_port()
        super().__init__(data_dir, extra_args=["--kafka-listen", f"127.0.0.1:{self.kafka_port}", *(extra_args or [])])

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.kafka_port}"


@pytest.fixture(scope="module")
def kafka_broker(tmp_path_factory):
    data = tmp_path_factory.mktemp("kafka-listener") / "data"
    with KafkaBrokerProcess(data) as proc:
        yield proc


def encode_request(api_key: int, version: int, correlation_id: int, body, client_id: str | None = "test") -> bytes:
    """A size-prefixed request frame for a kio request entity."""
    from kio.schema.request_header.v1.header import RequestHeader as H1
    from kio.schema.request_header.v2.header import RequestHeader as H2
    from kio.serial import entity_writer

    out = io.BytesIO()
    header_type = H2 if type(body).__flexible__ else H1
    entity_writer(header_type)(out, header_type(request_api_key=api_key, request_api_version=version,
                                                correlation_id=correlation_id, client_id=client_id))
    entity_writer(type(body))(out, body)
    payload = out.getvalue()
    return struct.pack(">i", len(payload)) + payload


def read_frame(sock: socket.socket) -> bytes:
    """One size-prefixed frame; b'' when the broker closed the connection."""
    head = _read_exact(sock, 4)
    if len(head) < 4:
        return b""
    (size,) = struct.unpack(">i", head)
    return _read_exact(sock, size)


def _read_exact(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            return data
        data += chunk
    return data


def decode_response(frame: bytes, response_type, header_v0: bool = False):
    """(correlation id, kio response entity)."""
    from kio.schema.response_header.v0.header import ResponseHeader as R0
    from kio.schema.response_header.v1.header import ResponseHeader as R1
    from kio.serial import entity_reader

    header_type = R0 if header_v0 or not response_type.__flexible__ else R1
    header, used = entity_reader(header_type)(frame, 0)
    body, size = entity_reader(response_type)(frame, used)
    assert used + size == len(frame), "trailing bytes after the response"
    return header.correlation_id, body
