"""Wire protocol v1: header layout, request parsing, and the reasons given for bad frames."""

from __future__ import annotations

import pytest

from broker import protocol as P
from broker.errors import InvalidRequestError, UnknownTopicError, UnsupportedVersionError, error_from_code


def test_header_layout():
    assert P.HEADER_SIZE == 16
    assert (P.VERSION_OFFSET, P.KIND_OFFSET, P.REQUEST_ID_OFFSET, P.STATUS_OFFSET) == (2, 3, 4, 12)
    raw = P.encode_header(P.FETCH, 2**40 + 5, 7)
    header = P.decode_header(raw)
    assert (header.kind, header.request_id, header.status) == (P.FETCH, 2**40 + 5, 7)


def test_round_trip_request():
    frames = [P.encode_header(P.PRODUCE, 9), P.encode_metadata({"topic": "t", "partition": 0}), b"batch"]
    header, meta, payloads = P.parse_request(frames)
    assert header.request_kind == P.PRODUCE and meta["topic"] == "t" and payloads == [b"batch"]


@pytest.mark.parametrize(
    "frames, reason",
    [
        ([], "at least 2 frames"),
        ([P.encode_header(P.PING, 1)], "at least 2 frames"),
        ([b"short", b"{}"], "header frame is 5 bytes"),
        ([b"\x00" * 16, b"{}"], "bad protocol magic"),
        ([P.encode_header(99, 1), b"{}"], "unknown request type 99"),
        ([P.encode_header(P.PRODUCE, 1), b"{}"], "produce takes 3 frames"),
        ([P.encode_header(P.PING, 1), b"{}", b"extra"], "ping takes 2 frames"),
        ([P.encode_header(P.PING, 1), b"[1,2]"], "JSON object"),
        ([P.encode_header(P.PING, 1), b"\xff\xfe"], "not a JSON object"),
        ([P.encode_header(P.PING | P.REPLY_BIT, 1), b"{}"], "reply was sent"),
    ],
)
def test_malformed_requests_are_explained(frames, reason):
    with pytest.raises(InvalidRequestError, match=reason):
        P.parse_request(frames)


def test_version_mismatch():
    raw = bytearray(P.encode_header(P.PING, 1))
    raw[P.VERSION_OFFSET] = 9
    with pytest.raises(UnsupportedVersionError, match="version 9"):
        P.decode_header(bytes(raw))


def test_field_checks():
    assert P.field({"a": 3}, "a", int, minimum=0) == 3
    with pytest.raises(InvalidRequestError, match="missing field 'a'"):
        P.field({}, "a", int)
    with pytest.raises(InvalidRequestError, match="must be int, got str"):
        P.field({"a": "3"}, "a", int)
    with pytest.raises(InvalidRequestError, match="got bool"):
        P.field({"a": True}, "a", int)
    with pytest.raises(InvalidRequestError, match=">= 0"):
        P.field({"a": -1}, "a", int, minimum=0)


def test_error_reply_rebuilds_typed_error():
    frames = P.error_reply(P.FETCH, 4, UnknownTopicError("unknown topic 'x'"))
    header = P.decode_header(frames[0])
    meta = P.decode_metadata(frames[1])
    err = error_from_code(header.status, meta["message"])
    assert isinstance(err, UnknownTopicError) and "unknown topic" in str(err)


def test_storage_errors_carry_kafkas_name():
    import json

    from broker.errors import DiskFullError

    meta = json.loads(P.error_reply(P.PRODUCE, 3, DiskFullError("disk full: nothing was written"))[1])
    assert meta == {"error": 13, "message": "disk full: nothing was written", "retriable": True,
                    "kafka_error": "KAFKA_STORAGE_ERROR"}
    assert "kafka_error" not in json.loads(P.error_reply(P.PING, 1, InvalidRequestError("bad"))[1])
