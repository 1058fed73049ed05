"""Reading UDP datagrams out of classic libpcap capture files (no libpcap, no scapy).

Owns: the pcap container format and the Ethernet / IPv4 / UDP framing around sensor
packets. Guarantees:

- both byte orders, microsecond (0xA1B2C3D4) and nanosecond (0xA1B23C4D) magic; link
  types Ethernet (1, with 802.1Q/802.1ad VLAN tags), Linux cooked capture (113) and raw
  IPv4 (101, 228);
- the file is memory-mapped and never read whole into Python objects: one Python step per
  record header (their lengths chain the records, so the walk is sequential), then the
  Ethernet/IPv4/UDP fields of a whole chunk of records are parsed at once with numpy;
- datagrams that are not IPv4/UDP, IP fragments, datagrams cut short by the capture's
  snap length and (when a port filter is given) other ports are skipped and counted in
  ``PcapReader.skipped`` by reason;
- a file that ends inside a record, or a record header that cannot be right (length over
  the sanity limit, sub-second field out of range), stops the walk: everything before it
  is yielded first, then ``PcapTruncatedError`` / ``PcapCorruptRecordError`` is raised,
  naming the file and the byte offset of the bad record;
- a file that is not a classic pcap (wrong magic, pcapng, unsupported link type, too
  short) raises ``PcapFormatError`` on open.

Layout (all pcap integers in the byte order the magic reveals; network fields big-endian):

    global header, 24 bytes:
        magic      u4   0xA1B2C3D4 µs timestamps | 0xA1B23C4D ns timestamps
        version    u2 major, u2 minor (2.4)
        thiszone   i4   (ignored)
        sigfigs    u4   (ignored)
        snaplen    u4   largest record the capture kept
        linktype   u4   1 Ethernet | 113 Linux SLL | 101, 228 raw IPv4
    record header, 16 bytes:           _RECORD_HEADER
        ts_sec     u4   seconds since the Unix epoch
        ts_frac    u4   µs or ns within the second
        incl_len   u4   bytes captured (follow this header)
        orig_len   u4   bytes on the wire
    Ethernet II: dst u1[6], src u1[6], ethertype >u2 (0x0800 IPv4; 0x8100/0x88A8 VLAN: +4)
    IPv4:  version/ihl u1, tos u1, total_length >u2, id >u2, flags/fragment >u2,
           ttl u1, protocol u1 (17 = UDP), checksum >u2, src u1[4], dst u1[4], options
    UDP:   src_port >u2, dst_port >u2, length >u2 (header + payload), checksum >u2
"""

from __future__ import annotations

import mmap
import os
import struct
from collections import Counter
from collections.abc import Collection, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np

MAGIC_MICROSECONDS = 0xA1B2C3D4
MAGIC_NANOSECONDS = 0xA1B23C4D
MAGIC_PCAPNG = 0x0A0D0D0A
GLOBAL_HEADER_SIZE = 24
RECORD_HEADER_SIZE = 16
MAX_RECORD_BYTES = 262_144  # libpcap's own upper bound for a snapshot length

LINKTYPE_ETHERNET = 1
LINKTYPE_RAW = 101
LINKTYPE_LINUX_SLL = 113
LINKTYPE_IPV4 = 228
_LINK_HEADER = {LINKTYPE_ETHERNET: 14, LINKTYPE_LINUX_SLL: 16, LINKTYPE_RAW: 0, LINKTYPE_IPV4: 0}

ETHERTYPE_IPV4 = 0x0800
ETHERTYPE_VLAN = (0x8100, 0x88A8)
IPPROTO_UDP = 17


class PcapError(Exception):
    """A pcap file could not be read (further); names the file and byte offset."""

    def __init__(self, message: str, path: str | os.PathLike[str], offset: int):
        super().__init__(message)
        self.path = str(path)
        self.offset = offset


class PcapFormatError(PcapError):
    """Not a classic pcap file, or a link type this reader does not handle."""


class PcapTruncatedError(PcapError):
    """The file ends inside a record (a capture that was cut off)."""


class PcapCorruptRecordError(PcapError):
    """A record header that cannot be right: everything after it is unreachable."""


@dataclass(frozen=True)
class PcapHeader:
    byte_order: str  # "<" or ">"
    nanosecond: bool
    version: tuple[int, int]
    snaplen: int
    linktype: int


