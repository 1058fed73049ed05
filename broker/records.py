"""Record batch format v2 = Kafka RecordBatch v2 (magic 2): written to disk and sent on the wire.

This module is the one definition of the batch layout; docs/FORMAT.md describes the same
bytes. A batch is built by a producer (the native client or any Kafka client), validated by
the broker (header and CRC here, the records in ``broker.batch_checks``), stamped with its
base offset in place (and, for a LogAppendTime topic, its timestamp type and maxTimestamp,
re-checksummed as Kafka does), written to a segment as-is and served byte for byte.

Batch header (61 bytes, big-endian, exactly Kafka's)::

    offset size field                 meaning
    0      8    baseOffset            i64, offset of the first record (written by the broker)
    8      4    batchLength           i32, bytes after this field (whole batch - 12)
    12     4    partitionLeaderEpoch  i32, written by the broker (fixed 0: no replication)
    16     1    magic                 i8, 2
    17     4    crc                   u32, CRC-32C of bytes [21, end)
    21     2    attributes            i16: bits 0-2 codec (0 none 1 gzip 2 snappy 3 lz4 4 zstd),
                                      bit 3 timestamp type (1 LogAppendTime), bit 4
                                      transactional, bit 5 control
    23     4    lastOffsetDelta       i32, record_count - 1 (offsets are dense)
    27     8    baseTimestamp         i64 ms
    35     8    maxTimestamp          i64 ms (the append time for LogAppendTime)
    43     8    producerId            i64, -1 without idempotence
    51     2    producerEpoch         i16
    53     4    baseSequence          i32
    57     4    recordsCount          i32 >= 1
    61     -    records (compressed with the codec as one block)

Record: length varint, attributes i8, timestampDelta varlong (ms), offsetDelta varint,
keyLength varint (-1 null), key, valueLength varint (-1 null), value, headers count varint,
then per header keyLength varint, key (UTF-8), valueLength varint (-1 null), value. All
varints are zigzag (Kafka's ByteUtils).

Timestamps: Kafka's are ms; the native API speaks ns. A record whose capture time has a
sub-millisecond part carries it whole as its first header ``edge.capture_ns`` (decimal
text, the same header the mirror writes to Kafka); a decoder takes the header only when it
agrees with the record's ms timestamp, and hides it from ``Record.headers``. The broker's
append time is not stored in CreateTime batches (Kafka's format has no field for it): see
docs/FORMAT.md "Append time".
"""

from __future__ import annotations

import functools
import struct
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TypeAlias

import numpy as np
from crc32c import crc32c

from . import record_codec as rc
from .base.names import HEADER_CAPTURE as CAPTURE_HEADER
from .errors import CorruptBatchError, RecordTooLargeError, UnknownCodecError
from .record_codec import CODEC_GZIP, CODEC_LZ4, CODEC_NAMES, CODEC_NONE, CODEC_SNAPPY, CODEC_ZSTD, CODECS  # noqa: F401 - the batch format names its codecs

if TYPE_CHECKING:
    # decoding lives in broker.record_layout, re-exported lazily at run time (``__getattr__`` below);
    # named here for the type checker, as explicit re-exports ("X as X", which PLC0414 would drop)
    from .record_layout import BatchValues as BatchValues  # noqa: PLC0414
    from .record_layout import RecordLayout as RecordLayout  # noqa: PLC0414
    from .record_layout import batch_timestamps as batch_timestamps  # noqa: PLC0414
    from .record_layout import decode_batch as decode_batch  # noqa: PLC0414
    from .record_layout import decode_batch_values as decode_batch_values  # noqa: PLC0414
    from .record_layout import decode_batches as decode_batches  # noqa: PLC0414
    from .record_layout import decode_batches_values as decode_batches_values  # noqa: PLC0414
    from .record_layout import decode_headers as decode_headers  # noqa: PLC0414
    from .record_layout import record_layout as record_layout  # noqa: PLC0414

MAGIC = 2
VERSION = MAGIC
_CAPTURE_KEY = CAPTURE_HEADER.encode()
NS_PER_MS = 1_000_000

# what batches are read from and written into: bytes, a writable buffer, or a view of either
ByteBuffer: TypeAlias = bytes | bytearray | memoryview

