"""Kafka record (v2) varints and compression, vectorised with numpy (format: ``broker.records``).

A Kafka v2 record is variable-length: zigzag varints for its length, time and offset deltas,
key/value/header lengths. Building and splitting many small records one Python call per
record field would be slow, so:

- ``varint_matrix`` encodes a whole column of integers at once into an (n, width) byte matrix
  plus each row's byte count; ``concat_rows`` lays several such columns side by side per row.
- ``read_varints`` decodes the varint at each of many positions at once (one numpy step per
  byte of the longest varint), with bounds and overlong checks.
- ``record_starts`` walks the record length chain (inherently sequential: each record's start
  depends on the previous length) with a vectorised jump over runs of equal-length records,
  the common case for sensor streams and bulk sends; mixed lengths fall back to a tight loop.

Compression codecs are Kafka's attribute bits 0-2: 0 none, 1 gzip, 2 snappy, 3 lz4, 4 zstd.
Inflation is always bounded (``inflate``): a decompression bomb raises CorruptBatchError.
"""

from __future__ import annotations

import functools
import gzip
import itertools
import struct
import zlib
from typing import Any

import numpy as np
import zstandard

from .errors import CorruptBatchError, UnknownCodecError

BytesLike = bytes | bytearray | memoryview  # what the codecs and scalar decoders accept

CODEC_NONE, CODEC_GZIP, CODEC_SNAPPY, CODEC_LZ4, CODEC_ZSTD = 0, 1, 2, 3, 4
CODECS = {"none": CODEC_NONE, "gzip": CODEC_GZIP, "snappy": CODEC_SNAPPY, "lz4": CODEC_LZ4, "zstd": CODEC_ZSTD}
CODEC_NAMES = {v: k for k, v in CODECS.items()}

_MAX_VARINT_BYTES = 5   # a Kafka varint (int32)
_MAX_VARLONG_BYTES = 10  # a Kafka varlong (int64)
_zstd_compressor = zstandard.ZstdCompressor(level=3, write_content_size=True)
_XERIAL_MAGIC = b"\x82SNAPPY\x00"
_INFLATE_STEP = 4 * 1024 * 1024


def zigzag(values: np.ndarray) -> np.ndarray:
    v = values.astype(np.int64)
    return ((v << 1) ^ (v >> 63)).view(np.uint64)


def varint_sizes(values: np.ndarray) -> np.ndarray:
    """Bytes of each value's zigzag varint (1..10)."""
    z = zigzag(values)
    size = np.ones(len(z), dtype=np.int64)
    for shift in range(7, 64, 7):
        size += z >= np.uint64(1 << shift)
    return size


