"""Record batch format: round trips, validation, and damage detection."""

from __future__ import annotations

import os

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from crc32c import crc32c

from broker import batch_checks as checks
from broker import records as rec
from broker.errors import CorruptBatchError, RecordTooLargeError, UnknownCodecError


def test_header_layout_matches_format_doc():
    assert rec.HEADER_SIZE == 52
    assert (rec.BASE_OFFSET_OFFSET, rec.BATCH_LENGTH_OFFSET, rec.MAGIC_OFFSET) == (0, 8, 12)
    assert (rec.APPEND_TIME_OFFSET, rec.CRC_OFFSET, rec.CRC_START) == (20, 28, 32)
    assert rec.ENTRY_SIZE == 20


@pytest.mark.parametrize("codec", ["none", "zstd"])
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
    assert header.first_timestamp == 1_000 and header.max_timestamp == 5_000
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


def test_stamp_keeps_crc_valid():
    batch = bytearray(rec.encode_batch([b"a", b"b"], 10))
    rec.stamp_batch(batch, 12345, 99)
    header = rec.validate_batch(batch)
    assert (header.base_offset, header.append_time, header.last_offset) == (12345, 99, 12346)
    assert [r.offset for r in rec.decode_batch(batch)] == [12345, 12346]


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
        (lambda b: b[:12] + b"XXXX" + b[16:], "magic"),
        (lambda b: b[:16] + b"\x09" + b[17:], "version"),
    ],
)
def test_damaged_headers_raise_clear_errors(damage, message):
    batch = rec.encode_batch([b"x" * 100], 1)
    with pytest.raises(CorruptBatchError, match=message):
        rec.validate_batch(damage(batch))


def test_unknown_codec_refused():
    with pytest.raises(UnknownCodecError, match="lz4"):
        rec.encode_batch([b"x"], 1, codec="lz4")
    batch = bytearray(rec.encode_batch([b"x"], 1))
    batch[rec.CODEC_OFFSET] = 7
    with pytest.raises(UnknownCodecError):
        rec.parse_header(batch)


def test_oversized_record_refused():
    with pytest.raises(RecordTooLargeError, match="above the limit"):
        rec.encode_batch([b"x" * 101], 1, max_record_bytes=100)
    with pytest.raises(RecordTooLargeError):
        rec.encode_batch([b"x" * 101], 1, keys=[b"k"], max_record_bytes=100)


def test_inconsistent_table_is_corrupt_not_garbage():
    # a well-formed CRC over a table that lies about lengths must still be refused
    batch = bytearray(rec.encode_batch([b"abc", b"def"], 1))
    table_value_len = rec.HEADER_SIZE + 16  # value_len of entry 0
    batch[table_value_len] = 200
    crc = crc32c(bytes(batch[rec.CRC_START :]))
    rec.CRC.pack_into(batch, rec.CRC_OFFSET, crc)
    with pytest.raises(CorruptBatchError):
        rec.decode_batch(batch)


def test_decode_batches_skips_below_min_offset():
    a = bytearray(rec.encode_batch([b"0", b"1", b"2"], 1))
    rec.stamp_batch(a, 0, 0)
    b = bytearray(rec.encode_batch([b"3", b"4"], 1))
    rec.stamp_batch(b, 3, 0)
    out = rec.decode_batches(bytes(a + b), min_offset=2)
    assert [(r.offset, bytes(r.value)) for r in out] == [(2, b"2"), (3, b"3"), (4, b"4")]


def test_one_empty_record_compressed_below_an_entry_still_round_trips():
    # found by hypothesis: zstd made the section 17 bytes, under the 20-byte table entry
    batch = rec.encode_batch([b""], 0, keys=[b""], headers=[{}], codec="zstd")  # a table of 20 zero bytes
    assert len(batch) < rec.HEADER_SIZE + rec.ENTRY_SIZE
    rec.validate_batch(batch)
    assert [(r.key, bytes(r.value)) for r in rec.decode_batch(batch)] == [(b"", b"")]


def test_batch_values_skip_below_min_offset_and_locate_each_value():
    a = bytearray(rec.encode_batch([b"0", b"11", b"222"], [10, 20, 30], keys=[b"k", None, b"kk"],
                                   headers=[{"h": "v"}, None, None]))
    rec.stamp_batch(a, 0, 0)
    b = bytearray(rec.encode_batch([b"3", b"44"], 40))
    rec.stamp_batch(b, 3, 0)
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
    batch = bytearray(rec.encode_batch([b"abc", b"def"], 1))
    batch[rec.HEADER_SIZE + 16] = 200
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
@given(st.lists(record_strategy, min_size=1, max_size=20), st.sampled_from(["none", "zstd"]))
def test_any_records_round_trip(records, codec):
    values, ts, keys, headers = map(list, zip(*records))
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
    values, ts, keys, headers = map(list, zip(*records))
    batch = bytearray(rec.encode_batch(values, ts, keys=keys, headers=headers, codec=codec))
    rec.stamp_batch(batch, 3, 0)
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
@given(st.lists(st.tuples(header_maps, st.integers(0, 40), st.integers(0, 255), st.booleans()), min_size=1, max_size=30))
def test_bulk_headers_check_agrees_with_the_decoder(blocks):
    """The numpy walk over all headers blocks of a batch judges each block exactly as the
    per-record decoder does, for intact blocks and for blocks with a changed byte or a cut."""
    section, starts, lengths, expected = b"\0" * rec.ENTRY_SIZE, [], [], []  # a batch's table comes first
    for headers, where, value, cut in blocks:
        block = bytearray(rec._encode_headers(headers))
        if cut:
            block = block[: max(1, len(block) - 1 - where % len(block))]
        else:
            block[where % len(block)] = value
        starts.append(len(section))
        lengths.append(len(block))
        expected.append(checks._headers_decode(memoryview(bytes(block)), 0, len(block)))
        section += bytes(block)
    found = checks._first_bad_headers_block(memoryview(section), np.array(starts), np.array(lengths, dtype=np.int64))
    first_bad = next((i for i, ok in enumerate(expected) if not ok), None)
    assert found == first_bad


def test_blocks_with_many_headers_are_checked_one_by_one_and_agree():
    many = rec._encode_headers({f"h{i}": b"v" for i in range(70)})
    section = b"\0" * rec.ENTRY_SIZE + many + many[:-1] + many
    starts = np.array([rec.ENTRY_SIZE, rec.ENTRY_SIZE + len(many), rec.ENTRY_SIZE + 2 * len(many) - 1])
    lengths = np.array([len(many), len(many) - 1, len(many)], dtype=np.int64)
    assert checks._first_bad_headers_block(memoryview(section), starts, lengths) == 1
    assert checks._first_bad_headers_block(memoryview(section), starts[[0, 2]], lengths[[0, 2]]) is None
