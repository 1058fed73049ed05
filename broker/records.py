"""Record batch format, version 1: the unit that is written to disk and sent on the wire.

This module is the one definition of the batch layout; docs/FORMAT.md describes the same
bytes. A batch is produced by the client, validated by the broker (header and CRC here,
the records' consistency in ``broker.batch_checks``), stamped with its base offset and
append time in place, written to a segment as-is, and served to consumers byte for byte.
Decoders never inflate a zstd section beyond a bound (``DEFAULT_MAX_SECTION_BYTES``).

Batch header (52 bytes, little-endian)::

    offset size field            meaning
    0      8    base_offset      i64  offset of the first record (assigned by the broker)
    8      4    batch_length     u32  bytes of the whole batch, header included
    12     4    magic            u32  0x42474445 (b"EDGB")
    16     1    version          u8   format version, 1
    17     1    codec            u8   0 none, 1 zstd (applies to the records section)
    18     2    flags            u16  reserved, 0
    20     8    append_time      i64  ns since the epoch, set by the broker at append
    28     4    crc              u32  CRC-32C (Castagnoli, as Kafka) of bytes [32, batch_length)
    32     4    record_count     u32  >= 1
    36     8    first_timestamp  i64  capture time of record 0, ns since the epoch
    44     8    max_timestamp    i64  largest capture time in the batch
    52     -    records section  (compressed with ``codec``)

The CRC deliberately leaves out base_offset and append_time, which the broker writes in
place; recovery checks base offsets by continuity instead.

Records section, uncompressed: a table of ``record_count`` fixed 20-byte entries, then the
data area holding, for each record in order, its key, its headers block and its value::

    entry: timestamp_delta i64 (ns, relative to first_timestamp)
           key_length      i32 (-1: no key)
           headers_length  u32 (bytes of the headers block; 0: no headers)
           value_length    u32
    headers block: count u16, then per header name_length u16, name (UTF-8),
                   value_length u32, value

The fixed-width table lets a whole batch be built and split with numpy, without a Python
loop over records on the bulk path.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Iterable, Iterator, Mapping, Sequence

import numpy as np
import zstandard
from crc32c import crc32c

from .errors import CorruptBatchError, RecordTooLargeError, UnknownCodecError

MAGIC = 0x42474445  # b"EDGB" read little-endian
VERSION = 1

CODEC_NONE = 0
CODEC_ZSTD = 1
CODECS = {"none": CODEC_NONE, "zstd": CODEC_ZSTD}
CODEC_NAMES = {v: k for k, v in CODECS.items()}

BASE_OFFSET = struct.Struct("<q")
BATCH_LENGTH = struct.Struct("<I")
MAGIC_FIELD = struct.Struct("<I")
VERSION_FIELD = struct.Struct("<B")
CODEC_FIELD = struct.Struct("<B")
FLAGS = struct.Struct("<H")
APPEND_TIME = struct.Struct("<q")
CRC = struct.Struct("<I")
RECORD_COUNT = struct.Struct("<I")
FIRST_TIMESTAMP = struct.Struct("<q")
MAX_TIMESTAMP = struct.Struct("<q")

BASE_OFFSET_OFFSET = 0
BATCH_LENGTH_OFFSET = BASE_OFFSET_OFFSET + BASE_OFFSET.size
MAGIC_OFFSET = BATCH_LENGTH_OFFSET + BATCH_LENGTH.size
VERSION_OFFSET = MAGIC_OFFSET + MAGIC_FIELD.size
CODEC_OFFSET = VERSION_OFFSET + VERSION_FIELD.size
FLAGS_OFFSET = CODEC_OFFSET + CODEC_FIELD.size
APPEND_TIME_OFFSET = FLAGS_OFFSET + FLAGS.size
CRC_OFFSET = APPEND_TIME_OFFSET + APPEND_TIME.size
CRC_START = CRC_OFFSET + CRC.size
RECORD_COUNT_OFFSET = CRC_START
FIRST_TIMESTAMP_OFFSET = RECORD_COUNT_OFFSET + RECORD_COUNT.size
MAX_TIMESTAMP_OFFSET = FIRST_TIMESTAMP_OFFSET + FIRST_TIMESTAMP.size
HEADER_SIZE = MAX_TIMESTAMP_OFFSET + MAX_TIMESTAMP.size  # 52

HEADER = struct.Struct("<qIIBBHqIIqq")
if HEADER.size != HEADER_SIZE:  # pragma: no cover - guards the layout above
    raise ImportError("record batch header layout mismatch")

# Bytes needed to know a batch's length: base_offset + batch_length.
LENGTH_PREFIX_SIZE = BATCH_LENGTH_OFFSET + BATCH_LENGTH.size

ENTRY_DTYPE = np.dtype(
    [("ts_delta", "<i8"), ("key_len", "<i4"), ("headers_len", "<u4"), ("value_len", "<u4")]
)
ENTRY_SIZE = ENTRY_DTYPE.itemsize  # 20

HEADER_COUNT = struct.Struct("<H")
HEADER_NAME_LENGTH = struct.Struct("<H")
HEADER_VALUE_LENGTH = struct.Struct("<I")

DEFAULT_MAX_RECORD_BYTES = 64 * 1024 * 1024
# The largest max_record_bytes a topic may set (broker.topic_config checks it).
MAX_RECORD_BYTES_CEILING = 128 * 1024 * 1024
# Framing allowance of a batch beyond its largest record (keys, headers, table, header).
BATCH_FRAMING_BYTES = 1024 * 1024
# Client decoders never decompress a records section beyond this (decompression bombs):
# a producer seals a batch at up to max_batch_bytes of records plus the one record that
# crossed it, so twice the largest batch any topic may accept.
DEFAULT_MAX_SECTION_BYTES = 2 * (MAX_RECORD_BYTES_CEILING + BATCH_FRAMING_BYTES)
MIN_BATCH_LENGTH = HEADER_SIZE + 1  # a header and at least one byte of (compressed) records

_compressor = zstandard.ZstdCompressor(level=3)


@dataclass(frozen=True, slots=True)
class BatchHeader:
    base_offset: int
    batch_length: int
    magic: int
    version: int
    codec: int
    flags: int
    append_time: int
    crc: int
    record_count: int
    first_timestamp: int
    max_timestamp: int

    @property
    def last_offset(self) -> int:
        return self.base_offset + self.record_count - 1

    @property
    def next_offset(self) -> int:
        return self.base_offset + self.record_count


@dataclass(slots=True)
class Record:
    """One decoded record. ``value`` is a memoryview into the batch when uncompressed."""

    offset: int
    timestamp: int
    key: bytes | None
    value: memoryview | bytes
    headers: dict[str, bytes] = field(default_factory=dict)
    topic: str = ""
    partition: int = 0

    def header(self, name: str, default: str | None = None) -> str | None:
        """A header's value as UTF-8 text (the record contract stores metadata as text)."""
        raw = self.headers.get(name)
        return default if raw is None else bytes(raw).decode("utf-8", "replace")


