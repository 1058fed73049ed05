"""Full checks of record batches beyond header and CRC (format: ``broker.records``).

- ``check_batch_records``: what the broker runs at produce, so that no consumer ever meets
  a batch it cannot decode (a CRC only proves the bytes are the producer's, not that they
  make sense): bounded inflation, record count, lengths, timestamps, headers blocks.
- ``find_damaged_batch``: the first batch of a fetched buffer that would not decode, for
  a consumer that skips damage on purpose.

Per batch with numpy over the record table; headers blocks are walked for all records at
once, one numpy step per header position (blocks with many headers, or non-ASCII names,
fall back to the exact decoder for those blocks only).
"""

from __future__ import annotations

import numpy as np

from .errors import CorruptBatchError, RecordTooLargeError
from .records import (
    DEFAULT_MAX_SECTION_BYTES,
    ENTRY_SIZE,
    HEADER_COUNT,
    HEADER_NAME_LENGTH,
    HEADER_VALUE_LENGTH,
    BatchHeader,
    decode_headers,
    parse_header,
    record_layout,
    validate_batch,
)

_INT64_MIN = -(1 << 63)


def check_batch_records(batch, *, max_record_bytes: int, max_section_bytes: int) -> BatchHeader:
    """Full check of a CRC-valid batch at produce time, so that no consumer ever meets a
    batch it cannot decode: the records section inflates within ``max_section_bytes``;
    the record count matches the table and the table accounts for every byte; key lengths
    are -1 or more; no record exceeds ``max_record_bytes``; record 0's time delta is 0 and
    the header's max_timestamp is first_timestamp plus the largest delta (no int64
    overflow); every headers block parses. Raises CorruptBatchError (RecordTooLargeError
    for a record above the limit). Per batch with numpy; Python work only for records
    that carry headers."""
    header, section, table, key_lens, starts = record_layout(batch, max_section_bytes)
    where = f"batch at offset {header.base_offset}"
    sizes = np.maximum(key_lens, 0) + table["headers_len"] + table["value_len"]
    biggest = int(np.argmax(sizes))
    if int(sizes[biggest]) > max_record_bytes:
        raise RecordTooLargeError(
            f"{where}: record {biggest} is {int(sizes[biggest])} bytes, above the limit of {max_record_bytes}"
        )
    deltas = table["ts_delta"]
    first_delta, low, high = int(deltas[0]), int(deltas.min()), int(deltas.max())
    if first_delta != 0:
        raise CorruptBatchError(f"{where}: record 0 has time delta {first_delta}, must be 0")
    if header.first_timestamp + high != header.max_timestamp or header.first_timestamp + low < _INT64_MIN:
        raise CorruptBatchError(
            f"{where}: max_timestamp {header.max_timestamp} does not match first_timestamp "
            f"{header.first_timestamp} plus the record deltas ({low}..{high})"
        )
    with_headers = np.flatnonzero(table["headers_len"])
    if len(with_headers):
        block_starts = (starts + np.maximum(key_lens, 0))[with_headers]
        block_lens = table["headers_len"][with_headers].astype(np.int64)
        bad = _first_bad_headers_block(section, block_starts, block_lens)
        if bad is not None:
            start, length = int(block_starts[bad]), int(block_lens[bad])
            try:
                decode_headers(section[start : start + length])
                reason = "malformed headers block"
            except CorruptBatchError as exc:
                reason = str(exc)
            raise CorruptBatchError(f"{where}: record {int(with_headers[bad])}: {reason}")
    return header


_HEADERS_VECTOR_LIMIT = 64  # blocks with more headers than this are walked one by one


def _first_bad_headers_block(section: memoryview, starts: np.ndarray, lengths: np.ndarray) -> int | None:
    """Index of the first headers block (given by start and length in ``section``) that
    would not decode, or None. Walks all blocks at once, one numpy step per header
    position (not per record); names must be UTF-8 (checked in bulk when all are ASCII)."""
    if len(section) < ENTRY_SIZE:  # never in a real batch (the table comes first)
        return next((i for i in range(len(starts)) if not _headers_decode(section, starts[i], lengths[i])), None)
    raw = np.frombuffer(section, dtype=np.uint8)
    pos = starts.astype(np.int64)
    end = pos + lengths

    def u16(at: np.ndarray) -> np.ndarray:
        return raw[at].astype(np.int64) | (raw[at + 1].astype(np.int64) << 8)

    def u32(at: np.ndarray) -> np.ndarray:
        return u16(at) | (u16(at + 2) << 16)

    bad = lengths < HEADER_COUNT.size
    count = np.where(bad, 0, u16(np.where(bad, 0, pos)))
    # each header takes at least 6 bytes: a count the block cannot hold is bad right away
    bad |= (count * 6 > lengths - HEADER_COUNT.size)
    slow = ~bad & (count > _HEADERS_VECTOR_LIMIT)
    count = np.where(bad | slow, 0, count)
    pos = pos + HEADER_COUNT.size
    name_starts, name_lens = [], []
    for k in range(int(count.max()) if len(count) else 0):
        act = (count > k) & ~bad
        bad |= act & (pos + HEADER_NAME_LENGTH.size > end)
        act &= ~bad
        nlen = np.where(act, u16(np.where(act, pos, 0)), 0)
        name_at = pos + HEADER_NAME_LENGTH.size
        pos = np.where(act, name_at + nlen, pos)
        bad |= act & (pos + HEADER_VALUE_LENGTH.size > end)
        act &= ~bad
        vlen = np.where(act, u32(np.where(act, pos, 0)), 0)
        pos = np.where(act, pos + HEADER_VALUE_LENGTH.size + vlen, pos)
        bad |= act & (pos > end)
        act &= ~bad  # only names known to lie inside their block
        name_starts.append(name_at[act])
        name_lens.append(nlen[act])
    bad |= ~slow & (pos != end)
    if name_starts:
        lens = np.concatenate(name_lens)
        if int(lens.sum()):
            firsts = np.concatenate(name_starts)
            # every name byte at once: start of its name plus its index within the name
            index = np.repeat(firsts - (np.cumsum(lens) - lens), lens) + np.arange(int(lens.sum()))
            if int(raw[index].max()) >= 0x80:
                slow |= ~bad  # non-ASCII names: let the exact decoder judge those blocks
    for i in np.flatnonzero(slow).tolist():
        bad[i] = not _headers_decode(section, starts[i], lengths[i])
    found = np.flatnonzero(bad)
    return int(found[0]) if len(found) else None


def _headers_decode(section: memoryview, start, length) -> bool:
    try:
        decode_headers(section[int(start) : int(start) + int(length)])
        return True
    except CorruptBatchError:
        return False


def find_damaged_batch(buf, *, max_section_bytes: int = DEFAULT_MAX_SECTION_BYTES
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
