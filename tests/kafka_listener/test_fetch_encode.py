"""The hand-written Fetch encoder equals kio's encoding (generated from Kafka's schema)
byte for byte, at every served version, for any mix of partitions, errors and records."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from broker.kafka import codec
from broker.kafka.fetch_encode import encode_fetch_response

partition = st.fixed_dictionaries({
    "partition_index": st.integers(0, 2**31 - 1), "error_code": st.sampled_from([0, 1, 3, 56]),
    "high_watermark": st.integers(-1, 2**62), "last_stable_offset": st.integers(-1, 2**62),
    "log_start_offset": st.integers(-1, 2**62), "aborted_transactions": st.none(),
    "preferred_read_replica": st.just(-1), "records": st.binary(max_size=300)})
topic = st.fixed_dictionaries({"topic": st.text(min_size=1, max_size=20),
                               "partitions": st.lists(partition, max_size=4)})
answer = st.fixed_dictionaries({"error_code": st.just(0), "session_id": st.just(0),
                                "responses": st.lists(topic, max_size=3)})


@settings(max_examples=150, deadline=None)
@given(version=st.integers(4, 12), values=answer, correlation_id=st.integers(-(2**31), 2**31 - 1))
def test_hand_encoding_equals_kio(version, values, correlation_id):
    expected = codec.encode_response(1, version, correlation_id, codec.build(codec.response_schema(1, version), values))
    parts = encode_fetch_response(version, correlation_id, values)
    assert b"".join(bytes(p) for p in parts) == expected
