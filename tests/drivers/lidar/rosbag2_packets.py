"""Test support: the raw Velodyne data packets of a ROS 2 bag (rosbag2, sqlite3 storage)
of ``velodyne_msgs/msg/VelodyneScan`` messages, as recorded (no re-encoding), and the
reference clouds stored beside them as PCD files.

Used for the captures from tier4/nebula's decoder tests (docs/LIDAR.md, "Test captures"),
which come as rosbag2 directories rather than pcap files.

rosbag2 sqlite3 layout: table ``messages(timestamp, topic_id, data)``, ``data`` one CDR
message (little-endian, 4-byte encapsulation header 00 01 00 00; alignment counted from
the byte after it). ``VelodyneScan``:

    header        builtin_interfaces/Time stamp (int32 sec, uint32 nanosec), string frame_id
                  (uint32 length incl. NUL, bytes)
    packets       uint32 count, then per packet (4-aligned):
        stamp         int32 sec, uint32 nanosec   (the packet's receive time)
        data          uint8[1206]                 (the UDP payload, bytes unchanged)

PCD: ASCII header up to ``DATA binary``, then ``POINTS`` records of the declared fields
(``SIZE``/``TYPE`` per field, packed)."""

from __future__ import annotations

import sqlite3
import struct
from pathlib import Path

import numpy as np

PACKET_SIZE = 1206
CDR_LITTLE_ENDIAN = b"\x00\x01"


class BagFormatError(ValueError):
    """The bag or one of its messages is not what this reader understands."""


def _align4(offset: int) -> int:
    return (offset + 3) & ~3


def _scan_packets(message: bytes) -> tuple[list[int], list[bytes]]:
    """(stamps ns, payloads) of one CDR-serialised VelodyneScan."""
    if message[:2] != CDR_LITTLE_ENDIAN:
        raise BagFormatError(f"not a little-endian CDR message (encapsulation {message[:4].hex()})")
    body = memoryview(message)[4:]
    (frame_id_length,) = struct.unpack_from("<I", body, 8)
    offset = _align4(12 + frame_id_length)
    (count,) = struct.unpack_from("<I", body, offset)
    offset += 4
    stamps, payloads = [], []
    for _ in range(count):
        offset = _align4(offset)
        seconds, nanoseconds = struct.unpack_from("<iI", body, offset)
        offset += 8
        payload = bytes(body[offset:offset + PACKET_SIZE])
        if len(payload) != PACKET_SIZE:
            raise BagFormatError(f"a packet is cut short at byte {offset} of a {len(body)}-byte message")
        stamps.append(seconds * 1_000_000_000 + nanoseconds)
        payloads.append(payload)
        offset += PACKET_SIZE
    return stamps, payloads


def read_velodyne_scans(bag_file: Path) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per VelodyneScan message, in recording order: ((N, 1206) uint8 payloads, (N,)
    int64 packet stamps in ns)."""
    connection = sqlite3.connect(f"file:{bag_file}?mode=ro", uri=True)
    try:
        topics = connection.execute("SELECT id FROM topics WHERE type = 'velodyne_msgs/msg/VelodyneScan'").fetchall()
        if len(topics) != 1:
            raise BagFormatError(f"{bag_file}: {len(topics)} VelodyneScan topics, expected one")
        rows = connection.execute("SELECT data FROM messages WHERE topic_id = ? ORDER BY timestamp, id",
                                  (topics[0][0],)).fetchall()
    finally:
        connection.close()
    scans = []
    for (data,) in rows:
        stamps, payloads = _scan_packets(bytes(data))
        scans.append((np.frombuffer(b"".join(payloads), np.uint8).reshape(-1, PACKET_SIZE),
                      np.asarray(stamps, np.int64)))
    return scans


_PCD_TYPES = {("F", 4): "<f4", ("F", 8): "<f8", ("U", 1): "u1", ("U", 2): "<u2", ("U", 4): "<u4", ("I", 1): "i1",
              ("I", 2): "<i2", ("I", 4): "<i4"}


def read_pcd(path: Path) -> np.ndarray:
    """The points of a binary PCD file, as a structured array of its fields."""
    data = path.read_bytes()
    header: dict[str, list[str]] = {}
    offset = 0
    while True:
        end = data.index(b"\n", offset)
        line = data[offset:end].decode("ascii").strip()
        offset = end + 1
        if line.startswith("#") or not line:
            continue
        key, *values = line.split()
        header[key] = values
        if key == "DATA":
            break
    if header["DATA"] != ["binary"]:
        raise BagFormatError(f"{path}: PCD DATA {header['DATA']}, only binary is read here")
    dtype = np.dtype([(name, _PCD_TYPES[(kind, int(size))])
                      for name, kind, size in zip(header["FIELDS"], header["TYPE"], header["SIZE"], strict=True)])
    return np.frombuffer(data, dtype, count=int(header["POINTS"][0]), offset=offset)
