"""Record batch format (Kafka RecordBatch v2): round trips, validation, and damage detection."""

from __future__ import annotations

import os

import numpy as np
import pytest
from crc32c import crc32c
from hypothesis import given, settings
from hypothesis import strategies as st

from broker import batch_checks as checks
from broker import record_codec as rc
from broker import records as rec
from broker.errors import CorruptBatchError, RecordTooLargeError, UnknownCodecError


def test_header_layout_matches_format_doc():
    assert rec.HEADER_SIZE == 61
    offsets = (rec.BASE_OFFSET_OFFSET, rec.BATCH_LENGTH_OFFSET, rec.LEADER_EPOCH_OFFSET, rec.MAGIC_OFFSET)
    assert offsets == (0, 8, 12, 16)
    assert (rec.CRC_OFFSET, rec.CRC_START, rec.LAST_OFFSET_DELTA_OFFSET, rec.RECORD_COUNT_OFFSET) == (17, 21, 23, 57)


def test_a_known_kafka_batch_byte_for_byte():
    """One record, key b"k", value b"v", timestamp 1 ms, no headers, as Kafka's
    DefaultRecordBatch writes it (fields computed by hand from the Kafka spec)."""
    batch = rec.encode_batch([b"v"], [1_000_000], keys=[b"k"], headers=[None])
    record = bytes([0x00, 0x00, 0x00, 0x02]) + b"k" + bytes([0x02]) + b"v" + bytes([0x00])
    record = bytes([len(record) << 1]) + record
    body = (b"\x00\x00" + (0).to_bytes(4, "big") + (1).to_bytes(8, "big") + (1).to_bytes(8, "big")
            + (-1).to_bytes(8, "big", signed=True) + (-1).to_bytes(2, "big", signed=True)
            + (-1).to_bytes(4, "big", signed=True) + (1).to_bytes(4, "big") + record)
    crc = crc32c(body)
    expected = ((0).to_bytes(8, "big") + (len(body) + 9).to_bytes(4, "big") + (0).to_bytes(4, "big") + b"\x02"
                + crc.to_bytes(4, "big") + body)
    assert batch == expected


@pytest.mark.parametrize("codec", ["none", "gzip", "lz4", "zstd"])
def test_round_trip_with_keys_and_headers(codec):
    batch = rec.encode_batch(
        [b"one", b"", b"three" * 100],
        [1_000, 999, 5_000],
        keys=[None, b"k2", b""],
        headers=[{"sensor": "cam0", "seq": "7"}, None, {"bin": b"\x00\xff"}],
        codec=codec,
    )
    header = rec.validate_batch(batch)
    assert header.record_count == 3
    assert header.base_timestamp_ms == 0 and header.max_timestamp_ms == 0
    assert header.codec == rec.CODECS[codec]
    out = rec.decode_batch(batch)
    assert [bytes(r.value) for r in out] == [b"one", b"", b"three" * 100]
    assert [r.key for r in out] == [None, b"k2", b""]
    assert [r.timestamp for r in out] == [1_000, 999, 5_000]
    assert out[0].headers == {"sensor": b"cam0", "seq": b"7"}
    assert out[0].header("sensor") == "cam0"
    assert out[2].headers == {"bin": b"\x00\xff"}


def test_bulk_path_equals_general_path():
    values = [bytes([i]) * (i + 1) for i in range(50)]
    ts = np.arange(50, dtype=np.int64) * 1000 + 7
    bulk = rec.encode_batch(values, ts)
    general = rec.encode_batch(values, ts, keys=[None] * 50, headers=[None] * 50)
    assert bulk == general


