"""Model from the data: a real HDL-32E capture (VeloView's Monterey sample, cut to frames
7..10, see captures.py) and the real VLP-16 capture decode as what they are, whatever
is (not) configured; positions are checked against VeloView's published values, since
point counts alone do not tell a wrong model from a right one; a calibration that does
not fit the packets is a typed error."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from drivers.lidar.calibration import CalibrationError, load_veloview_xml
from drivers.lidar.frame import LidarModelMismatchError
from drivers.lidar.pcap import read_udp_payloads
from drivers.lidar.sources import PcapSource
from drivers.lidar.velodyne import VelodyneDecoder, decode_pcap

from .builders import CALIBRATION, CAPTURE, build_packet, veloview_xyz
from .captures import HDL32E, HDL32E_CALIBRATION, HDL32E_CAPTURE

# VeloView's Testing/monterey.test, frame 8 of the full capture = frame 1 of the cut:
# "index x y z intensity" (its own coordinate convention), compared within 1e-4
VELOVIEW_MONTEREY_FRAME8 = {
    1: ((0.0218793, 7.83493, -1.28724), 1),
    4000: ((4.3613, 8.19206, -1.97267), 28),
    16000: ((77.564000, -26.85900, 3.82785), 63),
    49733: ((0.00501329, 5.74481, -1.79261), 1),
}
VELOVIEW_MONTEREY_FRAME8_POINTS = 49737


def _assert_monterey_frame8(frames):
    frame = frames[1]
    assert frame.model == "HDL-32E"
    assert frame.points.shape[0] == VELOVIEW_MONTEREY_FRAME8_POINTS
    for index, (xyz, intensity) in VELOVIEW_MONTEREY_FRAME8.items():
        point = frame.points[index]
        assert veloview_xyz(point) == pytest.approx(xyz, abs=1e-4), index
        assert point["intensity"] == intensity


@HDL32E
@pytest.mark.parametrize("calibration", [None, HDL32E_CALIBRATION], ids=["nothing", "calibration-only"])
def test_hdl32e_capture_decodes_as_hdl32e_from_its_packets(calibration, caplog):
    with caplog.at_level(logging.INFO, logger="drivers.lidar.velodyne"):
        frames, stats = decode_pcap(HDL32E_CAPTURE, calibration)
    assert stats.skipped == {}
    assert [f.points.shape[0] for f in frames] == [105, 49737, 49758, 51]
    _assert_monterey_frame8(frames)
    detected = [r.getMessage() for r in caplog.records if "lidar_model_detected" in r.getMessage()]
    assert len(detected) == 1 and "model=HDL-32E" in detected[0]
    assert "firing_pattern+packet_interval+product_id" in detected[0]


@HDL32E
def test_the_same_packets_as_a_vlp16_put_points_elsewhere():
    # the old default: counts agree, positions do not, which is why positions are tested
    forced, _ = decode_pcap(HDL32E_CAPTURE, model="VLP-16")
    assert forced[1].points.shape[0] == VELOVIEW_MONTEREY_FRAME8_POINTS
    with pytest.raises(AssertionError):
        _assert_monterey_frame8(forced)


@HDL32E
def test_evidence_is_recorded_with_what_won():
    decoder = VelodyneDecoder(source="test")

    batch = read_udp_payloads(HDL32E_CAPTURE)
    decoder.decode(batch.payloads[:64], batch.timestamps_ns[:64])
    evidence = decoder.evidence.as_dict()
    assert evidence["model"] == "HDL-32E"
    assert evidence["decided_by"] == "packets: firing_pattern+packet_interval+product_id"
    assert evidence["product_id"] == "0x21 (HDL-32E)"
    assert evidence["packet_interval_us"] == pytest.approx(553, abs=2)
    assert evidence["same_laser_pairs"] < 0.2
    assert evidence["calibration_lasers"] is None


def test_vlp16_reporting_the_hdl32e_product_id_is_overruled_by_its_packets(shared_data):
    # this VLP-16's firmware reports 0x21 (HDL-32E); interval and firing pattern say VLP-16
    decoder = VelodyneDecoder(shared_data / CALIBRATION, source="test")

    batch = read_udp_payloads(shared_data / CAPTURE)
    decoder.decode(batch.payloads[:64], batch.timestamps_ns[:64])
    evidence = decoder.evidence
    assert (evidence.model, evidence.decided_by) == ("VLP-16", "packets: firing_pattern+packet_interval")
    assert evidence.product_id_says == "HDL-32E"
    assert evidence.packet_interval_us == pytest.approx(1327, abs=2)
    assert evidence.same_laser_pairs > 0.9
    assert evidence.calibration_lasers == 16


@HDL32E
@pytest.mark.parametrize("capture, calibration, packets_say", [
    ("hdl32e", "vlp16", "HDL-32E"), ("vlp16", "hdl32e", "VLP-16")])
def test_a_calibration_for_another_model_is_a_typed_error(shared_data, capture, calibration, packets_say):
    paths = {"hdl32e": (HDL32E_CAPTURE, HDL32E_CALIBRATION),
             "vlp16": (shared_data / CAPTURE, shared_data / CALIBRATION)}
    with pytest.raises(LidarModelMismatchError) as caught:
        decode_pcap(paths[capture][0], paths[calibration][1])
    message = str(caught.value)
    assert "\n" not in message
    assert f"packets are from a {packets_say}" in message and paths[calibration][1].name in message


@HDL32E
def test_pcap_source_stops_with_the_mismatch_instead_of_a_wrong_cloud(shared_data):
    source = PcapSource(HDL32E_CAPTURE, shared_data / CALIBRATION, rate="max")
    with pytest.raises(LidarModelMismatchError):
        next(iter(source))


@HDL32E
def test_configured_model_overrides_the_packets(caplog):
    with caplog.at_level(logging.WARNING, logger="drivers.lidar.velodyne"):
        frames, _ = decode_pcap(HDL32E_CAPTURE, model="VLP-16")
    assert frames[0].model == "VLP-16"
    assert any("decided_by=configured" in r.getMessage() and "overruled=" in r.getMessage() for r in caplog.records)


@HDL32E
def test_configured_model_and_calibration_of_different_laser_counts_is_an_error():
    with pytest.raises(CalibrationError, match="32 enabled lasers, but a VLP-16 has 16"):
        load_veloview_xml(HDL32E_CALIBRATION, "VLP-16")


def test_puck_hi_res_product_id_picks_its_elevation_table():
    azimuths = [(b * 40) % 36000 for b in range(12)]
    distances = np.full((12, 32), 5000)
    packets = [(i * 1_327_000, build_packet(azimuths, distances, timestamp_us=i * 1327, product_id=0x24))
               for i in range(2)]
    decoder = VelodyneDecoder(source="test")
    decoder.decode_payloads(packets)
    frame = decoder.flush()
    assert frame.model == "Puck Hi-Res"
    # laser 0 of a Hi-Res points 10° down (a VLP-16's 15°): z = 10 m · sin(-10°)
    assert frame.points["z"][0] == pytest.approx(10 * np.sin(np.deg2rad(-10.0)), abs=1e-4)
