"""Helpers for storage tests: build batches with recognisable contents and read them back."""

from __future__ import annotations

from broker.records import decode_batches, encode_batch


def make_batch(first: int, count: int, size: int = 100, ts: int | None = None, codec: str = "none") -> bytes:
    """Records whose values encode their intended sequence number, so order and loss show."""
    values = [f"{first + i:012d}".encode().ljust(size, b".") for i in range(count)]
    stamps = [(ts if ts is not None else (first + i) * 1_000_000) for i in range(count)]
    return encode_batch(values, stamps, codec=codec)


def read_all(log, max_bytes: int = 1 << 20) -> list:
    out = []
    offset = log.log_start_offset
    while offset < log.next_offset:
        data = log.read(offset, max_bytes)
        if not len(data):
            break
        recs = decode_batches(data, min_offset=offset)
        out.extend(recs)
        offset = recs[-1].offset + 1
    return out


def values_of(records) -> list[int]:
    return [int(bytes(r.value[:12])) for r in records]