def test_bulk_equal_records_built_in_place_equal_the_general_path_and_stamp_in_place():
    # the producer's small-record path: equal values, one capture time, header room reserved,
    # value lengths given, producer fields stamped in place; bytes identical to record by record
    values = [b"v" * 100] * 300
    ts = 1_700_000_000_123_456_789
    lens = np.full(300, 100, dtype=np.int64)
    bulk = rec.encode_batch(values, ts, value_lens=lens)
    general = rec.encode_batch(values, ts, keys=[None] * 300, headers=[None] * 300)
    assert bytes(bulk) == general
    copied = rec.with_producer(general, 7, 1, 42)
    stamped = rec.with_producer(bulk, 7, 1, 42)
    assert stamped is bulk and bytes(stamped) == copied
    assert rec.validate_batch(stamped).record_count == 300
    assert bytes(rec.encode_batch(values, ts, codec="zstd", value_lens=lens)) == rec.encode_batch(
        values, ts, keys=[None] * 300, headers=[None] * 300, codec="zstd")


def test_stamp_keeps_crc_valid():
    batch = bytearray(rec.encode_batch([b"a", b"b"], 10))
    rec.stamp_batch(batch, 12345)
    header = rec.validate_batch(batch)
    assert (header.base_offset, header.append_time, header.last_offset) == (12345, None, 12346)
    assert [r.offset for r in rec.decode_batch(batch)] == [12345, 12346]


def test_log_append_time_prefix_sets_the_type_bit_and_max_timestamp_and_a_valid_crc():
    batch = rec.encode_batch([b"a", b"b"], 7_000_000_123)
    header = rec.validate_batch(batch)
    prefix, rest = rec.stamped_prefix(batch, header, 40, 9_000_000_000_000, log_append_time=True)
    stored = prefix + batch[rest:]
    stamped = rec.validate_batch(stored)
    assert stamped.log_append_time and stamped.append_time == 9_000_000_000_000 and stamped.base_offset == 40
    assert [r.timestamp for r in rec.decode_batch(stored)] == [9_000_000_000_000] * 2
    # the capture time stays readable in its header
    assert rec.decode_batch(stored)[0].header(rec.CAPTURE_HEADER) == "7000000123"


def test_every_flipped_bit_in_covered_bytes_is_detected():
    batch = rec.encode_batch([b"payload" * 10], 42, headers=[{"a": "b"}])
    for pos in range(rec.CRC_START, len(batch)):
        damaged = bytearray(batch)
        damaged[pos] ^= 0x10
        with pytest.raises(CorruptBatchError):
            rec.validate_batch(damaged)


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda b: b[:30], "truncated"),
        (lambda b: b[:-1], "truncated"),
        (lambda b: b[:16] + b"\x01" + b[17:], "magic"),
        (lambda b: b[:16] + b"\x09" + b[17:], "magic"),
    ],
)
def test_damaged_headers_raise_clear_errors(damage, message):
    batch = rec.encode_batch([b"x" * 100], 1)
    with pytest.raises(CorruptBatchError, match=message):
        rec.validate_batch(damage(batch))


def test_unknown_codec_refused():
    with pytest.raises(UnknownCodecError, match="lz5"):
        rec.encode_batch([b"x"], 1, codec="lz5")
    batch = bytearray(rec.encode_batch([b"x"], 1))
    batch[rec.CRC_START + 1] = 7
    with pytest.raises(UnknownCodecError):
        rec.parse_header(batch)


def test_oversized_record_refused():
    with pytest.raises(RecordTooLargeError, match="above the limit"):
        rec.encode_batch([b"x" * 101], 1, max_record_bytes=100)
    with pytest.raises(RecordTooLargeError):
        rec.encode_batch([b"x" * 101], 1, keys=[b"k"], max_record_bytes=100)


def test_inconsistent_table_is_corrupt_not_garbage():
    # a well-formed CRC over a table that lies about lengths must still be refused
    batch = bytearray(rec.encode_batch([b"abc", b"def"], 1_000_000))
    value_len = rec.HEADER_SIZE + 5  # record 0: length, attributes, ts delta, offset delta, key length, value length
    assert batch[value_len] == 6
    batch[value_len] = 200
    crc = crc32c(bytes(batch[rec.CRC_START :]))
    rec.CRC.pack_into(batch, rec.CRC_OFFSET, crc)
    with pytest.raises(CorruptBatchError):
        rec.decode_batch(batch)