def varint_matrix(values: np.ndarray, width: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(n, width) bytes of each value's zigzag varint, left-aligned and zero padded, and
    each row's length. A column of one repeated value is one broadcast row."""
    n = len(values)
    if n and int(values.min()) == int(values.max()):
        encoded = varint_bytes(int(values[0]))
        row = np.frombuffer(encoded.ljust(width or 0, b"\x00"), dtype=np.uint8)
        return np.broadcast_to(row, (n, len(row))), np.full(n, len(encoded), dtype=np.int64)
    z = zigzag(values)
    sizes = varint_sizes(values)
    width = width or int(sizes.max())
    out = np.zeros((n, width), dtype=np.uint8)
    for j in range(width):
        byte = ((z >> np.uint64(7 * j)) & np.uint64(0x7F)).astype(np.uint8)
        out[:, j] = np.where(sizes > j + 1, byte | 0x80, np.where(sizes > j, byte, 0))
    return out, sizes


@functools.lru_cache(maxsize=8)
def offset_delta_column(n: int) -> tuple[np.ndarray, np.ndarray]:
    """The varints of 0..n-1 (every batch of n records has the same offset deltas)."""
    matrix, sizes = varint_matrix(np.arange(n, dtype=np.int64))
    matrix.setflags(write=False)
    sizes.setflags(write=False)
    return matrix, sizes


def uvarint_bytes(value: int) -> bytes:
    """Unsigned varint (protobuf/Kafka UNSIGNED_VARINT: 7 bits a byte, low first)."""
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def varint_bytes(value: int) -> bytes:
    """Zigzag varint (Kafka record fields)."""
    return uvarint_bytes(((value << 1) ^ (value >> 63)) & ((1 << 64) - 1))


def runs(keys: np.ndarray) -> list[tuple[int, int, int]] | None:
    """(start, end, key) of each run of equal consecutive keys; None past _MAX_RUNS runs."""
    change = np.flatnonzero(keys[1:] != keys[:-1]) + 1
    if len(change) >= _MAX_RUNS:
        return None
    bounds = [0, *change.tolist(), len(keys)]
    return [(a, b, int(keys[a])) for a, b in itertools.pairwise(bounds)]


_MAX_RUNS = 32


def concat_rows(columns: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """Per row, the concatenation of each column's first ``length`` bytes: returns an
    (n, total width) matrix (left-aligned; bytes after a row's length are undefined) and
    each row's length. Columns are zero padded past their lengths, so each is written whole
    at its row's position and the next column overwrites the padding: one slice assignment
    per run of rows at the same position (rows come in few runs: varint sizes grow with
    the offset delta), a per-byte scatter only for rows in no such run."""
    n = len(columns[0][1])
    width = sum(m.shape[1] for m, _ in columns)
    out = np.zeros((n, width), dtype=np.uint8)
    pos = np.zeros(n, dtype=np.int64)
    for matrix, lengths in columns:
        w = matrix.shape[1]
        found = runs(pos) if n else []
        if found is not None:
            for a, b, p in found:
                out[a:b, p : p + w] = matrix[a:b]
        else:
            rows = np.arange(n)
            for j in range(w):
                out[rows, pos + j] = matrix[:, j]
        pos = pos + lengths
    return out, pos


def compact_rows(matrix: np.ndarray, lengths: np.ndarray) -> bytes:
    """The rows of ``matrix`` cut to their lengths, back to back."""
    found = runs(lengths) if len(lengths) else []
    if found is not None:
        return b"".join(matrix[a:b, :k].tobytes() for a, b, k in found)
    mask = np.arange(matrix.shape[1]) < lengths[:, None]
    return matrix[mask].tobytes()


def read_varints(raw: np.ndarray, positions: np.ndarray, end: np.ndarray | int, *, long: bool = False
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Decode the zigzag varint at each position of ``raw`` (uint8): (values i64, sizes).
    Raises CorruptBatchError for one that runs past ``end`` or beyond its maximum size."""
    limit = _MAX_VARLONG_BYTES if long else _MAX_VARINT_BYTES
    n = len(positions)
    top = int(positions.max()) if n else len(raw)
    if top < len(raw):
        first = raw[positions]
        if int(first.max()) < 0x80:  # one byte each: the common case for small fields
            if bool((positions >= end).any()):
                raise CorruptBatchError("a record varint runs past its record")
            v = first.astype(np.int64)
            return (v >> 1) ^ -(v & 1), np.broadcast_to(_ONE, n)
        if int(first.min()) >= 0x80 and top + 1 < len(raw):
            second = raw[positions + 1]
            if int(second.max()) < 0x80:  # two bytes each: e.g. equal values of 64 B .. 8 KiB
                if bool((positions + 1 >= end).any()):
                    raise CorruptBatchError("a record varint runs past its record")
                z2 = (first.astype(np.int64) & 0x7F) | (second.astype(np.int64) << 7)
                return (z2 >> 1) ^ -(z2 & 1), np.broadcast_to(_TWO, n)
        if top + 2 < len(raw):
            short = _up_to_three_bytes(raw, positions, end, first)
            if short is not None:
                return short
    z = np.zeros(n, dtype=np.uint64)
    sizes = np.zeros(n, dtype=np.int64)
    going = np.ones(n, dtype=bool)
    last = len(raw) - 1
    for j in range(limit):
        if not going.any():
            break
        at = positions + j
        byte = raw[np.minimum(at, last)].astype(np.uint64)
        if bool((going & (at >= end)).any()):
            raise CorruptBatchError("a record varint runs past its record")
        z |= np.where(going, (byte & np.uint64(0x7F)) << np.uint64(7 * j), np.uint64(0))
        sizes += going
        going &= byte >= 0x80
    if going.any():
        raise CorruptBatchError(f"a record {'varlong' if long else 'varint'} is longer than {limit} bytes")
    values = (z >> np.uint64(1)).astype(np.int64) ^ -(z & np.uint64(1)).astype(np.int64)
    if not long and (int(values.min(initial=0)) < -(1 << 31) or int(values.max(initial=0)) >= 1 << 31):
        raise CorruptBatchError("a record varint is outside int32")
    return values, sizes


_ONE = np.int64(1)
_TWO = np.int64(2)


def _up_to_three_bytes(raw: np.ndarray, positions: np.ndarray, end: np.ndarray | int, first: np.ndarray
                       ) -> tuple[np.ndarray, np.ndarray] | None:
    """``read_varints`` for a column of 1- to 3-byte varints of mixed sizes (offset deltas
    of up to a million records, lengths up to a megabyte), with int64 arithmetic and three
    gathers; None when some varint is longer (the general loop decides)."""
    second = raw[positions + 1]
    third = raw[positions + 2]
    more1 = first >= 0x80
    more2 = more1 & (second >= 0x80)
    if bool((more2 & (third >= 0x80)).any()):
        return None
    sizes = 1 + more1.astype(np.int64) + more2
    if bool((positions + sizes > end).any()):
        raise CorruptBatchError("a record varint runs past its record")
    z = ((first & 0x7F).astype(np.int64)
         | np.where(more1, (second & 0x7F).astype(np.int64) << 7, 0)
         | np.where(more2, third.astype(np.int64) << 14, 0))
    return (z >> 1) ^ -(z & 1), sizes


def read_varint(buf: BytesLike, pos: int, end: int, what: str = "record length") -> tuple[int, int]:
    """One zigzag varint (at most 5 bytes) at ``pos``: (value, position after it)."""
    z = shift = 0
    start = pos
    while True:
        if pos >= end or pos - start >= _MAX_VARINT_BYTES:
            raise CorruptBatchError(f"a {what} varint runs past its end or is too long")
        b = buf[pos]
        pos += 1
        z |= (b & 0x7F) << shift
        if b < 0x80:
            return (z >> 1) ^ -(z & 1), pos
        shift += 7


_RUN_PROBE = 4  # equal strides in a row before a vectorised jump is tried


def record_starts(section: memoryview, count: int) -> tuple[np.ndarray, np.ndarray]:
    """Start of each record's body (after its length varint) and the body's length, for
    ``count`` records that must fill ``section`` exactly."""
    raw = np.frombuffer(section, dtype=np.uint8)
    buf = bytes(section) if len(section) <= 64 * 1024 else section  # bytes index fastest
    end = len(section)
    bodies = np.empty(count, dtype=np.int64)
    lengths = np.empty(count, dtype=np.int64)
    pos = i = same = 0
    prev_stride = -1
    while i < count:
        # the length varint inline for 1 and 2 bytes (records under 8 KiB): the hot loop
        b = buf[pos] if pos < end else 0x80
        if b < 0x80:
            length, body = (b >> 1) ^ -(b & 1), pos + 1
        elif pos + 1 < end and buf[pos + 1] < 0x80:
            z = (b & 0x7F) | (buf[pos + 1] << 7)
            length, body = (z >> 1) ^ -(z & 1), pos + 2
        else:
            length, body = read_varint(buf, pos, end)
        if length < 0 or body + length > end:
            raise CorruptBatchError(f"record {i} has length {length}, past the records section")
        bodies[i], lengths[i] = body, length
        stride = body + length - pos
        pos = body + length
        i += 1
        same = same + 1 if stride == prev_stride else 0
        prev_stride = stride
        if same >= _RUN_PROBE and i < count:
            # predict the rest as the same stride; keep the prefix whose length bytes agree
            k = min(count - i, (end - pos) // stride)
            if k > 0:
                head = bytes(section[pos - stride : body])  # this record's length varint
                cand = pos + stride * np.arange(k, dtype=np.int64)
                ok = np.ones(k, dtype=bool)
                for j, b in enumerate(head):
                    ok &= raw[cand + j] == b
                run = k if ok.all() else int(np.argmin(ok))
                if run:
                    bodies[i : i + run] = cand[:run] + len(head)
                    lengths[i : i + run] = length
                    i += run
                    pos += stride * run
            same = 0
    if pos != end:
        raise CorruptBatchError(f"records section has {end - pos} bytes after its {count} records")
    return bodies, lengths


# -- compression ---------------------------------------------------------------------------

def _cramjam() -> Any:
    try:
        import cramjam
    except ImportError:
        raise UnknownCodecError("snappy batches need the 'cramjam' package (pip install cramjam)") from None
    return cramjam


def codec_id(codec: int | str) -> int:
    if isinstance(codec, str):
        if codec not in CODECS:
            raise UnknownCodecError(f"unknown codec {codec!r} (known: {', '.join(CODECS)})")
        return CODECS[codec]
    if codec not in CODEC_NAMES:
        raise UnknownCodecError(f"unknown codec {codec}")
    return codec


def compress(codec: int, data: bytes | bytearray | memoryview) -> bytes | bytearray | memoryview:
    if codec == CODEC_NONE:
        return data
    if codec == CODEC_GZIP:
        return gzip.compress(data, compresslevel=1)
    if codec == CODEC_SNAPPY:
        return bytes(_cramjam().snappy.compress_raw(data))
    if codec == CODEC_LZ4:
        import lz4.frame
        compressed: bytes = lz4.frame.compress(data, content_checksum=False)
        return compressed
    if codec == CODEC_ZSTD:
        return _zstd_compressor.compress(data)
    raise UnknownCodecError(f"unknown codec {codec}")


def inflate(codec: int, body: BytesLike, max_bytes: int, where: str) -> bytes:
    """Decompress a records section, never beyond ``max_bytes`` (CorruptBatchError)."""
    try:
        if codec == CODEC_GZIP:
            return _inflate_gzip(body, max_bytes, where)
        if codec == CODEC_SNAPPY:
            return _inflate_snappy(bytes(body), max_bytes, where)
        if codec == CODEC_LZ4:
            import lz4.frame
            out: bytes = lz4.frame.LZ4FrameDecompressor().decompress(bytes(body), max_length=max_bytes + 1)
            if len(out) > max_bytes:
                raise CorruptBatchError(f"{where} inflates beyond the bound of {max_bytes} bytes")
            return out
        if codec == CODEC_ZSTD:
            return _inflate_zstd(body, max_bytes, where)
    except CorruptBatchError:
        raise
    except (zstandard.ZstdError, zlib.error, RuntimeError, ValueError, EOFError, OSError) as exc:
        raise CorruptBatchError(f"{where}: {exc}") from None
    except Exception as exc:  # cramjam and lz4 raise their own types for bad input
        if isinstance(exc, UnknownCodecError):
            raise
        raise CorruptBatchError(f"{where}: {type(exc).__name__}: {exc}") from None
    raise UnknownCodecError(f"unknown codec {codec}")


def _inflate_gzip(body: BytesLike, max_bytes: int, where: str) -> bytes:
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    out = inflater.decompress(bytes(body), max_bytes + 1)
    if len(out) > max_bytes:
        raise CorruptBatchError(f"{where} inflates beyond the bound of {max_bytes} bytes")
    if not inflater.eof:
        raise CorruptBatchError(f"{where}: truncated gzip stream")
    return out


def _inflate_snappy(body: bytes, max_bytes: int, where: str) -> bytes:
    snappy = _cramjam().snappy
    if not body.startswith(_XERIAL_MAGIC):
        declared = _snappy_declared(body)
        if declared > max_bytes:
            raise CorruptBatchError(f"{where} declares {declared} bytes, above the bound of {max_bytes}")
        return bytes(snappy.decompress_raw(body))
    parts, total, pos = [], 0, 16  # xerial: magic, version, compatible version, then blocks
    while pos < len(body):
        if pos + 4 > len(body):
            raise CorruptBatchError(f"{where}: truncated xerial snappy block")
        (size,) = struct.unpack_from(">i", body, pos)
        block = body[pos + 4 : pos + 4 + size]
        if size < 0 or len(block) != size:
            raise CorruptBatchError(f"{where}: bad xerial snappy block length {size}")
        total += _snappy_declared(block)
        if total > max_bytes:
            raise CorruptBatchError(f"{where} inflates beyond the bound of {max_bytes} bytes")
        parts.append(bytes(snappy.decompress_raw(block)))
        pos += 4 + size
    return b"".join(parts)


def _snappy_declared(block: bytes) -> int:
    value = shift = 0
    for b in block[:5]:
        value |= (b & 0x7F) << shift
        if b < 0x80:
            return value
        shift += 7
    raise CorruptBatchError("snappy block without a length")


def _inflate_zstd(body: BytesLike, max_bytes: int, where: str) -> bytes:
    declared = zstandard.frame_content_size(body)
    if declared > max_bytes:
        raise CorruptBatchError(f"{where} declares {declared} bytes, above the bound of {max_bytes}")
    decompressor = zstandard.ZstdDecompressor()
    if declared >= 0:
        return decompressor.decompress(body, allow_extra_data=False)
    parts, total = [], 0
    with decompressor.stream_reader(body, read_across_frames=True) as reader:
        while True:
            chunk = reader.read(min(_INFLATE_STEP, max_bytes + 1 - total))
            if not chunk:
                break
            parts.append(chunk)
            total += len(chunk)
            if total > max_bytes:
                raise CorruptBatchError(f"{where} inflates beyond the bound of {max_bytes} bytes")
    return b"".join(parts)
