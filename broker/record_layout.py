"""Splitting a Kafka v2 batch into its records (format: ``broker.records``).

``record_layout`` finds, for every record at once, where its key, value and headers lie in
the (uncompressed) records section: the record length chain is walked by
``record_codec.record_starts`` and every field after it is read with one numpy step per
varint byte across all records. It checks that each record's fields stay inside the record
and that the records fill the section exactly; ``broker.batch_checks`` adds the rest
(offset deltas, timestamps, headers) at produce.

Record timestamps come back in ns: the record's ms timestamp, or its ``edge.capture_ns``
header (the first header, decimal) when that lies within the record's millisecond. In a
LogAppendTime batch every record's timestamp is the batch's maxTimestamp (as Kafka), and the
capture header stays visible in ``Record.headers``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import record_codec as rc
from .base.names import HEADER_CAPTURE as CAPTURE_HEADER
from .errors import CorruptBatchError
from .records import (
    _CAPTURE_KEY,
    DEFAULT_MAX_SECTION_BYTES,
    NS_PER_MS,
    BatchHeader,
    ByteBuffer,
    Record,
    iter_batches,
    parse_header,
    records_section,
)

_CAPTURE_PREFIX = np.frombuffer(rc.varint_bytes(len(_CAPTURE_KEY)) + _CAPTURE_KEY, dtype=np.uint8)
_MAX_DIGITS = 20


@dataclass(frozen=True, slots=True)
class RecordLayout:
    """Where each record's parts lie in ``section`` (numpy int64 arrays, one entry per record)."""

    header: BatchHeader
    section: memoryview
    raw: np.ndarray          # the section as uint8
    ends: np.ndarray         # end of each record
    ts_deltas: np.ndarray    # ms
    offset_deltas: np.ndarray
    key_starts: np.ndarray
    key_lens: np.ndarray     # -1: null
    value_starts: np.ndarray
    value_lens: np.ndarray   # -1: null
    header_counts: np.ndarray
    headers_starts: np.ndarray
    headers_checked: bool = False  # every record's headers are known to decode (``_uniform_layout``)

    def capture_times(self) -> tuple[np.ndarray, np.ndarray]:
        """(ns timestamps, mask of records whose time came from their capture header)."""
        ms = self.header.base_timestamp_ms + self.ts_deltas
        if self.header.log_append_time:
            n = len(ms)
            return np.full(n, self.header.max_timestamp_ms * NS_PER_MS, dtype=np.int64), np.zeros(n, dtype=bool)
        ts = ms * NS_PER_MS
        rows = np.flatnonzero(self.header_counts >= 1)
        used = np.zeros(len(ts), dtype=bool)
        if not len(rows):
            return ts, used
        raw, last = self.raw, len(self.raw) - 1
        pos, ends = self.headers_starts[rows], self.ends[rows]
        ok = pos + len(_CAPTURE_PREFIX) + 2 <= ends
        for j, byte in enumerate(_CAPTURE_PREFIX):
            ok &= raw[np.minimum(pos + j, last)] == byte
        length_byte = raw[np.minimum(pos + len(_CAPTURE_PREFIX), last)].astype(np.int64)
        digits_n = length_byte >> 1
        ok &= ((length_byte & 1) == 0) & (digits_n >= 1) & (digits_n <= _MAX_DIGITS)
        first = pos + len(_CAPTURE_PREFIX) + 1
        ok &= first + digits_n <= ends
        negative = ok & (raw[np.minimum(first, last)] == ord("-"))
        width = int(digits_n[0])
        if bool(ok.all()) and not negative.any() and bool((digits_n == width).all()) and width <= 19:
            # the usual case (one digit count, positive): one gather and a dot product
            digits = raw[first[:, None] + np.arange(width)].astype(np.int64) - ord("0")
            if int(digits.min()) >= 0 and int(digits.max()) <= 9 and (width < 19 or int(digits[:, 0].max()) <= 8):
                value = digits @ (10 ** np.arange(width - 1, -1, -1, dtype=np.int64))
                ok = value // NS_PER_MS == ms[rows]
                used[rows[ok]] = True
                ts[rows[ok]] = value[ok]
                return ts, used
        value = np.zeros(len(rows), dtype=np.int64)
        for j in range(_MAX_DIGITS):
            live = ok & (j < digits_n) & ~(negative & (j == 0))
            if not live.any():
                if j:
                    break
                continue  # only negative values, whose first byte is the sign
            digit = raw[np.minimum(first + j, last)].astype(np.int64) - ord("0")
            ok &= ~live | ((digit >= 0) & (digit <= 9))
            value = np.where(live, value * 10 + digit, value)
        value = np.where(negative, -value, value)
        ok &= (digits_n - negative) <= 19  # int64 range is checked by the ms agreement below
        ok &= (value // NS_PER_MS) == ms[rows]
        used[rows[ok]] = True
        ts[rows[ok]] = value[ok]
        return ts, used


def record_layout(batch: ByteBuffer, max_section_bytes: int = DEFAULT_MAX_SECTION_BYTES) -> RecordLayout:
    """The layout of every record of a batch (CRC already checked by the caller)."""
    header = parse_header(batch)
    section = records_section(batch, header, max_bytes=max_section_bytes)
    where = f"batch at offset {header.base_offset}"
    try:
        bodies, lengths = rc.record_starts(section, header.record_count)
        raw = np.frombuffer(section, dtype=np.uint8)
        uniform = _uniform_layout(header, section, raw, bodies, lengths)
        if uniform is not None:
            return uniform
        ends = bodies + lengths
        pos = bodies + 1  # record attributes: one byte, unused
        if int((pos > ends).sum()):
            raise CorruptBatchError("a record is shorter than its attributes byte")
        ts_deltas, size = rc.read_varints(raw, pos, ends, long=True)
        pos = pos + size
        offset_deltas, size = rc.read_varints(raw, pos, ends)
        pos = pos + size
        key_lens, size = rc.read_varints(raw, pos, ends)
        key_starts = pos + size
        pos = key_starts + np.maximum(key_lens, 0)
        value_lens, size = rc.read_varints(raw, pos, ends)
        value_starts = pos + size
        pos = value_starts + np.maximum(value_lens, 0)
        header_counts, size = rc.read_varints(raw, pos, ends)
        headers_starts = pos + size
    except CorruptBatchError as exc:
        raise CorruptBatchError(f"{where}: {exc.message}") from None
    if int(key_lens.min()) < -1 or int(value_lens.min()) < -1 or int(header_counts.min()) < 0:
        raise CorruptBatchError(f"{where}: a record has a negative key, value or headers length")
    if bool((headers_starts > ends).any()):
        i = int(np.argmax(headers_starts > ends))
        raise CorruptBatchError(f"{where}: record {i}'s key and value run past the record")
    return RecordLayout(header, section, raw, ends, ts_deltas, offset_deltas, key_starts, key_lens,
                        value_starts, value_lens, header_counts, headers_starts)


def _uniform_layout(header: BatchHeader, section: memoryview, raw: np.ndarray, bodies: np.ndarray,
                    lengths: np.ndarray) -> RecordLayout | None:
    """The layout of a batch whose records come in a few runs of one shape (a bulk send,
    a sensor stream), or None (the general walk decides, and names any damage).

    Per run of equal body lengths at a fixed stride, the first record is decoded field by
    field; every other record of the run must hold the same bytes everywhere except its
    key, value and header-value bytes (opaque) and its offset delta, which must be the
    canonical varint of its index, of the same size. Then every record decodes exactly as
    the first one with its own offset delta, and its headers decode as the first one's
    do: a few column comparisons per run instead of a numpy pass per field."""
    found = rc.runs(lengths)
    n = len(bodies)
    if found is None or n < 2 * _RUN_MIN:
        return None
    columns: dict[str, np.ndarray] = {name: np.empty(n, dtype=np.int64) for name in _LAYOUT_COLUMNS}
    for a, b, length in found:
        shape = _template(section, int(bodies[a]), int(bodies[a]) + length)
        if shape is None:
            return None
        fields, constant, offset_at, offset_size = shape
        k = b - a
        stride = int(bodies[a + 1] - bodies[a]) if k > 1 else length
        if k > 1 and not bool((np.diff(bodies[a:b]) == stride).all()):
            return None
        # varint sizes grow with the value: the first and last offset delta bound the run's
        if len(rc.varint_bytes(a)) != offset_size or len(rc.varint_bytes(b - 1)) != offset_size:
            return None
        rows = np.lib.stride_tricks.as_strided(raw[int(bodies[a]):], shape=(k, length), strides=(stride, 1),
                                               writeable=False)
        # one gather of the columns that must be equal (a pass per slice would walk the rows again each time)
        if not bool((rows[:, constant] == rows[0, constant]).all()):
            return None
        z = 2 * np.arange(a, b, dtype=np.int64)  # zigzag of the non-negative offset deltas
        for j in range(offset_size):
            want = (z >> (7 * j)) & 0x7F | (0x80 if j < offset_size - 1 else 0)
            if not bool((rows[:, offset_at + j] == want).all()):
                return None
        base = bodies[a:b]
        for name, value in fields.items():
            columns[name][a:b] = value if name in _PER_RECORD_CONSTANT else base + value
        columns["offset_deltas"][a:b] = np.arange(a, b)
    return RecordLayout(header, section, raw, columns["ends"], columns["ts_deltas"], columns["offset_deltas"],
                        columns["key_starts"], columns["key_lens"], columns["value_starts"], columns["value_lens"],
                        columns["header_counts"], columns["headers_starts"], headers_checked=True)


_RUN_MIN = 4  # below this many records the general walk is as cheap
_LAYOUT_COLUMNS = ("ends", "ts_deltas", "offset_deltas", "key_starts", "key_lens", "value_starts", "value_lens",
                   "header_counts", "headers_starts")
_PER_RECORD_CONSTANT = ("ts_deltas", "key_lens", "value_lens", "header_counts")  # the others: body + value


def _template(section: memoryview, body: int, end: int
              ) -> tuple[dict[str, int], np.ndarray, int, int] | None:
    """Decode one record body field by field: (its fields, the columns that must be equal in
    every record of its shape, where its offset delta starts, that varint's size), all
    relative to the body start; None when it does not decode."""
    try:
        pos = body + 1  # attributes
        ts_delta, after_ts = _scalar_varlong(section, pos, end)
        if not -(1 << 63) <= ts_delta < 1 << 63:
            return None
        offset_delta, after_offset = rc.read_varint(section, after_ts, end, "offset delta")
        key_len, key_start = rc.read_varint(section, after_offset, end, "key length")
        if key_len < -1 or key_start + max(key_len, 0) > end:
            return None
        value_len, value_start = rc.read_varint(section, key_start + max(key_len, 0), end, "value length")
        if value_len < -1 or value_start + max(value_len, 0) > end:
            return None
        count, headers_start = rc.read_varint(section, value_start + max(value_len, 0), end, "headers count")
        if count < 0 or count > _TEMPLATE_MAX_HEADERS:
            return None
        opaque = [(key_start, key_start + max(key_len, 0)), (value_start, value_start + max(value_len, 0))]
        pos = headers_start
        for _ in range(count):
            name_len, name_at = rc.read_varint(section, pos, end, "record header")
            if name_len < 0 or name_at + name_len > end:
                return None
            header_value_len, header_value_at = rc.read_varint(section, name_at + name_len, end, "record header")
            if header_value_len < -1 or header_value_at + max(header_value_len, 0) > end:
                return None
            pos = header_value_at + max(header_value_len, 0)
            opaque.append((header_value_at, pos))
        if pos != end:
            return None
    except CorruptBatchError:
        return None
    constant = np.ones(end - body, dtype=bool)
    for start, stop in [*opaque, (after_ts, after_offset)]:
        constant[start - body : stop - body] = False
    fields = {"ends": end - body, "ts_deltas": ts_delta, "key_starts": key_start - body, "key_lens": key_len,
              "value_starts": value_start - body, "value_lens": value_len, "header_counts": count,
              "headers_starts": headers_start - body}
    del offset_delta  # checked per record by the caller
    return fields, np.flatnonzero(constant), after_ts - body, after_offset - after_ts


_TEMPLATE_MAX_HEADERS = 16


def _scalar_varlong(section: memoryview, pos: int, end: int) -> tuple[int, int]:
    """One zigzag varlong (at most 10 bytes) at ``pos``: (value, position after it)."""
    z = shift = 0
    for at in range(pos, min(pos + 10, end)):
        byte = section[at]
        z |= (byte & 0x7F) << shift
        if byte < 0x80:
            return (z >> 1) ^ -(z & 1), at + 1
        shift += 7
    raise CorruptBatchError("a record timestamp varlong runs past its record or is too long")


def decode_headers(section: memoryview, start: int, end: int, count: int) -> dict[str, bytes]:
    """The headers of one record (``count`` of them in ``section[start:end]``); a null
    header value reads as b"", a name that is not UTF-8 with replacement characters.
    Raises CorruptBatchError for a malformed block."""
    out: dict[str, bytes] = {}
    pos = start
    for _ in range(count):
        name_len, pos = rc.read_varint(section, pos, end, "record header")
        if name_len < 0 or pos + name_len > end:
            raise CorruptBatchError("record header name overruns its record")
        name = bytes(section[pos : pos + name_len]).decode("utf-8", "replace")  # lenient, as Kafka clients
        pos += name_len
        value_len, pos = rc.read_varint(section, pos, end, "record header")
        if value_len < -1 or pos + max(value_len, 0) > end:
            raise CorruptBatchError("record header value overruns its record")
        out[name] = bytes(section[pos : pos + max(value_len, 0)])
        pos += max(value_len, 0)
    if pos != end:
        raise CorruptBatchError("record headers leave trailing bytes in their record")
    return out


def batch_timestamps(batch: ByteBuffer) -> np.ndarray:
    """Each record's timestamp (ns) of a batch."""
    return record_layout(batch).capture_times()[0]


def decode_batch(batch: ByteBuffer, *, topic: str = "", partition: int = 0) -> list[Record]:
    """Decode every record of a validated batch. Values are views into the batch (or into
    the decompressed section); keys and headers are copied because they are small."""
    lay = record_layout(batch)
    section = lay.section
    timestamps, used = lay.capture_times()
    # records whose only header is the capture time (the native client's usual record)
    # need no header decoding at all
    plain = (lay.header_counts == 0) | (used & (lay.header_counts == 1))
    base = lay.header.base_offset
    ends = np.maximum(lay.value_starts + lay.value_lens, lay.value_starts).tolist()
    keys: list[bytes | None] = [None] * len(ends)
    for i in np.flatnonzero(lay.key_lens >= 0).tolist():
        start = int(lay.key_starts[i])
        keys[i] = bytes(section[start : start + int(lay.key_lens[i])])
    out = [Record(base + i, ts, key, section[vs:ve], {}, topic, partition)
           for i, (ts, key, vs, ve) in enumerate(
               zip(timestamps.tolist(), keys, lay.value_starts.tolist(), ends, strict=True))]
    for i in np.flatnonzero(~plain).tolist():
        headers = decode_headers(section, int(lay.headers_starts[i]), int(lay.ends[i]), int(lay.header_counts[i]))
        if used[i]:
            headers.pop(CAPTURE_HEADER, None)
        out[i].headers = headers
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
        return [section[s : s + n] for s, n in zip(self.starts.tolist(), self.lengths.tolist(), strict=True)]

    def select(self, keep: np.ndarray) -> BatchValues:
        """The records where the boolean mask ``keep`` is set."""
        return BatchValues(self.topic, self.partition, self.section, self.offsets[keep], self.timestamps[keep],
                           self.starts[keep], self.lengths[keep])


def decode_batch_values(batch: ByteBuffer, *, topic: str = "", partition: int = 0, min_offset: int = 0) -> BatchValues:
    """The values of a validated batch as columns (see BatchValues), from ``min_offset`` on."""
    lay = record_layout(batch)
    header = lay.header
    skip = max(0, min_offset - header.base_offset)
    offsets = np.arange(header.base_offset + skip, header.next_offset, dtype=np.int64)
    timestamps = lay.capture_times()[0][skip:]
    return BatchValues(topic, partition, lay.section, offsets, timestamps, lay.value_starts[skip:],
                       np.maximum(lay.value_lens[skip:], 0))


def decode_batches(buf: ByteBuffer, *, topic: str = "", partition: int = 0, min_offset: int = 0) -> list[Record]:
    """Validate and decode a buffer of consecutive batches, dropping records below ``min_offset``."""
    out: list[Record] = []
    for header, batch in iter_batches(buf):
        if header.next_offset <= min_offset:
            continue
        records = decode_batch(batch, topic=topic, partition=partition)
        if header.base_offset < min_offset:
            records = records[min_offset - header.base_offset :]
        out.extend(records)
    return out


def decode_batches_values(buf: ByteBuffer, *, topic: str = "", partition: int = 0, min_offset: int = 0
                          ) -> list[BatchValues]:
    """``decode_batches`` as columns: one BatchValues per batch holding records at or above ``min_offset``."""
    out: list[BatchValues] = []
    for header, batch in iter_batches(buf):
        if header.next_offset > min_offset:
            out.append(decode_batch_values(batch, topic=topic, partition=partition, min_offset=min_offset))
    return out