def parse_header(buf, pos: int = 0) -> BatchHeader:
    """Parse a batch header at ``pos``; checks magic and version, not the CRC."""
    if len(buf) - pos < HEADER_SIZE:
        raise CorruptBatchError(
            f"batch header truncated: {len(buf) - pos} bytes, need {HEADER_SIZE}"
        )
    header = BatchHeader(*HEADER.unpack_from(buf, pos))
    if header.magic != MAGIC:
        raise CorruptBatchError(f"bad batch magic 0x{header.magic:08x} (want 0x{MAGIC:08x})")
    if header.version != VERSION:
        raise CorruptBatchError(f"unsupported batch format version {header.version}")
    if header.codec not in CODEC_NAMES:
        raise UnknownCodecError(f"unknown batch codec {header.codec}")
    # an uncompressed section holds at least one table entry; a zstd one can be shorter
    # (one empty record compresses below ENTRY_SIZE) and is checked once decompressed
    min_length = HEADER_SIZE + ENTRY_SIZE if header.codec == CODEC_NONE else MIN_BATCH_LENGTH
    if header.batch_length < min_length or header.record_count < 1:
        raise CorruptBatchError(
            f"bad batch length {header.batch_length} or record count {header.record_count}"
        )
    return header


def validate_batch(buf, pos: int = 0, *, max_batch_bytes: int | None = None) -> BatchHeader:
    """Check header, length and CRC of the batch at ``pos``; return its header.

    Raises CorruptBatchError when anything is off; never returns a batch that would decode
    to garbage because of a flipped bit in the stored bytes.
    """
    header = parse_header(buf, pos)
    if max_batch_bytes is not None and header.batch_length > max_batch_bytes:
        raise RecordTooLargeError(
            f"batch of {header.batch_length} bytes exceeds the limit of {max_batch_bytes}"
        )
    end = pos + header.batch_length
    if end > len(buf):
        raise CorruptBatchError(
            f"batch truncated: header says {header.batch_length} bytes, {len(buf) - pos} present"
        )
    crc = crc32c(memoryview(buf)[pos + CRC_START : end])
    if crc != header.crc:
        raise CorruptBatchError(
            f"batch CRC mismatch at base offset {header.base_offset}: "
            f"stored 0x{header.crc:08x}, computed 0x{crc:08x}"
        )
    return header


