"""Full checks of Kafka v2 record batches beyond header and CRC (format: ``broker.records``).

- ``check_batch_records``: what the broker runs at produce, so that no consumer ever meets
  a batch it cannot decode (a CRC only proves the bytes are the producer's, not that they
  make sense): bounded inflation; every record's length chain, varints (in bounds, not
  overlong, int32 where Kafka says int32) and key/value inside its record; offset deltas
  0..n-1; record sizes; maxTimestamp = baseTimestamp + the largest delta (CreateTime);
  every header parses. Transactional and control batches are refused until
  transactions exist (docs/FORMAT.md says how they fit).
- ``find_damaged_batch``: the first batch of a fetched buffer that would not decode, for
  a consumer that skips damage on purpose.

Per batch with numpy (``broker.record_layout``); headers are walked for all records at
once, one numpy step per header position (records with more headers than
``_HEADERS_VECTOR_LIMIT`` go through the exact decoder). Header names are not checked for
UTF-8 (Kafka's broker does not either); decoders read them leniently.
"""

from __future__ import annotations

import numpy as np

from . import record_codec as rc
from .errors import CorruptBatchError, RecordTooLargeError
from .record_layout import RecordLayout, decode_headers, record_layout
from .records import (
    ATTR_CONTROL,
    ATTR_LOG_APPEND_TIME,
    ATTR_TRANSACTIONAL,
    DEFAULT_MAX_SECTION_BYTES,
    BatchHeader,
    ByteBuffer,
    parse_header,
    validate_batch,
)

_INT64_MIN, _INT64_MAX = -(1 << 63), (1 << 63) - 1
_HEADERS_VECTOR_LIMIT = 64


def check_batch_records(batch: ByteBuffer, *, max_record_bytes: int, max_section_bytes: int) -> BatchHeader:
    """Full check of a CRC-valid batch at produce time (see the module docstring). Raises
    CorruptBatchError, or RecordTooLargeError for a record above ``max_record_bytes``."""
    header = parse_header(batch)
    where = f"batch at offset {header.base_offset}"
    if header.attributes & (ATTR_TRANSACTIONAL | ATTR_CONTROL):
        raise CorruptBatchError(f"{where}: transactional and control batches are not supported")
    if header.attributes & ~0x3F:
        raise CorruptBatchError(f"{where}: unknown attribute bits 0x{header.attributes:04x}")
    lay = record_layout(batch, max_section_bytes)
    n = header.record_count
    if not np.array_equal(lay.offset_deltas, np.arange(n)):
        bad = int(np.argmax(lay.offset_deltas != np.arange(n)))
        raise CorruptBatchError(f"{where}: record {bad} has offset delta {int(lay.offset_deltas[bad])}, want {bad}")
    sizes = lay.ends - lay.key_starts
    biggest = int(np.argmax(sizes))
    if int(sizes[biggest]) > max_record_bytes:
        raise RecordTooLargeError(
            f"{where}: record {biggest} is {int(sizes[biggest])} bytes, above the limit of {max_record_bytes}")
    low, high = int(lay.ts_deltas.min()), int(lay.ts_deltas.max())
    base = header.base_timestamp_ms
    if base + low < _INT64_MIN or base + high > _INT64_MAX:
        raise CorruptBatchError(f"{where}: record timestamps overflow int64")
    if not header.attributes & ATTR_LOG_APPEND_TIME and base + high != header.max_timestamp_ms:
        raise CorruptBatchError(
            f"{where}: maxTimestamp {header.max_timestamp_ms} does not match baseTimestamp {base} "
            f"plus the record deltas ({low}..{high})")
    first_bad = None if lay.headers_checked else _first_bad_headers(lay)
    if first_bad is not None:
        i = first_bad
        try:
            decode_headers(lay.section, int(lay.headers_starts[i]), int(lay.ends[i]), int(lay.header_counts[i]))
            reason = "malformed headers"
        except CorruptBatchError as exc:
            reason = exc.message
        raise CorruptBatchError(f"{where}: record {i}: {reason}")
    return header


def _first_bad_headers(lay: RecordLayout) -> int | None:
    """Index of the first record whose headers would not decode, or None."""
    counts = lay.header_counts
    pos = lay.headers_starts.copy()
    ends = lay.ends
    # each header takes at least 2 bytes: a count the record cannot hold is bad right away
    bad = counts * 2 > ends - pos
    slow = ~bad & (counts > _HEADERS_VECTOR_LIMIT)
    live_counts = np.where(bad | slow, 0, counts)
    raw = lay.raw
    for k in range(int(live_counts.max()) if len(counts) else 0):
        act = (live_counts > k) & ~bad
        rows = np.flatnonzero(act)
        try:
            name_len, size = rc.read_varints(raw, pos[rows], ends[rows])
        except CorruptBatchError:
            return _first_failing(lay, rows)
        name_at = pos[rows] + size
        after_name = name_at + name_len
        broken = (name_len < 0) | (after_name >= ends[rows] + (name_len < 0))
        bad[rows[broken]] = True
        keep = ~broken
        rows, name_at, name_len, after_name = rows[keep], name_at[keep], name_len[keep], after_name[keep]
        try:
            value_len, size = rc.read_varints(raw, after_name, ends[rows])
        except CorruptBatchError:
            return _first_failing(lay, rows)
        after = after_name + size + np.maximum(value_len, 0)
        broken = (value_len < -1) | (after > ends[rows])
        bad[rows[broken]] = True
        pos[rows] = after
    bad |= ~slow & (live_counts > 0) & (pos != ends)
    bad |= (counts == 0) & (lay.headers_starts != ends)
    for i in np.flatnonzero(slow & ~bad).tolist():
        try:
            decode_headers(lay.section, int(lay.headers_starts[i]), int(ends[i]), int(counts[i]))
        except CorruptBatchError:
            bad[i] = True
    found = np.flatnonzero(bad)
    return int(found[0]) if len(found) else None


def _first_failing(lay: RecordLayout, rows: np.ndarray) -> int:
    """The first of ``rows`` whose headers the exact decoder refuses (a varint ran out)."""
    for i in rows.tolist():
        try:
            decode_headers(lay.section, int(lay.headers_starts[i]), int(lay.ends[i]), int(lay.header_counts[i]))
        except CorruptBatchError:
            return int(i)
    return int(rows[0])


def find_damaged_batch(buf: ByteBuffer, *, max_section_bytes: int = DEFAULT_MAX_SECTION_BYTES
                       ) -> tuple[int, BatchHeader, str] | None:
    """The first batch of a buffer of consecutive batches that would not decode, as (its
    byte position, its header, why), or None when all would. Raises CorruptBatchError when
    a header itself is unreadable (then there is no length to skip it by)."""
    view = memoryview(buf)
    pos = 0
    while pos < len(view):
        header = parse_header(view, pos)
        try:
            validate_batch(view, pos)
            record_layout(view[pos : pos + header.batch_length], max_section_bytes)
        except CorruptBatchError as exc:
            return pos, header, exc.message
        pos += header.batch_length
    return None
