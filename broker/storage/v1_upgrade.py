"""Start-up conversion of format v1 segments (the appliance's own pre-Kafka batches) to v2.

Format v1 (``EDGB`` batches, docs/FORMAT.md "Format v1"): a 52-byte little-endian header
(base_offset i64, batch_length u32, magic u32 0x42474445, version u8 1, codec u8 0 none /
1 zstd, flags u16, append_time i64 ns, crc u32 CRC-32C of [32, end), record_count u32,
first_timestamp i64 ns, max_timestamp i64 ns), then a records section: a table of 20-byte
entries (ts_delta i64 ns, key_length i32, headers_length u32, value_length u32) and the data
area (key, headers block, value per record; headers block: count u16, then name_length u16,
name, value_length u32, value).

A v1 segment is recognised by byte 16 of its first batch (v1: version 1; v2: magic 2 at the
same place). Each v1 batch becomes one v2 batch with the same base offset and records (keys,
values, headers, ns capture times, codec), so every offset stays where it was. Per segment,
crash-safe: its index files are deleted (they are rebuilt from the new log), the new log is
written by the temp-fsync-rename recipe (``layout.atomic_write``) and given back the old
modification time (retention by age reads it). A crash part-way leaves v1 and v2
segments side by side, and the next start converts the rest. A v1 batch that fails its CRC
or is torn ends the conversion of its segment there, as v1 recovery would have cut it
(logged with the bytes dropped).
"""

from __future__ import annotations

import logging
import os
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import zstandard
from crc32c import crc32c

from .. import records as rec
from ..logs import log_event
from .layout import (
    LOG_SUFFIX,
    OFFSET_INDEX_SUFFIX,
    TIME_INDEX_SUFFIX,
    atomic_write,
    fsync_dir,
    segment_base_offsets,
    segment_path,
)

logger = logging.getLogger("broker.storage")

V1_HEADER = struct.Struct("<qIIBBHqIIqq")
V1_MAGIC = 0x42474445
V1_ENTRY = np.dtype([("ts_delta", "<i8"), ("key_len", "<i4"), ("headers_len", "<u4"), ("value_len", "<u4")])
_VERSION_BYTE = 16
_V1_CRC_START = 32
_V1_MAX_SECTION = rec.DEFAULT_MAX_SECTION_BYTES


@dataclass(slots=True)
class UpgradeReport:
    segments: int = 0
    batches: int = 0
    dropped_bytes: int = 0


def is_v1_segment(path: Path) -> bool:
    with open(path, "rb") as f:
        head = f.read(_VERSION_BYTE + 1)
    return len(head) > _VERSION_BYTE and head[_VERSION_BYTE] == 1 and int.from_bytes(head[12:16], "little") == V1_MAGIC


def upgrade_partition(directory: Path, topic: str, partition: int) -> UpgradeReport:
    """Convert every v1 segment of a partition directory to v2 (see the module docstring)."""
    report = UpgradeReport()
    for base in segment_base_offsets(directory):
        log_path = segment_path(directory, base, LOG_SUFFIX)
        if not is_v1_segment(log_path):
            continue
        batches, dropped = _convert(log_path.read_bytes())
        for suffix in (OFFSET_INDEX_SUFFIX, TIME_INDEX_SUFFIX):
            segment_path(directory, base, suffix).unlink(missing_ok=True)
        fsync_dir(directory)
        mtime = os.stat(log_path).st_mtime_ns
        atomic_write(log_path, b"".join(batches))
        os.utime(log_path, ns=(mtime, mtime))  # retention by age reads it (a crash before: kept longer)
        report.segments += 1
        report.batches += len(batches)
        report.dropped_bytes += dropped
    if report.segments:
        log_event(logger, logging.WARNING if report.dropped_bytes else logging.INFO, "format_upgraded",
                  topic=topic, partition=partition, segments=report.segments, batches=report.batches,
                  dropped_bytes=report.dropped_bytes, format="v1->v2")
    return report


def _convert(data: bytes) -> tuple[list[bytes], int]:
    """The v2 batches for the valid v1 batches at the start of ``data``, and the bytes
    after them that were not valid v1 batches (a torn or damaged tail)."""
    out: list[bytes] = []
    pos = 0
    while pos + V1_HEADER.size <= len(data):
        fields = V1_HEADER.unpack_from(data, pos)
        base, length, magic, version, codec, _flags, _append, crc, count, first_ts, _max_ts = fields
        end = pos + length
        if (magic != V1_MAGIC or version != 1 or length <= V1_HEADER.size or end > len(data) or count < 1
                or crc32c(memoryview(data)[pos + _V1_CRC_START : end]) != crc):
            break
        try:
            out.append(_v2_batch(memoryview(data)[pos + V1_HEADER.size : end], base, codec, count, first_ts))
        except (ValueError, struct.error, zstandard.ZstdError, UnicodeDecodeError):
            break
        pos = end
    return out, len(data) - pos


def _v2_batch(body: memoryview, base_offset: int, codec: int, count: int, first_ts: int) -> bytes:
    section = body if codec == 0 else memoryview(
        zstandard.ZstdDecompressor().decompress(body, max_output_size=_V1_MAX_SECTION))
    table = np.frombuffer(section, dtype=V1_ENTRY, count=count)
    pos = count * V1_ENTRY.itemsize
    values, keys, headers = [], [], []
    for key_len, headers_len, value_len in zip(table["key_len"].tolist(), table["headers_len"].tolist(),
                                               table["value_len"].tolist(), strict=True):
        keys.append(bytes(section[pos : pos + key_len]) if key_len >= 0 else None)
        pos += max(key_len, 0)
        headers.append(_v1_headers(section[pos : pos + headers_len]))
        pos += headers_len
        values.append(bytes(section[pos : pos + value_len]))
        pos += value_len
    if pos != len(section):
        raise ValueError("v1 record table does not account for its section")
    timestamps = table["ts_delta"] + first_ts
    batch = bytearray(rec.encode_batch(values, timestamps, keys=keys, headers=headers,
                                       codec="zstd" if codec == 1 else "none",
                                       max_record_bytes=rec.MAX_RECORD_BYTES_CEILING))
    rec.stamp_batch(batch, base_offset)
    return bytes(batch)


def _v1_headers(block: memoryview) -> dict[str, bytes]:
    if not len(block):
        return {}
    out: dict[str, bytes] = {}
    (count,) = struct.unpack_from("<H", block, 0)
    pos = 2
    for _ in range(count):
        (name_len,) = struct.unpack_from("<H", block, pos)
        name = bytes(block[pos + 2 : pos + 2 + name_len]).decode("utf-8")
        pos += 2 + name_len
        (value_len,) = struct.unpack_from("<I", block, pos)
        out[name] = bytes(block[pos + 4 : pos + 4 + value_len])
        pos += 4 + value_len
    return out
