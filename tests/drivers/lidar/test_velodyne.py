"""Velodyne decoding: VeloView's published reference on the real VLP-16 capture, HDL-32E on
packets built here, skipped packets, dual return, time stamping, calibration files."""

from __future__ import annotations

import logging
import math

import numpy as np
import pytest

from drivers.lidar.calibration import CalibrationError, default_calibration, load_veloview_xml
from drivers.lidar.velodyne import PACKET_DTYPE, PACKET_SIZE, VelodyneDecoder, decode_pcap
from drivers.pointcloud import RETURN_STRONGEST, SENSOR_POINT_DTYPE

from .builders import CALIBRATION, CAPTURE, build_packet, ethernet_udp_frame, veloview_xyz, write_pcap

# VeloView's regression file Testing/vlp-16.test for this capture; its point_values lines
# read "index x y z intensity is_dual" (TestReader.cxx), compared within 1e-4.
VELOVIEW_FRAME_POINTS = {0: 5736, 2: 13898, 16: 13860, 51: 274}
VELOVIEW_FRAME16_POINTS = {
    0: ((0.0801272, 6.04037, -1.61865), 4),
    13859: ((-0.0094354, 4.91462, 1.31687), 29),
}


@pytest.fixture(scope="module")
def capture_frames(shared_data):
    frames, stats = decode_pcap(shared_data / CAPTURE, shared_data / CALIBRATION)
    return frames, stats


def test_packet_layout_is_1206_bytes():
    assert PACKET_DTYPE.itemsize == PACKET_SIZE == 1206


def test_acceptance_reproduces_veloview_reference(capture_frames):
    frames, stats = capture_frames
    assert len(frames) == 52
    assert stats.skipped == {}
    for index, count in VELOVIEW_FRAME_POINTS.items():
        assert frames[index].points.shape[0] == count, f"frame {index}"
    frame16 = frames[16].points
    for index, (xyz, intensity) in VELOVIEW_FRAME16_POINTS.items():
        point = frame16[index]  # VeloView's axes; ours are REP-103 (x forward, y left)
        assert veloview_xyz(point) == pytest.approx(xyz, abs=1e-4), f"point {index}"
        assert point["intensity"] == intensity
    # The README reads the last column of VeloView's point_values as "laser 0"; it is the
    # is_dual flag. Point 0 is at -15° elevation (laser 0 of VLP-16.xml) and point 13,859 at
    # +15° (z / horizontal range = tan 15°), i.e. laser 15 in the calibration's order: the
    # lowest and highest beams, rings 0 and 15. Laser 1 (+1°) is ring 8, laser 2 (-13°) ring 1.
    assert (frame16[0]["laser"], frame16[0]["ring"]) == (0, 0)
    assert (frame16[13859]["laser"], frame16[13859]["ring"]) == (15, 15)
    second, third = frame16[frame16["laser"] == 1][0], frame16[frame16["laser"] == 2][0]
    assert (second["ring"], third["ring"]) == (8, 1)
    last = frame16[13859]
    assert math.degrees(math.atan2(last["z"], math.hypot(last["x"], last["y"]))) == pytest.approx(15.0, abs=0.01)


def test_capture_frames_are_well_formed(capture_frames):
    frames, stats = capture_frames
    assert [f.seq for f in frames] == list(range(52))
    assert all(f.model == "VLP-16" and f.points.dtype == SENSOR_POINT_DTYPE and f.axes == "REP-103" for f in frames)
    assert all(np.all(f.points["return_type"] == RETURN_STRONGEST) for f in frames)  # a strongest-return capture
    assert sum(f.points.shape[0] for f in frames) == stats.points
    captures = np.array([f.capture_ns for f in frames])
    spacing_ms = np.diff(captures)[1:-1] / 1e6
    assert np.all((spacing_ms > 45) & (spacing_ms < 55))  # the capture spins at 20 Hz
    for frame in frames[1:-1]:
        times = frame.points["time"]
        assert times[0] >= 0 and times[-1] < 0.06
        assert np.all(np.diff(times) >= 0)  # firing order is time order
        assert set(np.unique(frame.points["ring"]).tolist()) <= set(range(16))


def test_builtin_table_matches_the_xml(shared_data, capture_frames):
    frames, _ = capture_frames
    builtin, _ = decode_pcap(shared_data / CAPTURE, model="VLP-16")
    assert len(builtin) == len(frames)
    np.testing.assert_array_equal(builtin[16].points, frames[16].points)


