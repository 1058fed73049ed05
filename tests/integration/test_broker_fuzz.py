"""Malformed frames thrown at a live broker: every one gets an error reply (or is dropped by
ZeroMQ), the broker keeps serving, and the data already in it is unchanged."""

from __future__ import annotations

import json

import zmq
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from broker import protocol as P
from broker.client import Admin, Consumer, Producer
from broker.errors import BrokerError, InvalidRequestError
from broker.records import encode_batch

header_st = st.builds(
    P.HEADER.pack,
    st.sampled_from([P.MAGIC, 0, 0xFFFF]), st.sampled_from([P.VERSION, 0, 2, 255]),
    st.integers(0, 255), st.integers(0, 2**64 - 1), st.integers(0, 2**32 - 1),
)
meta_st = st.one_of(
    st.binary(max_size=64),
    st.dictionaries(st.sampled_from(["topic", "partition", "offset", "acks", "partitions", "max_bytes",
                                     "max_wait_ms", "group", "offsets", "spec", "timestamp", "config",
                                     "member_id", "generation", "topics"]),
                    st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70), st.text(max_size=20),
                              st.lists(st.one_of(st.integers(-5, 5), st.text(max_size=5)), max_size=4),
                              st.dictionaries(st.text(max_size=5), st.integers(), max_size=2)),
                    max_size=6).map(lambda d: json.dumps(d).encode()),
)
batch = encode_batch([b"fuzz"], 1)
payload_st = st.one_of(st.binary(max_size=200), st.just(batch), st.just(batch[:-1]), st.just(batch + b"x"),
                       st.just(b"\x00" * 52))
frames_st = st.lists(st.one_of(header_st, meta_st, payload_st), min_size=0, max_size=5)


def test_malformed_frames_never_hurt_the_broker(broker):
    with Producer(broker.endpoint, linger_ms=0) as producer:
        for i in range(20):
            producer.send("precious", f"v{i}".encode())
        producer.flush(5)
    context = zmq.Context.instance()
    sock = context.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(broker.endpoint)
    replies = {"errors": 0}

    @settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
    @given(frames_st)
    def throw(frames):
        if not frames:
            frames = [b""]
        sock.send_multipart(frames)
        # a request with a valid header and kind must be answered; drain whatever comes
        while sock.poll(20):
            reply = sock.recv_multipart()
            header = P.decode_header(reply[0])
            assert header.is_reply
            if header.status:
                meta = json.loads(reply[1])
                assert meta["message"] and meta["error"] == header.status
                replies["errors"] += 1

    try:
        throw()
    finally:
        sock.close()
    assert replies["errors"] > 50
    assert broker.proc.poll() is None, "the broker is still running"
    with Admin(broker.endpoint) as admin:
        admin.ping()
        topics = admin.list_topics()
    assert topics["precious"]["partitions"][0]["next_offset"] >= 20
    consumer = Consumer(broker.endpoint)
    consumer.assign([("precious", 0)])
    values = []
    while len(values) < 20:
        got = consumer.poll(2)
        assert got
        values += [bytes(r.value) for r in got]
    consumer.close()
    assert values[:20] == [f"v{i}".encode() for i in range(20)]


def _ask(sock, kind: int, meta: bytes) -> tuple[int, dict]:
    sock.send_multipart([P.encode_header(kind, 7), meta, *([batch] if kind == P.PRODUCE else [])])
    assert sock.poll(5000), f"no reply to {P.REQUEST_TYPES[kind]} {meta!r}"
    reply = sock.recv_multipart()
    return P.decode_header(reply[0]).status, json.loads(reply[1])


def test_malformed_fields_get_protocol_errors_not_internal_errors(broker):
    """Every request kind with bad field values: a typed error naming the field (code 11,
    InvalidRequest, or another specific code), never the catch-all "internal error" (code 1)."""
    sock = zmq.Context.instance().socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(broker.endpoint)
    try:
        for parts in ([["t"]], [[1, 2]], [["t", "x"]], [None], ["ab"], [["t", -1]], [["t", 0, 1]], 5):
            status, meta = _ask(sock, P.FETCH_OFFSETS, json.dumps({"group": "g", "partitions": parts}).encode())
            assert status == InvalidRequestError.code, (parts, meta)
        kinds = sorted(P.REQUEST_TYPES)

        @settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck))
        @given(st.sampled_from(kinds), meta_st)
        def ask(kind, meta):
            status, reply = _ask(sock, kind, meta)
            assert status != BrokerError.code, f"{P.REQUEST_TYPES[kind]} {meta!r}: {reply}"

        ask()
    finally:
        sock.close()
    assert broker.proc.poll() is None