class UdpPacket(NamedTuple):
    timestamp_ns: int  # capture time of the record (ns since the Unix epoch)
    dst_port: int
    payload: bytes


@dataclass
class PacketBatch:
    """Fixed-size UDP payloads of one port, stacked for vectorised decoding."""

    timestamps_ns: np.ndarray  # (N,) int64, capture time of each record
    payloads: np.ndarray  # (N, payload_size) uint8
    skipped: dict[str, int] = field(default_factory=dict)  # reason -> count (whole read)
    error: PcapError | None = None  # how the file ended, when it ended badly (strict=False)

    def __len__(self) -> int:
        return int(self.timestamps_ns.shape[0])


@dataclass
class _RecordChunk:
    data_offsets: np.ndarray  # int64, file offset of each record's first captured byte
    lengths: np.ndarray  # int64, captured bytes
    timestamps_ns: np.ndarray  # int64


@dataclass
class _UdpChunk:
    timestamps_ns: np.ndarray
    payload_offsets: np.ndarray
    payload_lengths: np.ndarray
    dst_ports: np.ndarray


class PcapReader:
    """A memory-mapped classic pcap file. Use as a context manager; iterate with
    ``udp_packets()`` (one datagram at a time) or ``udp_payload_batches()`` (stacked)."""

    def __init__(self, path: str | os.PathLike[str], chunk_records: int = 4096):
        self.path = Path(path)
        self.chunk_records = max(1, int(chunk_records))
        self.skipped: Counter[str] = Counter()
        self.records_read = 0
        self.error: PcapError | None = None
        try:
            self._file = open(self.path, "rb")  # noqa: SIM115 - the reader owns the file until close()
        except OSError as exc:
            raise PcapError(f"cannot open pcap {self.path}: {exc.strerror or exc}", self.path, 0) from exc
        try:
            size = os.fstat(self._file.fileno()).st_size
            if size < GLOBAL_HEADER_SIZE:
                raise PcapFormatError(
                    f"{self.path} is not a pcap file: {size} bytes, shorter than the {GLOBAL_HEADER_SIZE}-byte header",
                    self.path, 0,
                )
            self._mm = mmap.mmap(self._file.fileno(), 0, access=mmap.ACCESS_READ)
        except BaseException:
            self._file.close()
            raise
        self._data = np.frombuffer(self._mm, dtype=np.uint8)
        try:
            self.header = self._parse_global_header()
        except BaseException:
            self.close()
            raise

    # -- lifecycle -----------------------------------------------------------------------

    def close(self) -> None:
        self._data = np.empty(0, np.uint8)
        try:
            self._mm.close()
        except BufferError:  # a caller still holds a view into the map: the GC closes it
            pass
        self._file.close()

    def __enter__(self) -> PcapReader:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- format --------------------------------------------------------------------------

    def _parse_global_header(self) -> PcapHeader:
        (magic_le,) = struct.unpack_from("<I", self._mm, 0)
        (magic_be,) = struct.unpack_from(">I", self._mm, 0)
        if magic_le in (MAGIC_MICROSECONDS, MAGIC_NANOSECONDS):
            order, magic = "<", magic_le
        elif magic_be in (MAGIC_MICROSECONDS, MAGIC_NANOSECONDS):
            order, magic = ">", magic_be
        elif magic_le == MAGIC_PCAPNG:
            raise PcapFormatError(
                f"{self.path} is a pcapng file; only classic pcap is supported "
                "(convert it with: editcap -F pcap in.pcapng out.pcap)", self.path, 0,
            )
        else:
            raise PcapFormatError(
                f"{self.path} is not a pcap file: magic 0x{magic_be:08x} at byte offset 0 "
                "(expected a1b2c3d4 or a1b23c4d in either byte order)", self.path, 0,
            )
        major, minor, _zone, _sigfigs, snaplen, linktype = struct.unpack_from(order + "HHiIII", self._mm, 4)
        linktype &= 0x0FFFFFFF  # the top bits may carry FCS information
        if linktype not in _LINK_HEADER:
            raise PcapFormatError(
                f"{self.path}: link type {linktype} is not supported "
                "(Ethernet 1, Linux cooked 113 and raw IPv4 101/228 are)", self.path, 20,
            )
        return PcapHeader(order, magic == MAGIC_NANOSECONDS, (major, minor), snaplen, linktype)

    # -- record walk ---------------------------------------------------------------------

    def _record_chunks(self) -> Iterator[_RecordChunk]:
        """Walk the record headers; sets ``self.error`` if the walk ends early."""
        mm, end, path = self._mm, len(self._mm), self.path
        unpack = struct.Struct(self.header.byte_order + "IIII").unpack_from
        frac_limit = 1_000_000_000 if self.header.nanosecond else 1_000_000
        frac_to_ns = 1 if self.header.nanosecond else 1000
        length_limit = max(self.header.snaplen, MAX_RECORD_BYTES)
        offset = GLOBAL_HEADER_SIZE
        self.error = None
        while offset < end and self.error is None:
            offsets: list[int] = []
            lengths: list[int] = []
            seconds: list[int] = []
            fractions: list[int] = []
            while offset < end and len(offsets) < self.chunk_records:  # one step per record
                if end - offset < RECORD_HEADER_SIZE:
                    self.error = PcapTruncatedError(
                        f"{path}: truncated record header at byte offset {offset} "
                        f"({end - offset} of {RECORD_HEADER_SIZE} bytes present)", path, offset,
                    )
                    break
                ts_sec, ts_frac, incl_len, _orig_len = unpack(mm, offset)
                if incl_len > length_limit or ts_frac >= frac_limit:
                    self.error = PcapCorruptRecordError(
                        f"{path}: corrupt record header at byte offset {offset} (captured length "
                        f"{incl_len}, sub-second field {ts_frac}); nothing after it can be read", path, offset,
                    )
                    break
                if offset + RECORD_HEADER_SIZE + incl_len > end:
                    self.error = PcapTruncatedError(
                        f"{path}: truncated record at byte offset {offset}: it declares {incl_len} bytes "
                        f"but the file ends after {end - offset - RECORD_HEADER_SIZE}", path, offset,
                    )
                    break
                offsets.append(offset + RECORD_HEADER_SIZE)
                lengths.append(incl_len)
                seconds.append(ts_sec)
                fractions.append(ts_frac)
                offset += RECORD_HEADER_SIZE + incl_len
            if offsets:
                self.records_read += len(offsets)
                yield _RecordChunk(
                    np.asarray(offsets, np.int64),
                    np.asarray(lengths, np.int64),
                    np.asarray(seconds, np.int64) * 1_000_000_000 + np.asarray(fractions, np.int64) * frac_to_ns,
                )

    def _raise_if_failed(self) -> None:
        if self.error is not None:  # the caller logs it: it knows whether that is the end of a capture
            raise self.error

    # -- network framing (vectorised over a chunk) ---------------------------------------

    def _locate_udp(self, chunk: _RecordChunk, ports: Collection[int] | None) -> _UdpChunk:
        data = self._data
        last = data.shape[0] - 1

        def u8(at: np.ndarray) -> np.ndarray:
            byte: np.ndarray = data[np.minimum(at, last)].astype(np.int64)
            return byte

        def be16(at: np.ndarray) -> np.ndarray:
            word: np.ndarray = (u8(at) << 8) | u8(at + 1)
            return word

        start, length = chunk.data_offsets, chunk.lengths
        end = start + length
        linktype = self.header.linktype
        l3 = start + _LINK_HEADER[linktype]
        if linktype == LINKTYPE_ETHERNET:
            ethertype = be16(start + 12)
            tagged = np.isin(ethertype, ETHERTYPE_VLAN)
            ethertype = np.where(tagged, be16(start + 16), ethertype)
            l3 = np.where(tagged, l3 + 4, l3)
            is_ipv4 = (ethertype == ETHERTYPE_IPV4) & (l3 + 20 <= end)
        elif linktype == LINKTYPE_LINUX_SLL:
            is_ipv4 = (be16(start + 14) == ETHERTYPE_IPV4) & (l3 + 20 <= end)
        else:
            is_ipv4 = l3 + 20 <= end
        version_ihl = u8(l3)
        is_ipv4 &= (version_ihl >> 4) == 4
        l4 = l3 + (version_ihl & 0x0F) * 4
        is_udp = is_ipv4 & (u8(l3 + 9) == IPPROTO_UDP) & ((version_ihl & 0x0F) >= 5)
        fragment = is_udp & ((be16(l3 + 6) & 0x3FFF) != 0)
        whole_header = is_udp & ~fragment & (l4 + 8 <= end)
        udp_length = be16(l4 + 4)
        complete = whole_header & (udp_length >= 8) & (l4 + udp_length <= end)
        dst_port = be16(l4 + 2)
        wanted = complete
        skipped = self.skipped
        skipped["not_ipv4"] += int(np.count_nonzero(~is_ipv4))
        skipped["not_udp"] += int(np.count_nonzero(is_ipv4 & ~is_udp))
        skipped["ip_fragment"] += int(np.count_nonzero(fragment))
        skipped["cut_by_snaplen"] += int(np.count_nonzero(is_udp & ~fragment & ~complete))
        if ports is not None:
            wanted = complete & np.isin(dst_port, np.fromiter(ports, np.int64))
            skipped["other_port"] += int(np.count_nonzero(complete & ~wanted))
        return _UdpChunk(chunk.timestamps_ns[wanted], (l4 + 8)[wanted], (udp_length - 8)[wanted], dst_port[wanted])

    # -- public iteration ----------------------------------------------------------------

    def udp_packets(self, ports: Collection[int] | None = None) -> Iterator[UdpPacket]:
        """Every UDP datagram (to one of ``ports`` when given), in file order. Raises the
        file's ``PcapError`` after the last readable datagram if the file ends badly."""
        mm = self._mm
        for chunk in self._record_chunks():
            udp = self._locate_udp(chunk, ports)
            for ts, start, size, port in zip(
                udp.timestamps_ns.tolist(), udp.payload_offsets.tolist(),
                udp.payload_lengths.tolist(), udp.dst_ports.tolist(),
                strict=True,
            ):
                yield UdpPacket(ts, port, mm[start:start + size])
        self._raise_if_failed()

    def udp_payload_batches(
        self, port: int, payload_size: int, batch_packets: int | None = None
    ) -> Iterator[PacketBatch]:
        """Datagrams to ``port`` whose payload is exactly ``payload_size`` bytes, stacked in
        (N, payload_size) arrays of about ``batch_packets`` rows; others to that port are
        counted as ``skipped["wrong_size"]``. Raises like ``udp_packets`` at the end."""
        if batch_packets is not None:
            self.chunk_records = max(1, int(batch_packets))
        columns = np.arange(payload_size, dtype=np.int64)
        for chunk in self._record_chunks():
            udp = self._locate_udp(chunk, (port,))
            right_size = udp.payload_lengths == payload_size
            self.skipped["wrong_size"] += int(np.count_nonzero(~right_size))
            if not right_size.any():
                continue
            starts = udp.payload_offsets[right_size]
            payloads = self._data[starts[:, None] + columns[None, :]]
            yield PacketBatch(udp.timestamps_ns[right_size], payloads, dict(self.skipped))
        self._raise_if_failed()


