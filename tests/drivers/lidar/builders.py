"""Test helpers: build Velodyne data packets and classic pcap files byte by byte."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

from drivers.lidar.velodyne import PACKET_DTYPE

CAPTURE = "vlp16-90deg-50frames.pcap"
CALIBRATION = "VLP-16.xml"


def build_packet(
    azimuths,
    distances,
    reflectivity=None,
    timestamp_us: int = 0,
    return_mode: int = 0x37,
    product_id: int = 0x22,
) -> bytes:
    """A 1206-byte data packet: 12 block azimuths (1/100°), (12, 32) raw distances (2 mm)."""
    packet = np.zeros(1, PACKET_DTYPE)
    blocks = packet["blocks"][0]
    blocks["flag"] = 0xEEFF
    blocks["azimuth"] = np.asarray(azimuths, np.uint16)
    blocks["returns"]["distance"] = np.asarray(distances, np.uint16)
    if reflectivity is not None:
        blocks["returns"]["reflectivity"] = np.asarray(reflectivity, np.uint8)
    packet["timestamp_us"] = timestamp_us
    packet["return_mode"] = return_mode
    packet["product_id"] = product_id
    return packet.tobytes()


def ethernet_udp_frame(payload: bytes, dst_port: int = 2368, *, protocol: int = 17, ethertype: int = 0x0800,
                       vlan: bool = False, fragment: bool = False) -> bytes:
    udp = struct.pack(">HHHH", 2368, dst_port, 8 + len(payload), 0) + payload
    ip = struct.pack(">BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0x2000 if fragment else 0, 64, protocol, 0,
                     bytes([192, 168, 1, 201]), bytes([255, 255, 255, 255]))
    mac = b"\xff" * 6 + b"\x60\x76\x88\x00\x00\x01"
    if vlan:
        return mac + struct.pack(">HHH", 0x8100, 5, ethertype) + ip + udp
    return mac + struct.pack(">H", ethertype) + ip + udp


def write_pcap(path: Path, records, *, byte_order: str = "<", nanosecond: bool = False, linktype: int = 1,
               snaplen: int = 65535) -> Path:
    """``records``: (timestamp_ns, link-layer frame bytes) pairs."""
    magic = 0xA1B23C4D if nanosecond else 0xA1B2C3D4
    out = [struct.pack(byte_order + "IHHiIII", magic, 2, 4, 0, 0, snaplen, linktype)]
    for timestamp_ns, frame in records:
        seconds, rest = divmod(timestamp_ns, 1_000_000_000)
        fraction = rest if nanosecond else rest // 1000
        out.append(struct.pack(byte_order + "IIII", seconds, fraction, len(frame), len(frame)) + frame)
    path.write_bytes(b"".join(out))
    return path


def record_offsets(path: Path) -> list[int]:
    """Byte offset of every record header of a little-endian classic pcap file."""
    data = path.read_bytes()
    offsets, offset = [], 24
    while offset + 16 <= len(data):
        offsets.append(offset)
        (length,) = struct.unpack_from("<I", data, offset + 8)
        offset += 16 + length
    return offsets


def copy_records(source: Path, target: Path, count: int) -> Path:
    """The first ``count`` records of a pcap file, as a new pcap file."""
    offsets = record_offsets(source)
    data = source.read_bytes()
    end = offsets[count] if count < len(offsets) else len(data)
    target.write_bytes(data[:end])
    return target


def veloview_xyz(point) -> tuple[float, float, float]:
    """A decoded point (REP-103: x forward, y left) in VeloView's axes (x right, y forward),
    the convention of VeloView's published reference values."""
    return (-float(point["y"]), float(point["x"]), float(point["z"]))


def ros_yaml(calibration) -> str:
    """A calibration as the ROS velodyne_pointcloud YAML (radians, metres)."""
    lines = [f"distance_resolution: {calibration.distance_resolution_m!r}", f"num_lasers: {calibration.num_lasers}",
             "lasers:"]
    for i in range(calibration.num_lasers):
        lines.append(
            f"  - {{laser_id: {i}, rot_correction: {float(np.deg2rad(calibration.rotational_deg[i]))!r}, "
            f"vert_correction: {float(np.deg2rad(calibration.vertical_deg[i]))!r}, "
            f"dist_correction: {float(calibration.distance_offset_m[i])!r}, "
            f"vert_offset_correction: {float(calibration.vertical_offset_m[i])!r}, "
            f"horiz_offset_correction: {float(calibration.horizontal_offset_m[i])!r}}}")
    return "\n".join(lines) + "\n"


def send_when_bound(source, payloads, pause_s: float = 0.0, every: int = 1) -> None:
    """Send ``payloads`` over UDP to a UdpSource once it has bound its port, sleeping
    ``pause_s`` after every ``every`` datagrams (to stay within a default receive buffer)."""
    import socket
    import time

    deadline = time.monotonic() + 5
    while source.bound_port is None and time.monotonic() < deadline:
        time.sleep(0.005)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
        for index, payload in enumerate(payloads):
            sender.sendto(payload, ("127.0.0.1", source.bound_port))
            if pause_s and index % every == every - 1:
                time.sleep(pause_s)
