"""Batches that pass the CRC but cannot be decoded, decompression bombs, and a consumer that
meets damage on disk.

A producer can send a batch whose CRC is right and whose contents are not (a buggy or
hostile client): each kind must be refused at produce with CorruptBatchError, nothing
written, so that no consumer of the partition ever stalls on it. A batch damaged on disk
later is reported to the consumer, which skips it only when asked to (``skip_corrupt``).
"""

from __future__ import annotations

import os

import pytest
import zstandard
from crc32c import crc32c

from broker import protocol as P
from broker import record_codec as rc
from broker import records as rec
from broker.client import Admin, Consumer, Producer
from broker.client.connection import Connection
from broker.errors import CorruptBatchError, RecordTooLargeError, UnknownCodecError
from broker.storage.partition_log import PartitionLog
from broker.topic_config import TopicConfig
from tests.broker.storage.helpers import make_batch, read_all, values_of
from tests.support.broker_process import BrokerProcess


def varint(value: int) -> bytes:
    return rc.varint_bytes(value)


def record(value: bytes = b"x" * 10, *, ts_delta: int = 0, offset_delta: int = 0, key_len: int = -1,
           key: bytes = b"", value_len: int | None = None, headers: bytes = b"\x00", length: int | None = None,
           raw_fields: bytes | None = None) -> bytes:
    """One Kafka v2 record with any field set to whatever (a bad value is the point)."""
    body = raw_fields if raw_fields is not None else (
        b"\x00" + varint(ts_delta) + varint(offset_delta) + varint(key_len) + key
        + varint(len(value) if value_len is None else value_len) + value + headers)
    return varint(len(body) if length is None else length) + body


def crafted(records: list[bytes], *, count: int | None = None, base_ts: int = 1, max_ts: int | None = None,
            codec: int = rec.CODEC_NONE, section: bytes | None = None, attributes: int | None = None,
            last_offset_delta: int | None = None) -> bytes:
    """A v2 batch with a correct CRC around whatever records and header fields are given."""
    if section is None:
        section = b"".join(records)
        if codec == rec.CODEC_ZSTD:
            section = zstandard.ZstdCompressor().compress(section)
    count = len(records) if count is None else count
    head = bytearray(rec.HEADER.pack(
        0, rec.HEADER_SIZE - rec.LENGTH_FIELD_END + len(section), 0, rec.MAGIC, 0,
        codec if attributes is None else attributes, count - 1 if last_offset_delta is None else last_offset_delta,
        base_ts, base_ts if max_ts is None else max_ts, -1, -1, -1, count))
    rec.CRC.pack_into(head, rec.CRC_OFFSET, crc32c(section, crc32c(bytes(head[rec.CRC_START:]))))
    return bytes(head) + section


TWO = [record(), record(offset_delta=1)]
BAD_BATCHES = {
    "count above the records": lambda: crafted(TWO, count=3),
    "count below the records": lambda: crafted(TWO, count=1),
    "value overruns its record": lambda: crafted([record(), record(offset_delta=1, value_len=500)]),
    "record length past the section": lambda: crafted([record(length=400)]),
    "trailing bytes after the records": lambda: crafted([*TWO, b"\x00" * 5]),
    "key length below -1": lambda: crafted([record(key_len=-7)]),
    "malformed headers": lambda: crafted([record(headers=b"\x02\x09ab" + b"\x02v")]),
    "headers count beyond the record": lambda: crafted([record(headers=b"\x7e")]),
    "offset deltas not dense": lambda: crafted([record(), record(offset_delta=2)]),
    "maxTimestamp not the records' maximum": lambda: crafted([record(), record(ts_delta=9, offset_delta=1)],
                                                             max_ts=999_999),
    "overlong varint": lambda: crafted([record(raw_fields=b"\x00" + b"\x80" * 11 + b"\x00")]),
    "zstd section that is not zstd": lambda: crafted([], count=1, codec=rec.CODEC_ZSTD,
                                                     section=b"\x28\xb5\x2f\xfd" + os.urandom(40)),
    "zstd section with an inconsistent record": lambda: crafted([record(value_len=50)], codec=rec.CODEC_ZSTD),
    "codec bits unknown": lambda: crafted(TWO, attributes=7),
    "transactional batch": lambda: crafted(TWO, attributes=0x10),
    "lastOffsetDelta not count - 1": lambda: crafted(TWO, last_offset_delta=5),
}


def zstd_bomb(inflated: int) -> bytes:
    """A valid-looking one-record zstd batch whose records inflate to ``inflated`` bytes."""
    value_len = inflated - 16
    head = record(b"", value_len=value_len, headers=b"")
    head = record(b"", value_len=value_len, headers=b"", length=len(head) - 1 + value_len + 1)
    compressor = zstandard.ZstdCompressor(level=1)
    chunks = compressor.compressobj(size=len(head) + value_len + 1)
    parts = [chunks.compress(head)]
    zeros = bytes(1 << 20)
    left = value_len
    while left:
        step = min(left, len(zeros))
        parts.append(chunks.compress(zeros[:step]))
        left -= step
    parts.append(chunks.compress(b"\x00"))  # headers count
    parts.append(chunks.flush())
    return crafted([], count=1, codec=rec.CODEC_ZSTD, section=b"".join(parts))


