"""Fuzz the Kafka request decoder and handlers in-process: random bytes, and request frames
captured from real clients (librdkafka via confluent-kafka, and Kafka's Java console and
admin tools: captured_frames.json, one per API and version they sent) mutated by hypothesis.
Every frame must end as an answer or a closed connection with a reason; no handler may fail on a frame that decodes.

EDGE_FUZZ_EXAMPLES raises the number of examples (scripts/faults long runs)."""

from __future__ import annotations

import json
import os
import socket
import struct
from pathlib import Path

import pytest
import zmq
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from broker.kafka import codec
from broker.kafka.apis import SUPPORTED
from broker.kafka.broker import KafkaBroker
from broker.kafka.listener import Connection, KafkaListener
from broker.server import BrokerServer
from broker.storage import Storage

CAPTURED = [bytes.fromhex(h) for h in json.loads((Path(__file__).parent / "captured_frames.json").read_text())]
FUZZ = settings(max_examples=int(os.environ.get("EDGE_FUZZ_EXAMPLES", "150")), deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


@pytest.fixture(scope="module")
def listener(tmp_path_factory):
    storage = Storage(tmp_path_factory.mktemp("fuzz") / "data")
    server = BrokerServer(storage, "ipc:///nonexistent/unused.sock")
    storage.create_topic("cap")
    kafka = KafkaListener(KafkaBroker(server, "127.0.0.1", 9092), "127.0.0.1", 0)
    kafka.poller = zmq.Poller()
    yield kafka
    storage.close()


def feed(listener: KafkaListener, frame: bytes) -> tuple[bytes, bool]:
    """Send one frame through a connection; (bytes answered, connection closed or request
    parked: a JoinGroup or SyncGroup waiting for the rest of its group)."""
    ours, theirs = socket.socketpair()
    ours.setblocking(False)
    theirs.settimeout(2)
    conn = Connection(listener, ours, ("fuzz", 0))
    listener.connections[conn.fd] = conn
    conn.inbuf += struct.pack(">i", len(frame)) + frame
    listener._process(conn)
    listener._resume()
    closed = conn.closed or conn.waiting is not None
    if not conn.closed:
        listener._close(conn, None)
    theirs.setblocking(False)
    try:
        answer = theirs.recv(1 << 20)
    except BlockingIOError:
        answer = b""
    theirs.close()
    return answer, closed


def test_captured_frames_are_all_answered(listener):
    assert len(CAPTURED) >= 12
    for frame in CAPTURED:
        answer, closed = feed(listener, frame)
        assert not closed and answer, frame[:8].hex()
        assert struct.unpack_from(">i", answer, 4)[0] == struct.unpack_from(">i", frame, 4)[0]  # correlation id
    assert listener.stats["handler_errors"] == 0


@FUZZ
@given(data=st.data())
def test_mutated_captured_frames_never_fail_a_handler(listener, data):
    frame = bytearray(data.draw(st.sampled_from(CAPTURED)))
    for _ in range(data.draw(st.integers(1, 4))):
        how = data.draw(st.sampled_from(["flip", "cut", "insert", "int"]))
        at = data.draw(st.integers(4, max(4, len(frame) - 1)))  # keep the API key and version
        if how == "flip" and at < len(frame):
            frame[at] ^= data.draw(st.integers(1, 255))
        elif how == "cut":
            del frame[at:]
        elif how == "insert":
            frame[at:at] = data.draw(st.binary(min_size=1, max_size=8))
        elif at + 4 <= len(frame):
            struct.pack_into(">i", frame, at, data.draw(st.sampled_from([-1, 0, 2**31 - 1, -(2**31), 7])))
    before = listener.stats["handler_errors"]
    answer, closed_or_parked = feed(listener, bytes(frame))
    assert closed_or_parked or answer
    assert listener.stats["handler_errors"] == before, bytes(frame).hex()


@FUZZ
@given(frame=st.binary(min_size=0, max_size=200))
def test_random_bytes_only_raise_the_two_decoder_errors(frame):
    try:
        codec.parse_request(frame, SUPPORTED)
    except (codec.KafkaFrameError, codec.UnsupportedRequest):
        pass


@pytest.mark.parametrize("frame", [
    # Metadata v12 (flexible): topics declared as a compact array of 2^32 - 2 elements
    struct.pack(">hhih", 3, 12, 1, 1) + b"c" + b"\x00" + b"\xff\xff\xff\xff\x0f" + b"\x00\x00\x00",
    # Metadata v1 (legacy): 2^31 - 1 topics
    struct.pack(">hhih", 3, 1, 1, 1) + b"c" + struct.pack(">i", 2**31 - 1),
    # IncrementalAlterConfigs v1: a config value of 2^31 bytes declared inside a resource
    bytes.fromhex("002c000100000005000772646b61666b6100020204636170ffffffff74656e74696f6e2e6279746573000a31303030303030303000000000"),
])
def test_impossible_lengths_are_refused_before_any_allocation(frame):
    """kio reserves memory from a declared length; a failed reservation aborts the process,
    so these frames used to kill the broker. They are malformed requests now."""
    with pytest.raises(codec.KafkaFrameError):
        codec.parse_request(frame, SUPPORTED)