def stamp_batch(buf, base_offset: int, append_time: int, pos: int = 0) -> None:
    """Write the broker-assigned base offset and append time into a writable batch buffer."""
    BASE_OFFSET.pack_into(buf, pos + BASE_OFFSET_OFFSET, base_offset)
    APPEND_TIME.pack_into(buf, pos + APPEND_TIME_OFFSET, append_time)


def iter_batches(buf, *, validate: bool = True) -> Iterator[tuple[BatchHeader, memoryview]]:
    """Yield (header, batch bytes) for each whole batch in a buffer of consecutive batches.

    A trailing partial batch (a fetch cut at max bytes never produces one, but a torn file
    can) raises CorruptBatchError when ``validate`` is set.
    """
    view = memoryview(buf)
    pos = 0
    while pos < len(view):
        header = validate_batch(view, pos) if validate else parse_header(view, pos)
        yield header, view[pos : pos + header.batch_length]
        pos += header.batch_length


def _encode_headers(headers: Mapping[str, bytes | str] | None) -> bytes:
    if not headers:
        return b""
    parts = [HEADER_COUNT.pack(len(headers))]
    for name, value in headers.items():
        name_b = name.encode("utf-8")
        value_b = value.encode("utf-8") if isinstance(value, str) else bytes(value)
        parts += [HEADER_NAME_LENGTH.pack(len(name_b)), name_b, HEADER_VALUE_LENGTH.pack(len(value_b)), value_b]
    return b"".join(parts)


def decode_headers(block: memoryview) -> dict[str, bytes]:
    if not len(block):
        return {}
    out: dict[str, bytes] = {}
    try:
        (count,) = HEADER_COUNT.unpack_from(block, 0)
        pos = HEADER_COUNT.size
        for _ in range(count):
            (nlen,) = HEADER_NAME_LENGTH.unpack_from(block, pos)
            pos += HEADER_NAME_LENGTH.size
            name = bytes(block[pos : pos + nlen]).decode("utf-8")
            pos += nlen
            (vlen,) = HEADER_VALUE_LENGTH.unpack_from(block, pos)
            pos += HEADER_VALUE_LENGTH.size
            if pos + vlen > len(block):
                raise CorruptBatchError("record header value overruns its block")
            out[name] = bytes(block[pos : pos + vlen])
            pos += vlen
    except (struct.error, UnicodeDecodeError) as exc:
        raise CorruptBatchError(f"malformed record headers: {exc}") from None
    if pos != len(block):
        raise CorruptBatchError("record headers block has trailing bytes")
    return out