HEADER = struct.Struct(">qiibIhiqqqhii")
HEADER_SIZE = HEADER.size  # 61
BASE_OFFSET = struct.Struct(">q")
BATCH_LENGTH = struct.Struct(">i")
LEADER_EPOCH = struct.Struct(">i")
MAGIC_FIELD = struct.Struct(">b")
CRC = struct.Struct(">I")
ATTRIBUTES = struct.Struct(">h")
LAST_OFFSET_DELTA = struct.Struct(">i")
RECORD_COUNT = struct.Struct(">i")
BASE_OFFSET_OFFSET, BATCH_LENGTH_OFFSET, LEADER_EPOCH_OFFSET, MAGIC_OFFSET = 0, 8, 12, 16
CRC_OFFSET, CRC_START, LAST_OFFSET_DELTA_OFFSET, RECORD_COUNT_OFFSET = 17, 21, 23, 57
LENGTH_FIELD_END = 12  # batchLength counts the bytes after itself
LENGTH_PREFIX_SIZE = LENGTH_FIELD_END
STAMPED_PREFIX_SIZE = MAGIC_OFFSET  # baseOffset, batchLength, partitionLeaderEpoch
LEADER_EPOCH_VALUE = 0

ATTR_CODEC_MASK = 0x07
ATTR_LOG_APPEND_TIME = 0x08
ATTR_TRANSACTIONAL = 0x10
ATTR_CONTROL = 0x20

DEFAULT_MAX_RECORD_BYTES = 64 * 1024 * 1024
MAX_RECORD_BYTES_CEILING = 128 * 1024 * 1024
BATCH_FRAMING_BYTES = 1024 * 1024
DEFAULT_MAX_SECTION_BYTES = 2 * (MAX_RECORD_BYTES_CEILING + BATCH_FRAMING_BYTES)
MIN_BATCH_LENGTH = HEADER_SIZE + 1


@dataclass(frozen=True, slots=True)
class BatchHeader:
    base_offset: int
    batch_length: int  # the whole batch in bytes (Kafka's batchLength + 12)
    leader_epoch: int
    magic: int
    crc: int
    attributes: int
    last_offset_delta: int
    base_timestamp_ms: int
    max_timestamp_ms: int
    producer_id: int
    producer_epoch: int
    base_sequence: int
    record_count: int

    @property
    def version(self) -> int:
        return self.magic

    @property
    def codec(self) -> int:
        return self.attributes & ATTR_CODEC_MASK

    @property
    def log_append_time(self) -> bool:
        return bool(self.attributes & ATTR_LOG_APPEND_TIME)

    @property
    def first_timestamp(self) -> int:
        """The batch's base timestamp in ns (ms precision)."""
        return self.base_timestamp_ms * NS_PER_MS

    @property
    def max_timestamp(self) -> int:
        """An upper bound of the batch's record timestamps in ns: a capture time in the
        ``edge.capture_ns`` header lies within the millisecond of its record's timestamp."""
        if self.log_append_time:
            return self.max_timestamp_ms * NS_PER_MS
        return self.max_timestamp_ms * NS_PER_MS + NS_PER_MS - 1

    @property
    def append_time(self) -> int | None:
        """The broker's append time (ns) when the batch carries it (LogAppendTime)."""
        return self.max_timestamp_ms * NS_PER_MS if self.log_append_time else None

    @property
    def last_offset(self) -> int:
        return self.base_offset + self.last_offset_delta

    @property
    def next_offset(self) -> int:
        return self.base_offset + self.last_offset_delta + 1


@dataclass(slots=True)
class Record:
    """One decoded record. ``value`` is a memoryview into the batch when uncompressed;
    ``timestamp`` is ns (the capture time for records the native client wrote)."""

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


def parse_header(buf: ByteBuffer, pos: int = 0) -> BatchHeader:
    """Parse a batch header at ``pos``; checks magic, codec and lengths, not the CRC."""
    if len(buf) - pos < HEADER_SIZE:
        raise CorruptBatchError(f"batch header truncated: {len(buf) - pos} bytes, need {HEADER_SIZE}")
    fields = HEADER.unpack_from(buf, pos)
    header = BatchHeader(fields[0], fields[1] + LENGTH_FIELD_END, *fields[2:])
    if header.magic != MAGIC:
        raise CorruptBatchError(f"unsupported batch magic {header.magic} (this broker stores magic {MAGIC})")
    if header.codec not in CODEC_NAMES:
        raise UnknownCodecError(f"unknown batch codec {header.codec}")
    if header.batch_length < MIN_BATCH_LENGTH or header.record_count < 1:
        raise CorruptBatchError(f"bad batch length {header.batch_length} or record count {header.record_count}")
    if header.last_offset_delta != header.record_count - 1:
        raise CorruptBatchError(
            f"batch lastOffsetDelta {header.last_offset_delta} does not match its {header.record_count} records")
    return header