def test_model_detected_without_configuration(shared_data, capture_frames, caplog):
    # this VLP-16's firmware reports the HDL-32E's product id (0x21); its packets are
    # 1,327 µs apart in sensor time, an HDL-32E's would be 553 µs
    frames, _ = capture_frames
    with caplog.at_level(logging.WARNING, logger="drivers.lidar.velodyne"):
        detected, _ = decode_pcap(shared_data / CAPTURE)
    assert detected[0].model == "VLP-16"
    assert [f.points.shape[0] for f in detected] == [f.points.shape[0] for f in frames]
    assert any("lidar_model_detected" in r.getMessage() and "0x21" in r.getMessage() for r in caplog.records)


def test_batch_size_does_not_change_the_result(shared_data, capture_frames):
    from drivers.lidar.pcap import read_udp_payloads

    frames, _ = capture_frames
    batch = read_udp_payloads(shared_data / CAPTURE)
    decoder = VelodyneDecoder(shared_data / CALIBRATION)
    odd_sized = []
    for begin in range(0, len(batch), 7):
        odd_sized += decoder.decode(batch.payloads[begin:begin + 7], batch.timestamps_ns[begin:begin + 7])
    odd_sized.append(decoder.flush())
    assert [f.points.shape[0] for f in odd_sized] == [f.points.shape[0] for f in frames]
    np.testing.assert_array_equal(odd_sized[16].points, frames[16].points)
    assert [f.capture_ns for f in odd_sized] == [f.capture_ns for f in frames]


# -- packets built here ------------------------------------------------------------------

def _rotation_packets(n_packets: int, step: int, start: int = 0, timestamp_us: int = 0, **kwargs) -> list[bytes]:
    """Packets whose blocks advance ``step`` hundredths of a degree, every channel at 10 m."""
    packets = []
    for p in range(n_packets):
        azimuths = (start + (p * 12 + np.arange(12)) * step) % 36000
        distances = np.full((12, 32), 5000)
        reflectivity = np.tile(np.arange(32), (12, 1))
        packets.append(build_packet(azimuths, distances, reflectivity, timestamp_us=timestamp_us + p * 553, **kwargs))
    return packets