def test_decode_batches_skips_below_min_offset():
    a = bytearray(rec.encode_batch([b"0", b"1", b"2"], 1))
    rec.stamp_batch(a, 0)
    b = bytearray(rec.encode_batch([b"3", b"4"], 1))
    rec.stamp_batch(b, 3)
    out = rec.decode_batches(bytes(a + b), min_offset=2)
    assert [(r.offset, bytes(r.value)) for r in out] == [(2, b"2"), (3, b"3"), (4, b"4")]


def test_one_empty_record_round_trips_in_every_codec():
    for codec in ("none", "gzip", "lz4", "zstd"):
        batch = rec.encode_batch([b""], 0, keys=[b""], headers=[{}], codec=codec)
        rec.validate_batch(batch)
        assert [(r.key, bytes(r.value)) for r in rec.decode_batch(batch)] == [(b"", b"")]
    batch = rec.encode_batch([b""], 0, keys=[b""], headers=[{}], codec="zstd")
    assert [(r.key, bytes(r.value)) for r in rec.decode_batch(batch)] == [(b"", b"")]


def test_batch_values_skip_below_min_offset_and_locate_each_value():
    a = bytearray(rec.encode_batch([b"0", b"11", b"222"], [10, 20, 30], keys=[b"k", None, b"kk"],
                                   headers=[{"h": "v"}, None, None]))
    rec.stamp_batch(a, 0)
    b = bytearray(rec.encode_batch([b"3", b"44"], 40))
    rec.stamp_batch(b, 3)
    chunks = rec.decode_batches_values(bytes(a + b), topic="t", partition=2, min_offset=1)
    assert [len(c) for c in chunks] == [2, 2]
    assert [bytes(v) for c in chunks for v in c.values()] == [b"11", b"222", b"3", b"44"]
    assert chunks[0].offsets.tolist() == [1, 2] and chunks[1].offsets.tolist() == [3, 4]
    assert chunks[0].timestamps.tolist() == [20, 30] and chunks[1].timestamps.tolist() == [40, 40]
    assert (chunks[0].topic, chunks[0].partition, chunks[0].nbytes) == ("t", 2, 5)
    assert bytes(chunks[1].value(1)) == b"44"
    late = chunks[0].select(chunks[0].timestamps >= 25)
    assert late.offsets.tolist() == [2] and [bytes(v) for v in late.values()] == [b"222"]
    assert rec.decode_batches_values(bytes(a + b), min_offset=5) == []


def test_inconsistent_table_is_corrupt_for_the_bulk_decoder_too():
    batch = bytearray(rec.encode_batch([b"abc", b"def"], 1_000_000))
    batch[rec.HEADER_SIZE + 5] = 200
    rec.CRC.pack_into(batch, rec.CRC_OFFSET, crc32c(bytes(batch[rec.CRC_START :])))
    with pytest.raises(CorruptBatchError):
        rec.decode_batch_values(batch)


record_strategy = st.tuples(
    st.binary(max_size=300),
    st.integers(min_value=-(2**62), max_value=2**62),
    st.one_of(st.none(), st.binary(max_size=20)),
    st.dictionaries(st.text(min_size=1, max_size=10), st.binary(max_size=20), max_size=3),
)


@settings(max_examples=int(os.environ.get("EDGE_FUZZ_EXAMPLES", "150")), deadline=None)
@given(st.lists(record_strategy, min_size=1, max_size=20), st.sampled_from(["none", "gzip", "lz4", "zstd"]))
def test_any_records_round_trip(records, codec):
    values, ts, keys, headers = map(list, zip(*records, strict=True))
    batch = rec.encode_batch(values, ts, keys=keys, headers=headers, codec=codec)
    out = rec.decode_batch(batch)
    assert [bytes(r.value) for r in out] == values
    assert [r.timestamp for r in out] == ts
    assert [r.key for r in out] == keys
    assert [r.headers for r in out] == headers