def validate_batch(buf: ByteBuffer, pos: int = 0, *, max_batch_bytes: int | None = None) -> BatchHeader:
    """Check header, length and CRC of the batch at ``pos``; return its header."""
    header = parse_header(buf, pos)
    if max_batch_bytes is not None and header.batch_length > max_batch_bytes:
        raise RecordTooLargeError(f"batch of {header.batch_length} bytes exceeds the limit of {max_batch_bytes}")
    end = pos + header.batch_length
    if end > len(buf):
        raise CorruptBatchError(
            f"batch truncated: header says {header.batch_length} bytes, {len(buf) - pos} present")
    crc = crc32c(memoryview(buf)[pos + CRC_START : end])
    if crc != header.crc:
        raise CorruptBatchError(
            f"batch CRC mismatch at base offset {header.base_offset}: "
            f"stored 0x{header.crc:08x}, computed 0x{crc:08x}")
    return header


def stamped_prefix(batch: ByteBuffer, header: BatchHeader, base_offset: int, append_time_ns: int,
                   log_append_time: bool = False, leader_epoch: int = LEADER_EPOCH_VALUE) -> tuple[bytes, int]:
    """What the broker writes in front of ``batch[rest:]`` for an append: (prefix, rest).

    Always baseOffset and partitionLeaderEpoch (outside the CRC, as in Kafka); for a
    LogAppendTime topic also the timestamp-type bit and maxTimestamp = append time in ms,
    with the CRC recomputed over the whole batch (Kafka does the same)."""
    view = memoryview(batch)
    if not log_append_time:
        return (BASE_OFFSET.pack(base_offset) + BATCH_LENGTH.pack(header.batch_length - LENGTH_FIELD_END)
                + LEADER_EPOCH.pack(leader_epoch), STAMPED_PREFIX_SIZE)
    fields = [base_offset, header.batch_length - LENGTH_FIELD_END, leader_epoch, MAGIC, 0,
              header.attributes | ATTR_LOG_APPEND_TIME, header.last_offset_delta, header.base_timestamp_ms,
              append_time_ns // NS_PER_MS, header.producer_id, header.producer_epoch, header.base_sequence,
              header.record_count]
    head = bytearray(HEADER.pack(*fields))
    crc = crc32c(view[HEADER_SIZE : header.batch_length], crc32c(bytes(head[CRC_START:])))
    CRC.pack_into(head, CRC_OFFSET, crc)
    return bytes(head), HEADER_SIZE


def stamp_batch(buf: bytearray | memoryview, base_offset: int, pos: int = 0) -> None:
    """Write a base offset and the leader epoch into a writable batch buffer in place (both
    are outside the CRC, as in Kafka)."""
    BASE_OFFSET.pack_into(buf, pos + BASE_OFFSET_OFFSET, base_offset)
    LEADER_EPOCH.pack_into(buf, pos + LEADER_EPOCH_OFFSET, LEADER_EPOCH_VALUE)


PRODUCER_FIELDS = struct.Struct(">qhi")  # producerId, producerEpoch, baseSequence
PRODUCER_FIELDS_OFFSET = 43


def with_producer(batch: ByteBuffer, producer_id: int, producer_epoch: int, base_sequence: int) -> bytes | bytearray:
    """``batch`` with an idempotent producer's id, epoch and first sequence, and its CRC
    recomputed (those fields are inside the CRC): a bytearray (``encode_batch``'s, owned by
    the caller) is stamped in place, anything else copied."""
    if isinstance(batch, bytearray):
        PRODUCER_FIELDS.pack_into(batch, PRODUCER_FIELDS_OFFSET, producer_id, producer_epoch, base_sequence)
        CRC.pack_into(batch, CRC_OFFSET, crc32c(memoryview(batch)[CRC_START:]))
        return batch
    view = memoryview(batch)
    head = bytearray(view[:HEADER_SIZE])
    PRODUCER_FIELDS.pack_into(head, PRODUCER_FIELDS_OFFSET, producer_id, producer_epoch, base_sequence)
    CRC.pack_into(head, CRC_OFFSET, crc32c(view[HEADER_SIZE:], crc32c(bytes(head[CRC_START:]))))
    return b"".join((head, view[HEADER_SIZE:]))