def encode_batch(
    values: Sequence[bytes | bytearray | memoryview],
    timestamps: int | Sequence[int] | np.ndarray,
    *,
    keys: Sequence[bytes | None] | None = None,
    headers: Sequence[Mapping[str, bytes | str] | None] | None = None,
    codec: int | str = CODEC_NONE,
    max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES,
) -> bytes:
    """Build one batch (base offset 0, append time 0) from columns of records.

    ``timestamps`` is one capture time for all records or one per record (ns since epoch).
    Without keys and headers this is the bulk path: lengths and the record table are
    computed with numpy and the data area is a single ``b"".join``.
    """
    n = len(values)
    if n == 0:
        raise ValueError("a batch needs at least one record")
    if isinstance(codec, str):
        if codec not in CODECS:
            raise UnknownCodecError(f"unknown codec {codec!r} (known: {', '.join(CODECS)})")
        codec = CODECS[codec]
    elif codec not in CODEC_NAMES:
        raise UnknownCodecError(f"unknown codec {codec}")

    table = np.zeros(n, dtype=ENTRY_DTYPE)
    value_lens = np.fromiter(map(len, values), dtype=np.int64, count=n)
    table["value_len"] = value_lens
    if isinstance(timestamps, (int, np.integer)):
        first_ts = max_ts = int(timestamps)
    else:
        ts = np.asarray(timestamps, dtype=np.int64)
        if ts.shape != (n,):
            raise ValueError(f"{ts.shape[0] if ts.ndim else 0} timestamps for {n} records")
        first_ts = int(ts[0])
        max_ts = int(ts.max())
        table["ts_delta"] = ts - first_ts

    if keys is None and headers is None:
        if int(value_lens.max()) > max_record_bytes:
            big = int(np.argmax(value_lens))
            raise RecordTooLargeError(
                f"record {big} is {int(value_lens[big])} bytes, above the limit of {max_record_bytes}"
            )
        table["key_len"] = -1
        data = b"".join(values)
        section_parts = [table.tobytes(), data]
    else:
        parts: list = []
        key_lens = table["key_len"]
        header_lens = table["headers_len"]
        for i in range(n):
            key = keys[i] if keys is not None else None
            hdr = _encode_headers(headers[i] if headers is not None else None)
            size = len(values[i]) + (len(key) if key is not None else 0) + len(hdr)
            if size > max_record_bytes:
                raise RecordTooLargeError(
                    f"record {i} is {size} bytes, above the limit of {max_record_bytes}"
                )
            if key is None:
                key_lens[i] = -1
            else:
                key_lens[i] = len(key)
                parts.append(key)
            header_lens[i] = len(hdr)
            if hdr:
                parts.append(hdr)
            parts.append(values[i])
        section_parts = [table.tobytes(), *parts]

    if codec == CODEC_ZSTD:
        section_parts = [_compressor.compress(b"".join(section_parts))]
    # CRC over the parts as they are, then one join: the payload is copied exactly once
    crc = crc32c(RECORD_COUNT.pack(n) + FIRST_TIMESTAMP.pack(first_ts) + MAX_TIMESTAMP.pack(max_ts))
    section_length = 0
    for part in section_parts:
        crc = crc32c(part, crc)
        section_length += len(part)
    head = HEADER.pack(0, HEADER_SIZE + section_length, MAGIC, VERSION, codec, 0, 0, crc, n, first_ts, max_ts)
    return b"".join((head, *section_parts))


