"""Fetch responses (v4-12) encoded by hand, so that stored batches go to the socket as the
memoryviews the log returned: no copy of record bytes in Python.

kio's encoder (used for every other answer) builds one bytes object, copying the records
three times; for 1 MB of records that is 2.6 ms (measured), a hard cap near 400 MB/s on
consumers. Here the frame is a list of parts: small encoded pieces and the record views;
the listener sends them with one ``sendmsg``. ``tests/kafka_listener/test_fetch_encode.py``
checks byte-for-byte equality with kio's encoding at every version.

Layout (Kafka's FetchResponse.json): header (correlation id; v12 adds tagged fields),
throttle_time_ms, [v7+] error_code, session_id, responses[topic, partitions[partition_index,
error_code, high_watermark, last_stable_offset, [v5+] log_start_offset,
aborted_transactions (null here), [v11+] preferred_read_replica, records]]. v12 is flexible:
compact strings/arrays/bytes (length + 1 as uvarint) and an empty tagged-field section after
every structure.
"""

from __future__ import annotations

import struct
from typing import TypedDict

from ..record_codec import uvarint_bytes

FLEXIBLE_FROM = 12
_I16, _I32, _I64 = struct.Struct(">h"), struct.Struct(">i"), struct.Struct(">q")
NO_TAGS = b"\x00"


class FetchPartitionValues(TypedDict):
    """One partition of a Fetch answer (the fields this encoder writes)."""

    partition_index: int
    error_code: int
    high_watermark: int
    last_stable_offset: int
    log_start_offset: int
    aborted_transactions: None  # transactions are not served
    preferred_read_replica: int
    records: bytes | memoryview  # whole stored batches, sent as they are


class FetchTopicValues(TypedDict):
    topic: str
    partitions: list[FetchPartitionValues]


class FetchResponseValues(TypedDict):
    error_code: int
    session_id: int
    responses: list[FetchTopicValues]


def encode_fetch_response(version: int, correlation_id: int, values: FetchResponseValues) -> list[bytes | memoryview]:
    """Parts of a size-prefixed frame: bytes pieces and the records' memoryviews."""
    flexible = version >= FLEXIBLE_FROM

    def count(n: int) -> bytes:
        return uvarint_bytes(n + 1) if flexible else _I32.pack(n)

    def string(text: str) -> bytes:
        raw = text.encode()
        return (uvarint_bytes(len(raw) + 1) if flexible else _I16.pack(len(raw))) + raw

    head = bytearray(_I32.pack(correlation_id))
    if flexible:
        head += NO_TAGS
    head += _I32.pack(0)  # throttle_time_ms
    if version >= 7:
        head += _I16.pack(values.get("error_code", 0)) + _I32.pack(values.get("session_id", 0))
    head += count(len(values["responses"]))
    parts: list[bytes | memoryview] = []
    pending = head
    for topic in values["responses"]:
        pending += string(topic["topic"]) + count(len(topic["partitions"]))
        for p in topic["partitions"]:
            pending += _I32.pack(p["partition_index"]) + _I16.pack(p["error_code"]) + _I64.pack(p["high_watermark"])
            pending += _I64.pack(p["last_stable_offset"])
            if version >= 5:
                pending += _I64.pack(p["log_start_offset"])
            pending += b"\x00" if flexible else _I32.pack(-1)  # aborted_transactions: null
            if version >= 11:
                pending += _I32.pack(p["preferred_read_replica"])
            records = p["records"]
            pending += uvarint_bytes(len(records) + 1) if flexible else _I32.pack(len(records))
            if len(records):
                parts.append(bytes(pending))
                parts.append(memoryview(records))
                pending = bytearray()
            if flexible:
                pending += NO_TAGS  # partition
        if flexible:
            pending += NO_TAGS  # topic
    if flexible:
        pending += NO_TAGS  # response
    parts.append(bytes(pending))
    size = sum(len(part) for part in parts)
    return [_I32.pack(size), *parts]
