"""Models decoded through the reference decoder (velodyne_ext.py): identified from the
product id, framed per rotation, points in REP-103 with ring / laser / return type, the
HDL-64E refused without its unit's calibration, the mismatch check as for our own models.
No public VLP-32C / VLS-128 / HDL-64E capture small enough was found, so packets are built
here; units (the VLP-32C's 4 mm distance step) and angles are checked against the
calibration's own numbers, not against the decoder's output."""

from __future__ import annotations

import math

import numpy as np
import pytest

from drivers.lidar.frame import LidarInputError, LidarModelMismatchError
from drivers.lidar.velodyne import VelodyneDecoder
from drivers.pointcloud import RETURN_STRONGEST, SENSOR_POINT_DTYPE

from .builders import build_packet

velodyne_decoder = pytest.importorskip("velodyne_decoder",
                                       reason="the 'velodyne' extra (velodyne-decoder) is not installed")
yaml = pytest.importorskip("yaml")

VLP32C_PACKET_US = 12 * 55.296


def _vlp32c_packets(count: int, step: int = 20, start: int = 0, channel: int | None = 5):
    packets = []
    for p in range(count):
        azimuths = (start + (p * 12 + np.arange(12)) * step) % 36000
        distances = np.zeros((12, 32), np.uint16)
        if channel is None:
            distances[:] = 5000
        else:
            distances[:, channel] = 5000  # 5000 × 4 mm = 20 m
        packets.append((int(1e9 + p * VLP32C_PACKET_US * 1000),
                        build_packet(azimuths, distances, np.full((12, 32), 40), timestamp_us=int(p * VLP32C_PACKET_US),
                                     product_id=0x28)))
    return packets


def test_vlp32c_identified_from_its_product_id_and_decoded():
    decoder = VelodyneDecoder(source="test")
    frames = decoder.decode_payloads(_vlp32c_packets(20))
    frame = decoder.flush()
    assert frames == [] and frame.model == "VLP-32C"
    assert decoder.evidence.decided_by == "packets: product_id"
    points = frame.points
    assert points.dtype == SENSOR_POINT_DTYPE and points.shape[0] == 20 * 12
    assert set(points["laser"].tolist()) == {5}
    assert set(points["return_type"].tolist()) == {RETURN_STRONGEST}
    lasers = yaml.safe_load(velodyne_decoder.Calibration.default_calibs[velodyne_decoder.Model.VLP32C]
                            .to_string())["lasers"]
    vertical = sorted((laser["vert_correction"], laser["laser_id"]) for laser in lasers)
    assert points["ring"][0] == [laser for _, laser in vertical].index(5)  # rank by elevation
    laser5 = next(laser for laser in lasers if laser["laser_id"] == 5)
    assert np.allclose(np.hypot(np.hypot(points["x"], points["y"]), points["z"]), 20.0, atol=0.01)
    assert np.allclose(points["z"], 20.0 * math.sin(laser5["vert_correction"]), atol=0.01)
    # near azimuth 0 (forward) the points lie ahead: +x, a little to the side by the laser's azimuth offset
    first = points[0]
    assert first["x"] > 19.9 and abs(first["y"]) < 20.0 * math.sin(abs(laser5["rot_correction"]) + 0.01)
    assert points["time"][0] == 0 and np.all(np.diff(points["time"]) >= 0)