def encode_records(records: Iterable[Record], *, codec: int | str = CODEC_NONE) -> bytes:
    """Build a batch from Record objects (convenience for tests and small producers)."""
    recs = list(records)
    return encode_batch(
        [r.value for r in recs],
        [r.timestamp for r in recs],
        keys=[r.key for r in recs],
        headers=[r.headers for r in recs],
        codec=codec,
    )


def records_section(batch, header: BatchHeader | None = None, *,
                    max_bytes: int = DEFAULT_MAX_SECTION_BYTES) -> memoryview:
    """The uncompressed records section of a batch (a view when the codec is none).

    A compressed section is never inflated beyond ``max_bytes``: a frame that declares a
    larger size is refused before any allocation, one without a declared size is read in
    bounded steps (CorruptBatchError either way)."""
    view = memoryview(batch)
    header = header or parse_header(view)
    body = view[HEADER_SIZE : header.batch_length]
    if header.codec == CODEC_NONE:
        return body
    return memoryview(_inflate_bounded(body, max_bytes, header.base_offset))


def _inflate_bounded(body: memoryview, max_bytes: int, base_offset: int) -> bytes:
    where = f"zstd records section of the batch at offset {base_offset}"
    try:
        declared = zstandard.frame_content_size(body)
        if declared > max_bytes:
            raise CorruptBatchError(f"{where} declares {declared} bytes, above the bound of {max_bytes}")
        decompressor = zstandard.ZstdDecompressor()
        if declared >= 0:
            # the frame says its size: one allocation of exactly that, and nothing after it
            return decompressor.decompress(body, allow_extra_data=False)
        parts, total = [], 0
        with decompressor.stream_reader(body, read_across_frames=False) as reader:
            while True:
                chunk = reader.read(min(4 * 1024 * 1024, max_bytes + 1 - total))
                if not chunk:
                    break
                parts.append(chunk)
                total += len(chunk)
                if total > max_bytes:
                    raise CorruptBatchError(f"{where} inflates beyond the bound of {max_bytes} bytes")
        return b"".join(parts)
    except zstandard.ZstdError as exc:
        raise CorruptBatchError(f"{where}: {exc}") from None


def record_table(section: memoryview, count: int) -> np.ndarray:
    """The record table of a records section, as a numpy structured array (no copy)."""
    if len(section) < count * ENTRY_SIZE:
        raise CorruptBatchError(f"records section of {len(section)} bytes too short for {count} entries")
    return np.frombuffer(section, dtype=ENTRY_DTYPE, count=count)


def record_layout(batch, max_section_bytes: int = DEFAULT_MAX_SECTION_BYTES
                   ) -> tuple[BatchHeader, memoryview, np.ndarray, np.ndarray, np.ndarray]:
    """Header, records section, record table, key lengths (i64) and each record's start in
    the section, with the table checked against the section's length."""
    header = parse_header(batch)
    section = records_section(batch, header, max_bytes=max_section_bytes)
    table = record_table(section, header.record_count)
    key_lens = table["key_len"].astype(np.int64)
    if int(key_lens.min()) < -1:
        raise CorruptBatchError(
            f"batch at offset {header.base_offset}: record {int(np.argmin(key_lens))} has key length "
            f"{int(key_lens.min())} (-1 means no key)"
        )
    sizes = np.maximum(key_lens, 0) + table["headers_len"] + table["value_len"]
    ends = np.cumsum(sizes)
    starts = header.record_count * ENTRY_SIZE + ends - sizes
    accounted = header.record_count * ENTRY_SIZE + int(ends[-1])
    if accounted != len(section):
        raise CorruptBatchError(
            f"records section of batch at offset {header.base_offset} has "
            f"{len(section)} bytes, its table of {header.record_count} records accounts for {accounted}"
        )
    return header, section, table, key_lens, starts