def iter_batches(buf: ByteBuffer, *, validate: bool = True) -> Iterator[tuple[BatchHeader, memoryview]]:
    """Yield (header, batch bytes) for each whole batch in a buffer of consecutive batches."""
    view = memoryview(buf)
    pos = 0
    while pos < len(view):
        header = validate_batch(view, pos) if validate else parse_header(view, pos)
        yield header, view[pos : pos + header.batch_length]
        pos += header.batch_length


# -- building --------------------------------------------------------------------------------

def _header_bytes(name: str, value: str | ByteBuffer | None) -> bytes:
    name_b = name.encode("utf-8")
    if value is None:
        return rc.varint_bytes(len(name_b)) + name_b + rc.varint_bytes(-1)
    value_b = value.encode("utf-8") if isinstance(value, str) else bytes(value)
    return rc.varint_bytes(len(name_b)) + name_b + rc.varint_bytes(len(value_b)) + value_b


def _record_bytes(offset_delta: int, ts_delta: int, key: ByteBuffer | None, value: ByteBuffer,
                  headers: Mapping[str, str | ByteBuffer | None] | None, capture: int | None) -> bytes:
    items = []
    if capture is not None:
        items.append(_header_bytes(CAPTURE_HEADER, str(capture)))
    for name, hvalue in (headers or {}).items():
        if name != CAPTURE_HEADER:
            items.append(_header_bytes(name, hvalue))
    body = b"".join((
        b"\x00", rc.varint_bytes(ts_delta), rc.varint_bytes(offset_delta),
        rc.varint_bytes(-1) if key is None else rc.varint_bytes(len(key)) + bytes(key),
        rc.varint_bytes(len(value)), bytes(value), rc.varint_bytes(len(items)), *items,
    ))
    return rc.varint_bytes(len(body)) + body


def encode_batch(
    values: Sequence[bytes | bytearray | memoryview],
    timestamps: int | Sequence[int] | np.ndarray,
    *,
    keys: Sequence[bytes | None] | None = None,
    headers: Sequence[Mapping[str, bytes | str] | None] | None = None,
    codec: int | str = CODEC_NONE,
    max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES,
    producer_id: int = -1,
    producer_epoch: int = -1,
    base_sequence: int = -1,
    value_lens: np.ndarray | None = None,
) -> bytes | bytearray:
    """Build one Kafka v2 batch (base offset 0) from columns of records.

    ``timestamps`` is one capture time for all records or one per record (ns since the
    epoch). Without keys and headers the records are laid out with numpy (``record_codec``);
    uncompressed, the batch is then built in one bytearray (header and records, no second
    copy), which ``with_producer`` may stamp in place. ``value_lens`` (each value's length,
    int64) spares a caller that already has them a second pass over the values."""
    n = len(values)
    if n == 0:
        raise ValueError("a batch needs at least one record")
    codec = rc.codec_id(codec)
    if value_lens is None or len(value_lens) != n:
        value_lens = np.fromiter(map(len, values), dtype=np.int64, count=n)
    if isinstance(timestamps, (int, np.integer)):
        ts = np.full(n, int(timestamps), dtype=np.int64)
    else:
        ts = np.asarray(timestamps, dtype=np.int64)
        if ts.shape != (n,):
            raise ValueError(f"{ts.shape[0] if ts.ndim else 0} timestamps for {n} records")
    ms = ts // NS_PER_MS
    base_ms, max_ms = int(ms[0]), int(ms.max())
    needs_capture = (ts - ms * NS_PER_MS) != 0
    if keys is None and headers is None:
        big = int(np.argmax(value_lens))
        if int(value_lens[big]) > max_record_bytes:
            raise RecordTooLargeError(
                f"record {big} is {int(value_lens[big])} bytes, above the limit of {max_record_bytes}")
        reserve = HEADER_SIZE if codec == CODEC_NONE else 0
        section: bytes | bytearray | memoryview = _bulk_records(values, value_lens, ts, ms - base_ms,
                                                                needs_capture, reserve)
        if reserve and isinstance(section, bytearray):  # records laid out behind room for the header
            HEADER.pack_into(section, 0, 0, len(section) - LENGTH_FIELD_END, LEADER_EPOCH_VALUE, MAGIC, 0,
                             codec, n - 1, base_ms, max_ms, producer_id, producer_epoch, base_sequence, n)
            CRC.pack_into(section, CRC_OFFSET, crc32c(memoryview(section)[CRC_START:]))
            return section
    else:
        parts = []
        deltas = (ms - base_ms).tolist()
        capture = needs_capture.tolist()
        for i in range(n):
            key = keys[i] if keys is not None else None
            hdrs = headers[i] if headers is not None else None
            size = int(value_lens[i]) + (len(key) if key is not None else 0) + sum(
                len(k) + len(v if v is not None else b"") for k, v in (hdrs or {}).items())
            if size > max_record_bytes:
                raise RecordTooLargeError(f"record {i} is {size} bytes, above the limit of {max_record_bytes}")
            parts.append(_record_bytes(i, deltas[i], key, values[i], hdrs, int(ts[i]) if capture[i] else None))
        section = b"".join(parts)
    if codec != CODEC_NONE:
        section = rc.compress(codec, section)
    head = bytearray(HEADER.pack(0, HEADER_SIZE - LENGTH_FIELD_END + len(section), LEADER_EPOCH_VALUE, MAGIC, 0,
                                 codec, n - 1, base_ms, max_ms, producer_id, producer_epoch, base_sequence, n))
    CRC.pack_into(head, CRC_OFFSET, crc32c(section, crc32c(bytes(head[CRC_START:]))))
    return b"".join((head, section))


