"""Batches that pass the CRC but cannot be decoded, decompression bombs, and a consumer that
meets damage on disk.

A producer can send a batch whose CRC is right and whose contents are not (a buggy or
hostile client): each kind must be refused at produce with CorruptBatchError, nothing
written, so that no consumer of the partition ever stalls on it. A batch damaged on disk
later is reported to the consumer, which skips it only when asked to (``skip_corrupt``).
"""

from __future__ import annotations

import os

import numpy as np
import pytest
import zstandard
from crc32c import crc32c

from broker import protocol as P
from broker import records as rec
from broker.client import Admin, Consumer, Producer
from broker.client.connection import Connection
from broker.errors import CorruptBatchError, RecordTooLargeError, UnknownCodecError
from broker.storage.partition_log import PartitionLog
from broker.topic_config import TopicConfig
from tests.broker.storage.helpers import make_batch, read_all, values_of
from tests.support.broker_process import BrokerProcess


def crafted(table: np.ndarray, data: bytes, *, count: int | None = None, first_ts: int = 1_000,
            max_ts: int | None = None, codec: int = rec.CODEC_NONE, section: bytes | None = None) -> bytes:
    """A batch with a correct CRC around whatever table, data and header fields are given."""
    if section is None:
        section = table.tobytes() + data
        if codec == rec.CODEC_ZSTD:
            section = zstandard.ZstdCompressor().compress(section)
    count = len(table) if count is None else count
    max_ts = first_ts + int(table["ts_delta"].max()) if max_ts is None else max_ts
    fields = rec.RECORD_COUNT.pack(count) + rec.FIRST_TIMESTAMP.pack(first_ts) + rec.MAX_TIMESTAMP.pack(max_ts)
    crc = crc32c(section, crc32c(fields))
    head = rec.HEADER.pack(0, rec.HEADER_SIZE + len(section), rec.MAGIC, rec.VERSION, codec, 0, 0, crc,
                           count, first_ts, max_ts)
    return head + section


def table_of(*value_lens: int, key_len: int = -1, headers_len: int = 0, deltas=None) -> np.ndarray:
    table = np.zeros(len(value_lens), dtype=rec.ENTRY_DTYPE)
    table["value_len"] = value_lens
    table["key_len"] = key_len
    table["headers_len"] = headers_len
    if deltas is not None:
        table["ts_delta"] = deltas
    return table


BAD_BATCHES = {
    "count above the table": lambda: crafted(table_of(10, 10), b"x" * 20, count=3),
    "count below the table": lambda: crafted(table_of(10, 10), b"x" * 20, count=1),
    "value overruns the section": lambda: crafted(table_of(10, 500), b"x" * 20),
    "trailing bytes after the records": lambda: crafted(table_of(10, 10), b"x" * 25),
    "key length below -1": lambda: crafted(table_of(10, key_len=-7), b"x" * 10),
    "malformed headers block": lambda: crafted(table_of(4, headers_len=6), b"\x02\x00\x09\x00ab" + b"v" * 4),
    "record 0 with a time delta": lambda: crafted(table_of(5, 5, deltas=[7, 9]), b"x" * 10),
    "max_timestamp not the records' maximum": lambda: crafted(table_of(5, 5, deltas=[0, 9]), b"x" * 10,
                                                            max_ts=999_999),
    "zstd section that is not zstd": lambda: crafted(table_of(5), b"", codec=rec.CODEC_ZSTD,
                                                     section=b"\x28\xb5\x2f\xfd" + os.urandom(40)),
    "zstd section with an inconsistent table": lambda: crafted(table_of(5, 50), b"x" * 10, codec=rec.CODEC_ZSTD),
    "codec byte unknown": lambda: crafted(table_of(5), b"x" * 5, codec=7),
}


def zstd_bomb(inflated: int) -> bytes:
    """A valid-looking one-record zstd batch whose records section inflates to ``inflated``."""
    table = table_of(inflated - rec.ENTRY_SIZE)
    compressor = zstandard.ZstdCompressor(level=1)
    chunks = compressor.compressobj(size=inflated)
    parts = [chunks.compress(table.tobytes())]
    zeros = bytes(1 << 20)
    left = inflated - rec.ENTRY_SIZE
    while left:
        step = min(left, len(zeros))
        parts.append(chunks.compress(zeros[:step]))
        left -= step
    parts.append(chunks.flush())
    return crafted(table, b"", codec=rec.CODEC_ZSTD, section=b"".join(parts))


@pytest.mark.parametrize("kind", sorted(BAD_BATCHES))
def test_crc_valid_inconsistent_batches_are_refused_at_produce(tmp_path, kind):
    log = PartitionLog(tmp_path, "t", 0, TopicConfig())
    log.append(make_batch(0, 3))
    batch = BAD_BATCHES[kind]()
    if kind != "codec byte unknown":
        rec.validate_batch(batch)  # the CRC is right
    with pytest.raises((CorruptBatchError, UnknownCodecError)):
        log.append(batch)
    assert log.next_offset == 3 and os.path.getsize(log.active.log_path) == log.active.size
    log.append(make_batch(3, 2))
    assert values_of(read_all(log)) == list(range(5)), "consumers of the partition are not stalled"


def test_a_record_above_max_record_bytes_is_refused_even_inside_a_small_batch(tmp_path):
    log = PartitionLog(tmp_path, "t", 0, TopicConfig(max_record_bytes=1_000))
    batch = crafted(table_of(5_000), b"\x00" * 5_000, codec=rec.CODEC_ZSTD)  # 5 kB compresses to ~30 B
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
        rec.records_section(crafted(table_of(1), b"", codec=rec.CODEC_ZSTD, section=unsized), max_bytes=1 << 20)


def test_the_broker_refuses_a_bad_batch_and_the_consumer_skips_damage_on_request(tmp_path):
    data_dir = tmp_path / "data"
    broker = BrokerProcess(data_dir).start()
    try:
        with Producer(broker.endpoint, linger_ms=0, acks="durable") as producer:
            for i in range(20):
                producer.send("t", f"{i:012d}".encode().ljust(400, b"."), partition=0).result(10)
        connection = Connection(broker.endpoint)
        for kind in ("count above the table", "malformed headers block"):
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
    raw[positions[5] + rec.HEADER_SIZE + rec.ENTRY_SIZE + 100] ^= 0x01
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