def test_hdl32e_synthetic_packet_geometry():
    step = 16  # 0.16° a block, no half-way roundings in VeloView's interpolation
    packets = _rotation_packets(2, step, start=9000, product_id=0x21)
    decoder = VelodyneDecoder()  # no model: detected from the product id
    frames = decoder.decode_payloads((1_000_000_000 + i * 553_000, p) for i, p in enumerate(packets))
    assert frames == []
    frame = decoder.flush()
    assert frame.model == "HDL-32E" and decoder.model == "HDL-32E"
    points = frame.points
    assert points.shape[0] == 2 * 12 * 32
    vertical = default_calibration("HDL-32E").vertical_deg
    for index in (0, 5, 31, 32 + 17, 12 * 32 + 100, 767):
        block, channel = divmod(index, 32)
        azimuth = (9000 + block * step + round(step * channel * 1.152 / 46.08)) / 100.0
        elevation = vertical[channel]
        expected = (  # REP-103: x forward at azimuth 0, azimuth clockwise seen from above, y left
            10.0 * math.cos(math.radians(elevation)) * math.cos(math.radians(azimuth)),
            -10.0 * math.cos(math.radians(elevation)) * math.sin(math.radians(azimuth)),
            10.0 * math.sin(math.radians(elevation)),
        )
        assert (points[index]["x"], points[index]["y"], points[index]["z"]) == pytest.approx(expected, abs=1e-4)
        assert points[index]["laser"] == channel
        assert points[index]["ring"] == int(np.sum(vertical < elevation))  # rank by elevation
        assert points[index]["intensity"] == channel
        expected_time = ((index // 32) * 46.08 + channel * 1.152) * 1e-6
        assert points[index]["time"] == pytest.approx(expected_time, abs=1e-7)
    # azimuth 90° (clockwise from forward) points right: along -y
    assert points[15]["y"] == pytest.approx(-10.0, abs=0.01) and abs(points[15]["x"]) < 0.05


def test_frames_split_where_the_azimuth_wraps():
    step = 16
    packets = _rotation_packets(200, step, start=30000, product_id=0x21)  # 2400 blocks: 384° of turn
    decoder = VelodyneDecoder(model="HDL-32E")
    frames = decoder.decode_payloads((i * 553_000, p) for i, p in enumerate(packets))
    assert len(frames) == 1  # the wrap past 360° closes the first (partial) rotation
    first_block_of_second = -(-(36000 - 30000) // step)
    assert frames[0].points.shape[0] == first_block_of_second * 32
    assert decoder.flush().points.shape[0] == (2400 - first_block_of_second) * 32


def test_zero_distances_are_dropped():
    distances = np.full((12, 32), 1000)
    distances[:, ::2] = 0
    packet = build_packet(np.arange(12) * 40, distances, product_id=0x22)
    decoder = VelodyneDecoder(model="VLP-16")
    decoder.decode_payloads([(0, packet)])
    points = decoder.flush().points
    assert points.shape[0] == 12 * 16
    assert set(points["laser"].tolist()) == {laser for laser in range(16) if laser % 2 == 1}
    assert set(points["ring"].tolist()) == set(range(8, 16))  # the odd lasers are the upper half


def test_wrong_size_and_other_packets_are_skipped_and_counted(caplog):
    good = _rotation_packets(3, 40, product_id=0x22)
    other_model = bytearray(good[1])
    other_model[-1] = 0x28  # a VLP-32C packet in a VLP-16 stream
    bad_flag = bytearray(good[2])
    bad_flag[0:2] = b"\x00\x00"
    decoder = VelodyneDecoder(model="VLP-16", source="test-sensor")
    with caplog.at_level(logging.WARNING, logger="drivers.lidar.velodyne"):
        decoder.decode_payloads([(0, good[0]), (1, b"\x00" * 512), (2, good[0] + b"\x00" * 42),
                                 (3, bytes(other_model)), (4, bytes(bad_flag))])
    assert decoder.stats.skipped == {"wrong_size": 2, "other_model": 1, "bad_block_flag": 1}
    assert decoder.stats.packets == 5 and decoder.stats.decoded == 1
    messages = [r.getMessage() for r in caplog.records]
    assert any("test-sensor" in m and "wrong_size" in m and "512 bytes" in m for m in messages)
    assert any("other_model" in m and "0x28" in m for m in messages)
    assert decoder.flush().points.shape[0] == 12 * 32


def test_wrong_size_packets_in_a_pcap_are_counted(tmp_path):
    packets = _rotation_packets(4, 40, product_id=0x22)
    records = [(1_000_000_000 + i * 1_327_000, ethernet_udp_frame(p)) for i, p in enumerate(packets)]
    records.insert(2, (1_002_000_000, ethernet_udp_frame(b"\x01" * 1000)))
    records.append((1_009_000_000, ethernet_udp_frame(b"\x01" * 512, dst_port=8308)))  # another port: ignored
    path = write_pcap(tmp_path / "mixed.pcap", records)
    frames, stats = decode_pcap(path, model="VLP-16")
    assert stats.skipped == {"wrong_size": 1}
    assert sum(f.points.shape[0] for f in frames) == 4 * 12 * 32


def test_unknown_model_without_configuration_is_skipped():
    decoder = VelodyneDecoder()
    packet = _rotation_packets(1, 40, product_id=0x31)[0]  # a Velarray: no decoder here
    assert decoder.decode_payloads([(0, packet)]) == []
    assert decoder.stats.skipped == {"unsupported_model": 1}
    assert decoder.flush() is None


def test_dual_return_identical_second_return_is_dropped():
    azimuths = np.repeat(np.arange(6) * 40, 2)  # blocks in pairs: same azimuth
    distances = np.full((12, 32), 2000)
    distances[1::2, :16] = 2500  # second returns differ on channels 0..15 only
    packet = build_packet(azimuths, distances, np.full((12, 32), 9), return_mode=0x39, product_id=0x22)
    decoder = VelodyneDecoder(model="VLP-16")
    decoder.decode_payloads([(0, packet)])
    points = decoder.flush().points
    assert points.shape[0] == 6 * 32 + 6 * 16
    second_block_times = points["time"][32:48]
    assert np.allclose(second_block_times, points["time"][:16])  # a pair fires at the same time


def test_return_type_of_every_point():
    # dual return: blocks in pairs, the last return first, then the strongest (or, when the
    # last was the strongest, the second strongest)
    azimuths = np.repeat(np.arange(6) * 40, 2)
    distances = np.full((12, 32), 2000)
    distances[1::2, :16] = 2500  # channels 0..15: two different returns
    reflectivity = np.full((12, 32), 9)
    reflectivity[0::2, 8:16] = 30  # channels 8..15: the last return is also the strongest
    packet = build_packet(azimuths, distances, reflectivity, return_mode=0x39, product_id=0x22)
    decoder = VelodyneDecoder(model="VLP-16")
    decoder.decode_payloads([(0, packet)])
    points = decoder.flush().points
    pair = points[:32 + 16]  # the first pair of blocks: 32 + the 16 differing second returns
    from drivers.pointcloud import RETURN_BOTH, RETURN_LAST, RETURN_SECOND

    assert pair["return_type"][:8].tolist() == [RETURN_LAST] * 8
    assert pair["return_type"][8:16].tolist() == [RETURN_BOTH] * 8
    assert pair["return_type"][16:32].tolist() == [RETURN_BOTH] * 16  # identical twins: one point, both
    assert pair["return_type"][32:40].tolist() == [RETURN_STRONGEST] * 8
    assert pair["return_type"][40:48].tolist() == [RETURN_SECOND] * 8
    # single return modes: the packet's mode byte
    for mode, expected in ((0x37, RETURN_STRONGEST), (0x38, RETURN_LAST)):
        single = VelodyneDecoder(model="VLP-16")
        single.decode_payloads([(0, build_packet(np.arange(12) * 40, np.full((12, 32), 2000), return_mode=mode))])
        assert set(single.flush().points["return_type"].tolist()) == {expected}


def test_dual_return_lone_return_is_both_whatever_the_empty_slot_says():
    # real sensors (nebula's VLP-16 dual capture) leave a reflectivity byte in an empty slot
    azimuths = np.repeat(np.arange(6) * 40, 2)
    distances = np.full((12, 32), 2000)
    distances[1::2, :16] = 0  # channels 0..15: no second return in the strongest block
    distances[0::2, 16:] = 0  # channels 16..31: no last return, only a strongest one
    reflectivity = np.full((12, 32), 9)
    reflectivity[1::2, :16] = 40  # the empty slot's stale byte, above the lone return's
    reflectivity[0::2, 16:] = 40
    packet = build_packet(azimuths, distances, reflectivity, return_mode=0x39, product_id=0x22)
    decoder = VelodyneDecoder(model="VLP-16")
    decoder.decode_payloads([(0, packet)])
    points = decoder.flush().points
    from drivers.pointcloud import RETURN_BOTH

    assert points.shape[0] == 6 * 32
    assert set(points["return_type"].tolist()) == {RETURN_BOTH}


def test_sensor_time_is_used_when_synchronised():
    hour_ns = 3_600_000_000_000
    base = 1_700_000_000 * 1_000_000_000 // hour_ns * hour_ns  # a top of the hour
    toh_us = 1_234_567_890
    packet = _rotation_packets(1, 40, timestamp_us=toh_us, product_id=0x22)[0]
    synced_arrival = base + toh_us * 1000 + 1_327_000 + 300_000  # arrives 0.3 ms after its last firing
    decoder = VelodyneDecoder(model="VLP-16")
    decoder.decode_payloads([(synced_arrival, packet)])
    assert decoder.flush().capture_ns == base + toh_us * 1000

    late = synced_arrival + 5_000_000_000  # host clock 5 s off: the sensor is not synchronised
    decoder = VelodyneDecoder(model="VLP-16")
    decoder.decode_payloads([(late, packet)])
    assert decoder.flush().capture_ns == late - 1_327_104  # arrival minus the packet's firing time
    forced = VelodyneDecoder(model="VLP-16", time_source="sensor")
    forced.decode_payloads([(late, packet)])
    assert forced.flush().capture_ns == base + toh_us * 1000


def test_sensor_time_near_the_hour_boundary_picks_the_nearest_hour():
    hour_ns = 3_600_000_000_000
    base = 1_700_000_000 * 1_000_000_000 // hour_ns * hour_ns
    packet = _rotation_packets(1, 40, timestamp_us=3_599_999_000, product_id=0x22)[0]  # 1 ms before the hour
    arrival = base + hour_ns + 500_000  # host already in the next hour
    decoder = VelodyneDecoder(model="VLP-16", time_source="sensor")
    decoder.decode_payloads([(arrival, packet)])
    assert decoder.flush().capture_ns == base + 3_599_999_000 * 1000


def test_bad_decode_input_is_a_value_error():
    decoder = VelodyneDecoder(model="VLP-16")
    with pytest.raises(ValueError, match="1206"):
        decoder.decode(np.zeros((2, 1000), np.uint8), np.zeros(2, np.int64))
    with pytest.raises(ValueError, match="arrival times"):
        decoder.decode(np.zeros((2, 1206), np.uint8), np.zeros(3, np.int64))
    with pytest.raises(ValueError, match="time_source"):
        VelodyneDecoder(model="VLP-16", time_source="gps")  # type: ignore[arg-type]


# -- calibration -------------------------------------------------------------------------

def test_veloview_xml_calibration(shared_data):
    calibration = load_veloview_xml(shared_data / CALIBRATION)
    assert calibration.model == "VLP-16" and calibration.num_lasers == 16
    assert calibration.vertical_deg.tolist() == [-15, 1, -13, 3, -11, 5, -9, 7, -7, 9, -5, 11, -3, 13, -1, 15]
    assert calibration.distance_resolution_m == pytest.approx(0.002)
    assert not calibration.rotational_deg.any() and not calibration.vertical_offset_m.any()


def test_calibration_corrections_are_applied(tmp_path, shared_data):
    text = (shared_data / CALIBRATION).read_text()
    # laser 0: vertical offset 10 cm, distance correction 5 cm, rotational correction 1°
    text = text.replace("<id_>0</id_>\n\t\t\t\t<rotCorrection_>0</rotCorrection_>",
                        "<id_>0</id_>\n\t\t\t\t<rotCorrection_>1</rotCorrection_>", 1)
    text = text.replace("<distCorrection_>0</distCorrection_>", "<distCorrection_>5</distCorrection_>", 1)
    text = text.replace("<vertOffsetCorrection_>0</vertOffsetCorrection_>",
                        "<vertOffsetCorrection_>10</vertOffsetCorrection_>", 1)
    path = tmp_path / "corrected.xml"
    path.write_text(text)
    calibration = load_veloview_xml(path)
    assert calibration.rotational_deg[0] == 1 and calibration.distance_offset_m[0] == pytest.approx(0.05)
    packet = build_packet(np.full(12, 9000), np.full((12, 32), 5000), product_id=0x22)
    decoder = VelodyneDecoder(calibration)
    decoder.decode_payloads([(0, packet)])
    point = decoder.flush().points[0]  # laser 0, azimuth 90°, 10 m + 5 cm
    r, omega, v, alpha = 10.05, math.radians(-15), 0.10, math.radians(89.0)
    horizontal = r * math.cos(omega) - v * math.sin(omega)
    assert (point["x"], point["y"], point["z"]) == pytest.approx(
        (horizontal * math.cos(alpha), -horizontal * math.sin(alpha), r * math.sin(omega) + v), abs=1e-4)


def test_bad_calibration_files_name_the_file(tmp_path):
    with pytest.raises(CalibrationError, match="not found"):
        load_veloview_xml(tmp_path / "missing.xml")
    broken = tmp_path / "broken.xml"
    broken.write_text("<boost_serialization><DB><points_>")
    with pytest.raises(CalibrationError, match=r"broken.xml.*not well-formed"):
        load_veloview_xml(broken)
    empty = tmp_path / "empty.xml"
    empty.write_text("<boost_serialization><DB></DB></boost_serialization>")
    with pytest.raises(CalibrationError, match=r"empty.xml: no laser corrections"):
        load_veloview_xml(empty)
    with pytest.raises(CalibrationError, match="no built-in calibration"):
        default_calibration("HDL-64E")


def test_ros_yaml_calibration_decodes_like_the_xml(tmp_path, shared_data, capture_frames):
    from .builders import ros_yaml

    frames, _ = capture_frames
    path = tmp_path / "vlp16.yaml"
    path.write_text(ros_yaml(load_veloview_xml(shared_data / CALIBRATION)))
    from_yaml, _ = decode_pcap(shared_data / CAPTURE, path)
    assert [f.points.shape[0] for f in from_yaml] == [f.points.shape[0] for f in frames]
    np.testing.assert_allclose(from_yaml[16].points["z"], frames[16].points["z"], atol=1e-5)
    np.testing.assert_array_equal(from_yaml[16].points["ring"], frames[16].points["ring"])
    broken = tmp_path / "broken.yaml"
    broken.write_text("lasers: [ {laser_id: 0")
    with pytest.raises(CalibrationError, match=r"broken.yaml is not valid YAML"):
        decode_pcap(shared_data / CAPTURE, broken)