def decode_batch(batch, *, topic: str = "", partition: int = 0) -> list[Record]:
    """Decode every record of a validated batch. Values are views into the batch (or into
    the decompressed section); keys and headers are copied because they are small."""
    header, section, table, key_lens, starts = record_layout(batch)
    timestamps = (table["ts_delta"] + header.first_timestamp).tolist()
    out = []
    base = header.base_offset
    for i, (start, klen, hlen, vlen) in enumerate(
        zip(starts.tolist(), key_lens.tolist(), table["headers_len"].tolist(), table["value_len"].tolist())
    ):
        pos = start
        key = None
        if klen >= 0:
            key = bytes(section[pos : pos + klen])
            pos += klen
        hdrs = decode_headers(section[pos : pos + hlen]) if hlen else {}
        pos += hlen
        out.append(Record(base + i, timestamps[i], key, section[pos : pos + vlen], hdrs, topic, partition))
    return out


@dataclass(frozen=True, slots=True)
class BatchValues:
    """The values of one batch's records as columns, with no Python object per record:
    ``section`` holds the bytes, ``starts``/``lengths`` locate each value in it, and
    ``offsets``/``timestamps`` are per record (numpy int64). Keys and headers stay
    undecoded in the section; use ``decode_batch`` (``Consumer.poll``) when you need them."""

    topic: str
    partition: int
    section: memoryview
    offsets: np.ndarray
    timestamps: np.ndarray
    starts: np.ndarray
    lengths: np.ndarray

    def __len__(self) -> int:
        return len(self.offsets)

    @property
    def nbytes(self) -> int:
        """Bytes of all the values."""
        return int(self.lengths.sum())

    def value(self, i: int) -> memoryview:
        start = int(self.starts[i])
        return self.section[start : start + int(self.lengths[i])]

    def values(self) -> list[memoryview]:
        section = self.section
        return [section[s : s + n] for s, n in zip(self.starts.tolist(), self.lengths.tolist())]

    def select(self, keep: np.ndarray) -> "BatchValues":
        """The records where the boolean mask ``keep`` is set."""
        return BatchValues(self.topic, self.partition, self.section, self.offsets[keep], self.timestamps[keep],
                           self.starts[keep], self.lengths[keep])


def decode_batch_values(batch, *, topic: str = "", partition: int = 0, min_offset: int = 0) -> BatchValues:
    """The values of a validated batch as columns (see BatchValues), from ``min_offset`` on:
    one numpy pass over the record table, whatever the record count."""
    header, section, table, key_lens, starts = record_layout(batch)
    skip = max(0, min_offset - header.base_offset)
    value_starts = (starts + np.maximum(key_lens, 0) + table["headers_len"])[skip:]
    offsets = np.arange(header.base_offset + skip, header.next_offset, dtype=np.int64)
    timestamps = table["ts_delta"][skip:] + header.first_timestamp
    return BatchValues(topic, partition, section, offsets, timestamps, value_starts,
                       table["value_len"][skip:].astype(np.int64))


def decode_batches(buf, *, topic: str = "", partition: int = 0, min_offset: int = 0) -> list[Record]:
    """Validate and decode a buffer of consecutive batches, dropping records below ``min_offset``
    (a fetch starts at the batch containing the requested offset)."""
    out: list[Record] = []
    for header, batch in iter_batches(buf):
        if header.next_offset <= min_offset:
            continue
        records = decode_batch(batch, topic=topic, partition=partition)
        if header.base_offset < min_offset:
            records = records[min_offset - header.base_offset :]
        out.extend(records)
    return out


def decode_batches_values(buf, *, topic: str = "", partition: int = 0, min_offset: int = 0) -> list[BatchValues]:
    """``decode_batches`` as columns: one BatchValues per batch holding records at or above
    ``min_offset``."""
    out: list[BatchValues] = []
    for header, batch in iter_batches(buf):
        if header.next_offset > min_offset:
            out.append(decode_batch_values(batch, topic=topic, partition=partition, min_offset=min_offset))
    return out