@settings(max_examples=100, deadline=None)
@given(st.lists(record_strategy, min_size=1, max_size=20), st.sampled_from(["none", "zstd"]),
       st.integers(min_value=0, max_value=25))
def test_bulk_values_equal_decoded_records(records, codec, min_offset):
    values, ts, keys, headers = map(list, zip(*records, strict=True))
    batch = bytearray(rec.encode_batch(values, ts, keys=keys, headers=headers, codec=codec))
    rec.stamp_batch(batch, 3)
    expected = [r for r in rec.decode_batch(batch) if r.offset >= min_offset]
    got = rec.decode_batches_values(bytes(batch), min_offset=min_offset)
    if not expected:
        assert got == []
        return
    (chunk,) = got
    assert [bytes(v) for v in chunk.values()] == [bytes(r.value) for r in expected]
    assert chunk.offsets.tolist() == [r.offset for r in expected]
    assert chunk.timestamps.tolist() == [r.timestamp for r in expected]
    assert chunk.nbytes == sum(len(r.value) for r in expected)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200))
def test_random_bytes_never_decode(data):
    if not data:
        assert list(rec.iter_batches(data)) == []
        return
    with pytest.raises((CorruptBatchError, UnknownCodecError)):
        list(rec.iter_batches(data))


header_maps = st.dictionaries(st.text(min_size=0, max_size=6), st.binary(max_size=8), min_size=1, max_size=5)


@settings(max_examples=int(os.environ.get("EDGE_FUZZ_EXAMPLES", "150")), deadline=None)
@given(st.lists(st.tuples(header_maps, st.integers(0, 400), st.integers(0, 255), st.booleans()),
                min_size=1, max_size=30))
def test_bulk_headers_check_agrees_with_the_decoder(blocks):
    """The produce check (numpy over all records' headers) refuses a batch exactly when the
    per-record decoder fails on it, for intact records and records with a changed byte."""
    headers = [h for h, _, _, _ in blocks]
    batch = bytearray(rec.encode_batch([b"v"] * len(blocks), 1_000_000, keys=[b"k"] * len(blocks), headers=headers))
    for _headers, where, value, change in blocks:
        if change:
            batch[rec.HEADER_SIZE + where % (len(batch) - rec.HEADER_SIZE)] = value
    rec.CRC.pack_into(batch, rec.CRC_OFFSET, crc32c(bytes(batch[rec.CRC_START :])))
    try:
        rec.decode_batch(batch)
        decodes = True
    except CorruptBatchError:
        decodes = False
    try:
        checks.check_batch_records(batch, max_record_bytes=1 << 20, max_section_bytes=1 << 22)
        accepted = True
    except CorruptBatchError:
        accepted = False
    if accepted:
        assert decodes
    if not decodes:
        assert not accepted


def test_records_with_many_headers_are_checked_one_by_one_and_agree():
    many = {f"h{i}": b"v" for i in range(70)}
    batch = bytearray(rec.encode_batch([b"a", b"b"], 1_000_000, keys=[None, None], headers=[many, many]))
    checks.check_batch_records(batch, max_record_bytes=1 << 20, max_section_bytes=1 << 22)
    batch[-2] = 0x7E  # the last header value length (63) of the last record now runs past it
    rec.CRC.pack_into(batch, rec.CRC_OFFSET, crc32c(bytes(batch[rec.CRC_START :])))
    with pytest.raises(CorruptBatchError, match="record 1"):
        checks.check_batch_records(batch, max_record_bytes=1 << 20, max_section_bytes=1 << 22)


