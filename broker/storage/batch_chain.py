"""Walking the chain of batch headers in a segment's ``.log`` (format: ``broker.records``).

A ``.log`` file is record batches back to back; each header gives the batch's length, so
the next batch starts right after it, and its base offset, which must continue the chain
(the previous batch's next offset). Base offsets lie outside the CRC: a flipped bit there
is only caught by this continuity check, never served as another offset. Every header
walked must be well formed (magic, a length of at least a header) and its batch must lie
inside the scanned range, so no length can make a walk loop or read past the end. Headers
are read in chunks of ``HEADER_SCAN_CHUNK`` bytes, never the payloads (unless CRCs are
checked, then each batch once).
"""

from __future__ import annotations

import os
from collections.abc import Iterator

from .. import records as rec
from ..errors import CorruptBatchError

HEADER_SCAN_CHUNK = 64 * 1024


def scan_batches(fd: int, name: str, start: int, end: int, *, validate_crc: bool = False,
                 expect_offset: int | None = None) -> Iterator[tuple[int, rec.BatchHeader]]:
    """Yield (position, header) of consecutive batches of file ``fd`` (called ``name`` in
    errors) from ``start`` (a batch start) up to ``end``.

    Raises CorruptBatchError at the first header that is bad, a batch that overruns
    ``end`` or, given ``expect_offset`` (the base offset of the batch at ``start``), a
    base offset that breaks the chain; with ``validate_crc`` every CRC is checked too."""
    position = start
    chunk = b""
    chunk_start = start
    while position < end:
        rel = position - chunk_start
        if rel < 0 or rel + rec.HEADER_SIZE > len(chunk):
            chunk_start = position
            chunk = os.pread(fd, min(HEADER_SCAN_CHUNK, end - position), position)
            rel = 0
        header = rec.parse_header(chunk, rel)
        if position + header.batch_length > end:
            raise CorruptBatchError(
                f"batch at position {position} needs {header.batch_length} bytes, only {end - position} remain")
        if expect_offset is not None:
            if header.base_offset != expect_offset:
                raise CorruptBatchError(
                    f"batch at position {position} of {name} has base offset "
                    f"{header.base_offset}, expected {expect_offset}")
            expect_offset = header.next_offset
        if validate_crc:
            if rel + header.batch_length <= len(chunk):
                rec.validate_batch(chunk, rel)
            else:
                rec.validate_batch(os.pread(fd, header.batch_length, position))
        yield position, header
        position += header.batch_length