def iter_udp_packets(path: str | os.PathLike[str], ports: Collection[int] | None = None) -> Iterator[UdpPacket]:
    """``(timestamp_ns, dst_port, payload)`` for each UDP datagram of a pcap file."""
    with PcapReader(path) as reader:
        yield from reader.udp_packets(ports)


def read_udp_payloads(
    path: str | os.PathLike[str], port: int = 2368, payload_size: int = 1206, strict: bool = True
) -> PacketBatch:
    """All ``payload_size``-byte payloads sent to ``port`` in one (N, payload_size) array.

    When the file ends badly: with ``strict`` the ``PcapError`` is raised and carries the
    readable part as ``error.partial``; without, the batch comes back with ``error`` set."""
    timestamps: list[np.ndarray] = []
    payloads: list[np.ndarray] = []
    with PcapReader(path) as reader:
        error: PcapError | None = None
        try:
            for batch in reader.udp_payload_batches(port, payload_size):
                timestamps.append(batch.timestamps_ns)
                payloads.append(batch.payloads)
        except PcapError as exc:
            error = exc
        result = PacketBatch(
            np.concatenate(timestamps) if timestamps else np.empty(0, np.int64),
            np.concatenate(payloads) if payloads else np.empty((0, payload_size), np.uint8),
            dict(reader.skipped),
            error,
        )
    if error is not None and strict:
        error.partial = result  # type: ignore[attr-defined]
        raise error
    return result