@pytest.mark.parametrize("log_append_time", [False, True])
def test_record_timestamps_past_int64_are_refused_as_overflow(log_append_time):
    """baseTimestamp plus a record's delta above int64 is refused by name, for LogAppendTime
    batches too (whose maxTimestamp check does not run): the check used to read
    ``not MIN <= low and high <= MAX``, which let every overflow upward through."""
    batch = bytearray(rec.encode_batch([b"a", b"b"], [0, 5_000_000_000]))  # record deltas 0 and 5000 ms
    fields = list(rec.HEADER.unpack_from(batch))
    fields[5] |= rec.ATTR_LOG_APPEND_TIME if log_append_time else 0
    fields[7] = fields[8] = (1 << 63) - 10  # baseTimestamp, maxTimestamp: the second record lands past int64
    rec.HEADER.pack_into(batch, 0, *fields)
    rec.CRC.pack_into(batch, rec.CRC_OFFSET, crc32c(bytes(batch[rec.CRC_START :])))
    with pytest.raises(CorruptBatchError, match="record timestamps overflow int64"):
        checks.check_batch_records(batch, max_record_bytes=1 << 20, max_section_bytes=1 << 22)


@pytest.mark.parametrize("values", [
    list(range(20_000)),                 # offset deltas: 1, 2 and 3 bytes in runs
    [100] * 500,                         # equal 2-byte lengths
    [-1, 0, 63, -64, 64, 8191, -8192, 8192, 1 << 19, -(1 << 20), (1 << 20) - 1, 1 << 20, (1 << 31) - 1, -(1 << 31)],
])
def test_read_varints_fast_paths_agree_with_the_scalar_decoder(values):
    encoded = [rc.varint_bytes(v) for v in values]
    raw = np.frombuffer(b"".join(encoded) + b"\x00\x00\x00", dtype=np.uint8)
    starts = np.cumsum([0] + [len(e) for e in encoded[:-1]]).astype(np.int64)
    ends = starts + np.array([len(e) for e in encoded], dtype=np.int64)
    decoded, sizes = rc.read_varints(raw, starts, ends)
    assert decoded.tolist() == values and sizes.tolist() == [len(e) for e in encoded]
    with pytest.raises(CorruptBatchError, match="runs past"):
        rc.read_varints(raw, starts, np.maximum(ends - 1, starts + 1) if max(map(len, encoded)) > 1 else starts)


def _layouts_agree(batch, monkeypatch):
    """record_layout with the run-template shortcut and without it: both refuse, or both give
    the same arrays; check_batch_records likewise."""
    from broker import record_layout as rl

    def outcome(fast):
        if not fast:
            monkeypatch.setattr(rl, "_uniform_layout", lambda *a: None)
        try:
            lay = rl.record_layout(batch)
            arrays = [getattr(lay, f).tolist() for f in ("ends", "ts_deltas", "offset_deltas", "key_starts",
                                                          "key_lens", "value_starts", "value_lens", "header_counts",
                                                          "headers_starts")]
            try:
                checks.check_batch_records(batch, max_record_bytes=1 << 20, max_section_bytes=1 << 24)
                checked = "ok"
            except CorruptBatchError as exc:
                checked = exc.message
            return arrays, checked, lay.headers_checked
        except CorruptBatchError:
            return "corrupt", None, None
        finally:
            monkeypatch.undo()

    fast, slow = outcome(True), outcome(False)
    assert fast[:2] == slow[:2]
    return fast[2]


def test_run_template_layout_agrees_with_the_field_walk_on_damaged_bytes(monkeypatch):
    # 70 equal records: two runs (1- and 2-byte offset deltas), a capture header each
    batch = bytearray(rec.encode_batch([b"x" * 30] * 70, 1_700_000_000_123_456_789))
    assert _layouts_agree(batch, monkeypatch) is True  # the shortcut applies to the intact batch
    for pos in range(rec.HEADER_SIZE, len(batch), 3):
        for flip in (0x80, 0x01):
            damaged = bytearray(batch)
            damaged[pos] ^= flip
            _layouts_agree(damaged, monkeypatch)


def test_run_template_layout_with_keys_and_headers_agrees(monkeypatch):
    values = [b"v" * 10] * 40 + [b"w" * 300] * 30
    batch = rec.encode_batch(values, 5_000_000, keys=[b"k"] * 70, headers=[{"a": b"1", "b": None}] * 70)
    assert _layouts_agree(batch, monkeypatch) is True