def test_vlp32c_frames_split_per_rotation():
    decoder = VelodyneDecoder(source="test")
    step = 40  # 0.4° a block: 75 packets a turn
    frames = decoder.decode_payloads(_vlp32c_packets(60, step=step, start=34000))  # 340° + 288°
    assert len(frames) == 1  # the packet whose first azimuth wraps starts a new rotation
    first_packets = -(-(36000 - 34000) // (12 * step))
    assert frames[0].points.shape[0] == first_packets * 12
    assert decoder.flush().points.shape[0] == (60 - first_packets) * 12


def test_hdl64e_needs_its_calibration_file():
    decoder = VelodyneDecoder(model="HDL-64E S3", source="test")
    with pytest.raises(LidarInputError, match="needs its unit's calibration file"):
        decoder.decode_payloads(_vlp32c_packets(2))


def test_calibration_for_another_model_is_refused_for_external_models(shared_data):
    decoder = VelodyneDecoder(shared_data / "VLP-16.xml", source="test")
    with pytest.raises(LidarModelMismatchError, match="has 16 lasers but the packets are from a VLP-32C"):
        decoder.decode_payloads(_vlp32c_packets(2))


def test_hdl64e_with_its_calibration_decodes_whatever_its_status_bytes_say(tmp_path):
    from velodyne_decoder.calibrations import get_bundled_calibration

    calibration = tmp_path / "hdl64e_s3.yaml"
    get_bundled_calibration("HDL-64E_S3-VeloView.yml").write(str(calibration))
    packets = []
    for p in range(10):
        azimuths = np.repeat((p * 6 + np.arange(6)) * 18, 2)  # upper and lower block at each azimuth
        distances = np.full((12, 32), 2500)
        packet = bytearray(build_packet(azimuths, distances, timestamp_us=p * 288, product_id=p * 37 % 256))
        for block in range(1, 12, 2):
            packet[block * 100:block * 100 + 2] = b"\xff\xdd"  # the lower block of 32 lasers
        packet[1204] = (p * 11) % 256  # status type / value bytes, not a return mode
        packets.append((p * 288_000, bytes(packet)))
    decoder = VelodyneDecoder(calibration, model="HDL-64E S3", source="test")
    decoder.decode_payloads(packets)
    frame = decoder.flush()
    assert decoder.stats.skipped == {} and frame.model == "HDL-64E S3"
    assert frame.points.shape[0] == 10 * 12 * 32
    assert set(frame.points["laser"].tolist()) == set(range(64))  # upper lasers 0-31, lower 32-63


def test_packets_the_reference_refuses_are_counted_not_fatal():
    # configured as a VLS-128, the packets say VLP-32C (0x28): the reference decoder refuses them
    decoder = VelodyneDecoder(model="VLS-128", source="test")
    frames = decoder.decode_payloads(_vlp32c_packets(100, step=40, start=34000))
    assert frames == [] and decoder.flush() is None
    assert decoder.stats.skipped["reference_refused"] == 100


@pytest.mark.parametrize("product_id", [0x28, 0xA1], ids=["VLP-32C", "VLS-128"])
def test_random_packets_of_external_models_decode_or_are_dropped(product_id):
    rng = np.random.default_rng(product_id)
    for _ in range(10):
        n = int(rng.integers(1, 60))
        packets = rng.integers(0, 256, (n, 1206), dtype=np.uint8)
        for block in range(12):  # valid bank flags and azimuths, everything else random
            packets[:, block * 100] = 0xFF
            packets[:, block * 100 + 1] = rng.choice([0xEE, 0xDD, 0xCC, 0xBB], n)
            azimuth = rng.integers(0, 36001, n)
            packets[:, block * 100 + 2], packets[:, block * 100 + 3] = azimuth & 0xFF, azimuth >> 8
        packets[:, 1205] = product_id
        decoder = VelodyneDecoder(source="test")
        frames = decoder.decode(packets, np.arange(n, dtype=np.int64) * 600_000)
        tail = decoder.flush()
        for frame in [*frames, *([tail] if tail is not None else [])]:
            assert np.isfinite(frame.points["x"]).all() and np.isfinite(frame.points["z"]).all()


def test_a_calibration_cannot_change_the_distance_unit_of_the_packet_format(tmp_path, caplog):
    # nebula's (Autoware's) VLS128.yaml says distance_resolution 0.007, and tables may omit
    # num_lasers: the VLP-32C / VLS-128 unit is 4 mm whatever the table says (warned about)
    table = yaml.safe_load(velodyne_decoder.Calibration.default_calibs[velodyne_decoder.Model.VLP32C].to_string())
    table["distance_resolution"] = 0.007
    del table["num_lasers"]
    path = tmp_path / "vlp32c.yaml"
    path.write_text(yaml.safe_dump(table))
    decoder = VelodyneDecoder(path, source="test")
    decoder.decode_payloads(_vlp32c_packets(20))
    points = decoder.flush().points
    assert np.allclose(np.hypot(np.hypot(points["x"], points["y"]), points["z"]), 20.0, atol=0.01)  # 5000 × 4 mm
    assert "lidar_calibration_overridden" in caplog.text and "stated=0.007" in caplog.text
