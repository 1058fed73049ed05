"""Kafka framing on a raw socket: ApiVersions at every version (v0 response header rules),
UNSUPPORTED_VERSION answers, and bad frames closing only their own connection with a log line."""

from __future__ import annotations

import socket
import struct
import time

from kio.schema.api_versions.v0.request import ApiVersionsRequest as AV0
from kio.schema.api_versions.v0.response import ApiVersionsResponse as AV0Resp
from kio.schema.api_versions.v3.request import ApiVersionsRequest as AV3
from kio.schema.api_versions.v3.response import ApiVersionsResponse as AV3Resp
from kio.schema.api_versions.v4.request import ApiVersionsRequest as AV4
from kio.schema.errors import ErrorCode
from kio.schema.metadata.v12.request import MetadataRequest as M12
from kio.schema.metadata.v12.response import MetadataResponse as M12Resp
from kio.schema.metadata.v13.request import MetadataRequest as M13
from kio.schema.metadata.v13.response import MetadataResponse as M13Resp

from broker.client import Admin

from .conftest import decode_response, encode_request, read_frame


def connect(broker) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", broker.kafka_port), timeout=5)
    return sock


def test_api_versions_v0_to_v3_list_the_control_plane(kafka_broker):
    with connect(kafka_broker) as sock:
        sock.sendall(encode_request(18, 0, 11, AV0()))
        corr, body = decode_response(read_frame(sock), AV0Resp)
        assert corr == 11 and body.error_code == ErrorCode.none
        keys = {k.api_key: (k.min_version, k.max_version) for k in body.api_keys}
        assert keys[18] == (0, 3) and keys[3] == (1, 12) and keys[2] == (1, 7)
        for api in (8, 9, 10, 11, 12, 13, 14, 15, 16, 19, 20, 22, 23, 32, 44):
            assert api in keys, api
        # v3 is flexible but its response header stays v0 (no tagged fields after the id)
        sock.sendall(encode_request(18, 3, 12, AV3(client_software_name="t", client_software_version="1")))
        corr, body = decode_response(read_frame(sock), AV3Resp, header_v0=True)
        assert corr == 12 and body.error_code == ErrorCode.none
        assert {k.api_key for k in body.api_keys} == set(keys)


def test_unsupported_api_version_gets_unsupported_version_not_a_close(kafka_broker):
    with connect(kafka_broker) as sock:
        # ApiVersions beyond 3: Kafka answers in v0 form with error 35 and the table
        sock.sendall(encode_request(18, 4, 21, AV4(client_software_name="t", client_software_version="1")))
        corr, body = decode_response(read_frame(sock), AV0Resp)
        assert corr == 21 and body.error_code == ErrorCode.unsupported_version
        assert any(k.api_key == 3 for k in body.api_keys)
        # Metadata v13 (we serve 1..12): a v13 response carrying UNSUPPORTED_VERSION
        sock.sendall(encode_request(3, 13, 22, M13(topics=(), allow_auto_topic_creation=False,
                                                      include_topic_authorized_operations=False)))
        corr, body = decode_response(read_frame(sock), M13Resp)
        assert corr == 22 and body.error_code == ErrorCode.unsupported_version
        # the connection still works
        sock.sendall(encode_request(3, 12, 23, M12(topics=(), allow_auto_topic_creation=False,
                                                      include_topic_authorized_operations=False)))
        corr, body = decode_response(read_frame(sock), M12Resp)
        assert corr == 23 and body.brokers[0].port == kafka_broker.kafka_port


def _closed_with_log(broker, sock, reason: str) -> None:
    assert read_frame(sock) == b"", "the broker should close this connection"
    deadline = time.monotonic() + 5
    while f"reason={reason}" not in broker.log():
        assert time.monotonic() < deadline, broker.log()
        time.sleep(0.05)


def test_bad_frames_close_only_their_connection_with_a_log_line(kafka_broker):
    with connect(kafka_broker) as bystander:
        with connect(kafka_broker) as sock:  # an API key no schema knows
            sock.sendall(struct.pack(">ihhi", 10, 999, 0, 1) + b"\0\0")
            _closed_with_log(kafka_broker, sock, "unknown_api")
        with connect(kafka_broker) as sock:  # larger than socket.request.max.bytes
            sock.sendall(struct.pack(">i", 2**31 - 1))
            _closed_with_log(kafka_broker, sock, "bad_frame_size")
        with connect(kafka_broker) as sock:  # Metadata v12 whose body is cut short
            frame = encode_request(3, 12, 5, M12(topics=None, allow_auto_topic_creation=False,
                                                 include_topic_authorized_operations=False))
            body = frame[4:-2]
            sock.sendall(struct.pack(">i", len(body)) + body)
            _closed_with_log(kafka_broker, sock, "malformed_request")
        bystander.sendall(encode_request(18, 0, 7, AV0()))
        corr, body = decode_response(read_frame(bystander), AV0Resp)
        assert corr == 7 and body.error_code == ErrorCode.none
    with Admin(kafka_broker.endpoint) as native:  # the counters edge status and /metrics read
        counters = native.metadata()["broker"]["kafka"]
    assert counters["closed_unknown_api"] >= 1 and counters["closed_bad_frame_size"] >= 1
    assert counters["closed_malformed_request"] >= 1 and counters["connections_accepted"] >= 4