@pytest.mark.parametrize("kind", sorted(BAD_BATCHES))
def test_crc_valid_inconsistent_batches_are_refused_at_produce(tmp_path, kind):
    log = PartitionLog(tmp_path, "t", 0, TopicConfig())
    log.append(make_batch(0, 3))
    batch = BAD_BATCHES[kind]()
    if kind not in ("codec bits unknown", "lastOffsetDelta not count - 1"):  # header checks catch these
        rec.validate_batch(batch)  # the CRC is right
    with pytest.raises((CorruptBatchError, UnknownCodecError)):
        log.append(batch)
    assert log.next_offset == 3 and os.path.getsize(log.active.log_path) == log.active.size
    log.append(make_batch(3, 2))
    assert values_of(read_all(log)) == list(range(5)), "consumers of the partition are not stalled"


def test_a_record_above_max_record_bytes_is_refused_even_inside_a_small_batch(tmp_path):
    log = PartitionLog(tmp_path, "t", 0, TopicConfig(max_record_bytes=1_000))
    batch = crafted([record(b"\x00" * 5_000)], codec=rec.CODEC_ZSTD)  # 5 kB compresses to ~30 B
    with pytest.raises(RecordTooLargeError, match="above the limit of 1000"):
        log.append(batch)
    assert log.next_offset == 0


def test_a_decompression_bomb_is_refused_at_produce_and_by_client_decoders(tmp_path):
    bomb = zstd_bomb(300 * 1024 * 1024)  # 300 MiB of zeros in ~10 KB
    assert len(bomb) < 64 * 1024
    log = PartitionLog(tmp_path, "t", 0, TopicConfig())
    with pytest.raises(CorruptBatchError, match="above the bound"):
        log.append(bomb)
    assert log.next_offset == 0
    # a client decoder meeting it (old data, another broker) never inflates beyond its bound
    with pytest.raises(CorruptBatchError, match="above the bound"):
        rec.decode_batches(bomb)
    with pytest.raises(CorruptBatchError, match="above the bound"):
        rec.decode_batches_values(bomb)
    # without a declared size it is read in bounded steps and refused at the bound
    unsized = zstandard.ZstdCompressor(write_content_size=False).compress(bytes(8 * 1024 * 1024))
    with pytest.raises(CorruptBatchError, match="beyond the bound"):
        rec.records_section(crafted([], count=1, codec=rec.CODEC_ZSTD, section=unsized), max_bytes=1 << 20)


def test_the_broker_refuses_a_bad_batch_and_the_consumer_skips_damage_on_request(tmp_path):
    data_dir = tmp_path / "data"
    broker = BrokerProcess(data_dir).start()
    try:
        with Admin(broker.endpoint) as admin:  # flush=batch: each durable ack at its own fsync, not the 200 ms interval
            admin.create_topic("t", config={"flush": "batch"})
        with Producer(broker.endpoint, linger_ms=0, acks="durable") as producer:
            for i in range(20):
                producer.send("t", f"{i:012d}".encode().ljust(400, b"."), partition=0).result(10)
        connection = Connection(broker.endpoint)
        for kind in ("count above the records", "malformed headers"):
            with pytest.raises(CorruptBatchError):
                connection.request(P.PRODUCE, {"topic": "t", "partition": 0, "acks": P.ACKS_WRITTEN},
                                   [BAD_BATCHES[kind]()])
        connection.close()
    finally:
        assert broker.stop() == 0
    # damage on disk afterwards: a payload byte of record 5 (CRC fails at the consumer) and
    # the base offset of record 12 (only the broker can see it)
    segment = next((data_dir / "t" / "0").glob("*.log"))
    raw = bytearray(segment.read_bytes())
    positions = [0]
    for header, _batch in rec.iter_batches(raw):
        positions.append(positions[-1] + header.batch_length)
    raw[positions[5] + rec.HEADER_SIZE + 100] ^= 0x01
    rec.BASE_OFFSET.pack_into(raw, positions[12], 12 + (1 << 20))
    segment.write_bytes(bytes(raw))
    broker = BrokerProcess(data_dir).start()
    try:
        strict = Consumer(broker.endpoint)
        strict.assign([("t", 0)])
        strict.seek("t", 0, 0)
        with pytest.raises(CorruptBatchError):
            for _ in range(5):
                strict.poll(1)
        strict.close()
        reported = []
        consumer = Consumer(broker.endpoint, skip_corrupt=True,
                            on_corrupt=lambda *damage: reported.append(damage[:4]))
        consumer.assign([("t", 0)])
        consumer.seek("t", 0, 0)
        got = []
        for _ in range(20):
            got += consumer.poll(1)
            if consumer.position("t", 0) >= 20:
                break
        consumer.close()
        with Admin(broker.endpoint) as admin:
            stats = admin.metadata()["broker"]
        assert stats["corrupt_batches"] == 1  # the broker saw the base offset; the CRC is the client's
    finally:
        assert broker.stop() == 0
    assert [r.offset for r in got] == [i for i in range(20) if i not in (5, 12)]
    assert [int(bytes(r.value[:12])) for r in got] == [r.offset for r in got]
    assert [d[2:] for d in reported] == [(5, 6), (12, 13)]
