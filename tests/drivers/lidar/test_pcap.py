"""The pcap reader on the real capture, on files built here, and on damaged copies."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from drivers.lidar.pcap import (
    PcapCorruptRecordError,
    PcapError,
    PcapFormatError,
    PcapReader,
    PcapTruncatedError,
    iter_udp_packets,
    read_udp_payloads,
)

from .builders import CAPTURE, copy_records, ethernet_udp_frame, record_offsets, write_pcap

FIRST_RECORD_NS = 1_415_069_209_556_942_000


def test_real_capture_datagrams(shared_data):
    packets = list(iter_udp_packets(shared_data / CAPTURE))
    assert len(packets) == 2269
    data = [p for p in packets if p.dst_port == 2368]
    positions = [p for p in packets if p.dst_port == 8308]
    assert len(data) == 1902 and {len(p.payload) for p in data} == {1206}
    assert len(positions) == 367 and {len(p.payload) for p in positions} == {512}
    assert packets[0].timestamp_ns == FIRST_RECORD_NS
    assert all(a.timestamp_ns <= b.timestamp_ns for a, b in itertools.pairwise(packets))
    assert bytes(data[0].payload[:2]) == b"\xff\xee"


def test_real_capture_stacked_payloads(shared_data):
    batch = read_udp_payloads(shared_data / CAPTURE, port=2368, payload_size=1206)
    assert batch.payloads.shape == (1902, 1206) and batch.payloads.dtype == np.uint8
    assert batch.timestamps_ns[0] == FIRST_RECORD_NS
    assert batch.skipped["other_port"] == 367 and batch.error is None
    first = next(iter_udp_packets(shared_data / CAPTURE, ports=[2368]))
    assert bytes(batch.payloads[0]) == bytes(first.payload)


def test_port_filter(shared_data):
    with PcapReader(shared_data / CAPTURE) as reader:
        positions = list(reader.udp_packets(ports={8308}))
        assert len(positions) == 367
        assert reader.skipped["other_port"] == 1902
        assert reader.records_read == 2269


@pytest.fixture
def small_capture(shared_data, tmp_path):
    return copy_records(shared_data / CAPTURE, tmp_path / "small.pcap", 40)


def test_truncated_mid_record_yields_everything_then_names_file_and_offset(small_capture, tmp_path):
    offsets = record_offsets(small_capture)
    cut = tmp_path / "cut.pcap"
    cut.write_bytes(small_capture.read_bytes()[: offsets[30] + 16 + 500])  # inside record 30's data
    seen = []
    with pytest.raises(PcapTruncatedError) as caught:
        for packet in iter_udp_packets(cut):
            seen.append(packet)
    assert len(seen) == 30
    assert caught.value.offset == offsets[30]
    assert str(cut) in str(caught.value) and f"byte offset {offsets[30]}" in str(caught.value)


def test_truncated_mid_record_header(small_capture, tmp_path):
    offsets = record_offsets(small_capture)
    cut = tmp_path / "cut-header.pcap"
    cut.write_bytes(small_capture.read_bytes()[: offsets[12] + 7])
    reader_packets = []
    with pytest.raises(PcapTruncatedError, match="truncated record header") as caught:
        reader_packets.extend(iter_udp_packets(cut))
    assert caught.value.offset == offsets[12]


def test_garbage_appended(small_capture, tmp_path):
    size = small_capture.stat().st_size
    damaged = tmp_path / "garbage.pcap"
    damaged.write_bytes(small_capture.read_bytes() + b"\xde\xad\xbe\xef" * 8)
    seen = []
    with pytest.raises(PcapCorruptRecordError) as caught:
        for packet in iter_udp_packets(damaged):
            seen.append(packet)
    assert len(seen) == 40
    assert caught.value.offset == size and str(damaged) in str(caught.value)


def test_stacked_read_of_a_damaged_file(small_capture, tmp_path):
    offsets = record_offsets(small_capture)
    cut = tmp_path / "cut.pcap"
    cut.write_bytes(small_capture.read_bytes()[: offsets[30] + 20])
    lenient = read_udp_payloads(cut, strict=False)
    assert isinstance(lenient.error, PcapTruncatedError)
    with pytest.raises(PcapTruncatedError) as caught:
        read_udp_payloads(cut)
    assert len(caught.value.partial) == len(lenient) > 0


def test_wrong_magic(tmp_path, small_capture):
    bad = tmp_path / "bad-magic.pcap"
    bad.write_bytes(b"\x00\x01\x02\x03" + small_capture.read_bytes()[4:])
    with pytest.raises(PcapFormatError, match=r"not a pcap file.*byte offset 0") as caught:
        PcapReader(bad)
    assert str(bad) in str(caught.value) and caught.value.offset == 0


def test_pcapng_short_and_missing_files(tmp_path):
    pcapng = tmp_path / "capture.pcapng"
    pcapng.write_bytes(b"\x0a\x0d\x0d\x0a" + b"\x00" * 40)
    with pytest.raises(PcapFormatError, match="pcapng"):
        PcapReader(pcapng)
    short = tmp_path / "short.pcap"
    short.write_bytes(b"\xd4\xc3\xb2\xa1")
    with pytest.raises(PcapFormatError, match="shorter than the 24-byte header"):
        PcapReader(short)
    with pytest.raises(PcapError, match=r"cannot open pcap .*missing.pcap"):
        PcapReader(tmp_path / "missing.pcap")


@pytest.mark.parametrize("byte_order", ["<", ">"])
@pytest.mark.parametrize("nanosecond", [False, True])
def test_byte_orders_and_timestamp_resolutions(tmp_path, byte_order, nanosecond):
    stamps = [1_700_000_000_123_456_789, 1_700_000_001_000_000_001]
    records = [(ts, ethernet_udp_frame(bytes([i]) * 100, 2368)) for i, ts in enumerate(stamps)]
    path = write_pcap(tmp_path / "x.pcap", records, byte_order=byte_order, nanosecond=nanosecond)
    packets = list(iter_udp_packets(path))
    expected = stamps if nanosecond else [ts // 1000 * 1000 for ts in stamps]
    assert [p.timestamp_ns for p in packets] == expected
    assert [bytes(p.payload) for p in packets] == [b"\x00" * 100, b"\x01" * 100]
    with PcapReader(path) as reader:
        assert reader.header.byte_order == byte_order and reader.header.nanosecond == nanosecond


def test_non_udp_and_odd_frames_are_skipped_and_counted(tmp_path):
    payload = b"\x07" * 64
    records = [
        (1000, ethernet_udp_frame(payload)),
        (2000, ethernet_udp_frame(payload, protocol=6)),  # TCP
        (3000, ethernet_udp_frame(payload, ethertype=0x0806)),  # ARP
        (4000, ethernet_udp_frame(payload, vlan=True)),  # 802.1Q tagged UDP: read
        (5000, ethernet_udp_frame(payload, fragment=True)),  # more fragments follow
        (6000, ethernet_udp_frame(payload)[:50]),  # cut by the snap length
        (7000, b"\x00" * 10),  # runt
    ]
    path = write_pcap(tmp_path / "mixed.pcap", records)
    with PcapReader(path) as reader:
        packets = list(reader.udp_packets())
        assert [p.timestamp_ns for p in packets] == [1000, 4000]
        assert all(bytes(p.payload) == payload for p in packets)
        assert reader.skipped["not_udp"] == 1
        assert reader.skipped["not_ipv4"] == 2
        assert reader.skipped["ip_fragment"] == 1
        assert reader.skipped["cut_by_snaplen"] == 1


def test_linux_cooked_capture(tmp_path):
    frame = ethernet_udp_frame(b"\x05" * 32)
    sll = b"\x00\x00\x00\x01\x00\x06" + b"\x00" * 8 + b"\x08\x00" + frame[14:]
    path = write_pcap(tmp_path / "sll.pcap", [(10, sll)], linktype=113)
    assert [bytes(p.payload) for p in iter_udp_packets(path)] == [b"\x05" * 32]


def test_unsupported_link_type(tmp_path):
    path = write_pcap(tmp_path / "wifi.pcap", [(1, b"\x00" * 60)], linktype=105)
    with pytest.raises(PcapFormatError, match="link type 105"):
        PcapReader(path)