def _capture_tails(ts: np.ndarray, needs_capture: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per record: headers count and, where needed, the ``edge.capture_ns`` header."""
    n = len(ts)
    if not needs_capture.any():
        return np.zeros((n, 1), dtype=np.uint8), np.ones(n, dtype=np.int64)
    if n > 1 and int(ts.min()) == int(ts.max()):  # one capture time for all: one row, broadcast
        row, length = _capture_tails(ts[:1], needs_capture[:1])
        return np.broadcast_to(row[0], (n, row.shape[1])), np.full(n, int(length[0]), dtype=np.int64)
    digits = ts.astype("S20")  # numpy formats the decimal text of every value in C
    digit_lens = np.char.str_len(digits).astype(np.int64)
    digit_matrix = digits.view(np.uint8).reshape(n, 20)
    one = np.ones(n, dtype=np.int64)
    fixed = np.frombuffer(rc.varint_bytes(1) + rc.varint_bytes(len(_CAPTURE_KEY)) + _CAPTURE_KEY, dtype=np.uint8)
    count_and_name = np.broadcast_to(fixed, (n, len(fixed)))
    value_len, value_len_sizes = rc.varint_matrix(digit_lens)
    tails, lengths = rc.concat_rows([(count_and_name, one * len(fixed)), (value_len, value_len_sizes),
                                     (digit_matrix, digit_lens)])
    # records without a sub-ms part: just a zero header count
    tails[~needs_capture] = 0
    lengths[~needs_capture] = 1
    return tails, lengths


def _heads(value_lens: np.ndarray, ts_deltas: np.ndarray, tail_lens: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each record's bytes before its value: length, attributes, time delta, offset delta,
    null key, value length (an (n, width) matrix and each row's length)."""
    n = len(value_lens)
    one = np.ones(n, dtype=np.int64)
    ts_m, ts_s = rc.varint_matrix(ts_deltas)
    off_m, off_s = rc.offset_delta_column(n)
    vlen_m, vlen_s = rc.varint_matrix(value_lens)
    attr = np.zeros((n, 1), dtype=np.uint8)
    null_key = np.ones((n, 1), dtype=np.uint8)  # keyLength -1, zigzag 1
    body_lens = 1 + ts_s + off_s + 1 + vlen_s + value_lens + tail_lens
    len_m, len_s = rc.varint_matrix(body_lens)
    return rc.concat_rows([(len_m, len_s), (attr, one), (ts_m, ts_s), (off_m, off_s), (null_key, one),
                           (vlen_m, vlen_s)])


@functools.lru_cache(maxsize=16)
def _uniform_heads(n: int, value_len: int, tail_len: int) -> tuple[np.ndarray, np.ndarray]:
    """``_heads`` of n equal records with time delta 0: the same for every such batch."""
    heads, lengths = _heads(np.full(n, value_len, dtype=np.int64), np.zeros(n, dtype=np.int64),
                            np.full(n, tail_len, dtype=np.int64))
    heads.setflags(write=False)
    lengths.setflags(write=False)
    return heads, lengths


def _bulk_records(values: Sequence[ByteBuffer], value_lens: np.ndarray, ts: np.ndarray, ts_deltas: np.ndarray,
                  needs_capture: np.ndarray, reserve: int = 0) -> bytes | bytearray | memoryview:
    """The records section; with ``reserve``, equal-sized records are laid out in a
    bytearray after that many free bytes (the batch header's room); others come as bytes."""
    n = len(values)
    tails, tail_lens = _capture_tails(ts, needs_capture)
    length = int(value_lens[0])
    equal = length <= 4096 and bool((value_lens == length).all())
    if equal and not ts_deltas.any() and int(tail_lens.min()) == int(tail_lens.max()):
        heads, head_lens = _uniform_heads(n, length, int(tail_lens[0]))
    else:
        heads, head_lens = _heads(value_lens, ts_deltas, tail_lens)
    runs = rc.runs(head_lens * 4096 + tail_lens) if equal else None
    if runs is not None:
        # equal values (sensor streams, bulk sends): records come in a few runs of one
        # layout; each run is a 2-D view of the output, filled by three slice copies
        value_matrix = np.frombuffer(b"".join(values), dtype=np.uint8).reshape(n, length)
        buffer = bytearray(reserve + int((head_lens + tail_lens).sum()) + n * length)
        out = np.frombuffer(buffer, dtype=np.uint8)[reserve:]
        pos = 0
        for a, b, _ in runs:
            h, t = int(head_lens[a]), int(tail_lens[a])
            width = h + length + t
            rows = out[pos : pos + (b - a) * width].reshape(b - a, width)
            rows[:, :h] = heads[a:b, :h]
            rows[:, h : h + length] = value_matrix[a:b]
            rows[:, h + length :] = tails[a:b, :t]
            pos += (b - a) * width
        return buffer if reserve else out.data
    head_b, tail_b = rc.compact_rows(heads, head_lens), rc.compact_rows(tails, tail_lens)
    head_ends, tail_ends = np.cumsum(head_lens).tolist(), np.cumsum(tail_lens).tolist()
    parts: list[ByteBuffer] = []
    h0 = t0 = 0
    for value, h1, t1 in zip(values, head_ends, tail_ends, strict=True):
        parts += (head_b[h0:h1], value, tail_b[t0:t1])
        h0, t0 = h1, t1
    return b"".join(parts)


def encode_records(records: Iterable[Record], *, codec: int | str = CODEC_NONE) -> bytes | bytearray:
    """Build a batch from Record objects (convenience for tests and small producers)."""
    recs = list(records)
    return encode_batch([r.value for r in recs], [r.timestamp for r in recs], keys=[r.key for r in recs],
                        headers=[r.headers for r in recs], codec=codec)


# -- reading ---------------------------------------------------------------------------------

def records_section(batch: ByteBuffer, header: BatchHeader | None = None, *,
                    max_bytes: int = DEFAULT_MAX_SECTION_BYTES) -> memoryview:
    """The uncompressed records of a batch (a view when the codec is none), never inflated
    beyond ``max_bytes`` (CorruptBatchError)."""
    view = memoryview(batch)
    header = header or parse_header(view)
    body = view[HEADER_SIZE : header.batch_length]
    if header.codec == CODEC_NONE:
        return body
    where = f"{CODEC_NAMES[header.codec]} records of the batch at offset {header.base_offset}"
    return memoryview(rc.inflate(header.codec, body, max_bytes, where))


_LAYOUT_NAMES = frozenset({
    "BatchValues", "RecordLayout", "batch_timestamps", "decode_batch", "decode_batch_values", "decode_batches",
    "decode_batches_values", "decode_headers", "record_layout",
})


def __getattr__(name: str) -> object:
    # decoding lives in broker.record_layout, which builds on this module: re-exported
    # lazily so that either module may be imported first
    if name in _LAYOUT_NAMES:
        from . import record_layout
        return getattr(record_layout, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
