"""Ouster: real captures from ouster-sdk's repository (OS-2-32 on the LEGACY profile, OS-0-32
on RNG19_RFL8_SIG16_NIR16_DUAL, with their metadata JSON; see captures.py) decoded from
pcap and from live UDP, checked against Ouster's own decoder: point counts and positions
equal to ouster-sdk 1.0.1's (``XYZLut(info, use_extrinsics=False)``) — directly when
ouster-sdk is installed, else against the values it gave, recorded below."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

from drivers.lidar.calibration import CalibrationError
from drivers.lidar.frame import LidarInputError, LidarTimeoutError
from drivers.lidar.ouster import OusterDecoder, load_ouster_metadata
from drivers.lidar.pcap import iter_udp_packets
from drivers.lidar.sources import PcapSource, UdpSource
from drivers.pointcloud import RETURN_SECOND, RETURN_STRONGEST, SENSOR_POINT_DTYPE

from .builders import send_when_bound
from .captures import OUSTER_BOTH
from .captures import OUSTER_DUAL as DUAL
from .captures import OUSTER_LEGACY as LEGACY

pytestmark = OUSTER_BOTH

# ouster-sdk 1.0.1 on these files: pixels with a return (RANGE > 0, RANGE2 > 0) and, for a
# few (row, column) pixels, RANGE (mm), the XYZ it computes (sensor frame, metres), REFLECTIVITY
REFERENCE = {
    LEGACY: {"returns": 28541, "second": 0, "pixels": [
        (5, 100, 12795, (-10.627905, 6.925204, 1.747006), 135),
        (31, 1000, 11191, (-10.819043, -2.012003, -1.958757), 235)]},
    DUAL: {"returns": 21631, "second": 172, "pixels": [
        (0, 0, 5979, (-4.311854, -0.217027, 4.161346), 18), (5, 100, 5671, (-4.179582, 2.662806, 2.785893), 30),
        (16, 512, 20643, (20.604515, 1.009976, -0.715646), 20)]},
}


def _file(base: Path, suffix: str) -> Path:
    return base.parent / (base.name + suffix)


def _decode(base: Path):
    source = PcapSource(_file(base, ".pcap"), _file(base, ".json"), rate="max", keep_timestamps=True)
    return list(source), source


@pytest.mark.parametrize("base", [LEGACY, DUAL], ids=["legacy", "dual"])
def test_ouster_pcap_matches_ouster_sdk(base):
    frames, source = _decode(base)
    assert len(frames) == 1 and source.stats.skipped == {}
    points = frames[0].points
    assert points.dtype == SENSOR_POINT_DTYPE and frames[0].axes == "REP-103"
    reference = REFERENCE[base]
    assert np.count_nonzero(points["return_type"] == RETURN_STRONGEST) == reference["returns"]
    assert np.count_nonzero(points["return_type"] == RETURN_SECOND) == reference["second"]
    strongest = points[points["return_type"] == RETURN_STRONGEST]
    for row, _column, _range_mm, xyz, reflectivity in reference["pixels"]:
        beam = strongest[strongest["laser"] == row]
        distance = np.sqrt((beam["x"] - xyz[0]) ** 2 + (beam["y"] - xyz[1]) ** 2 + (beam["z"] - xyz[2]) ** 2)
        nearest = int(np.argmin(distance))
        assert distance[nearest] < 1e-4, (row, _column)  # neighbouring columns are centimetres apart
        assert beam["intensity"][nearest] == reflectivity
    assert frames[0].model == load_ouster_metadata(_file(base, ".json")).prod_line


def test_ouster_ring_is_the_beam_by_altitude_and_time_follows_the_columns():
    frames, _ = _decode(LEGACY)
    points = frames[0].points
    altitude = load_ouster_metadata(_file(LEGACY, ".json")).altitude_deg  # row 0 is the highest beam
    assert points["ring"][points["laser"] == 0][0] == 31 and points["ring"][points["laser"] == 31][0] == 0
    assert np.all(np.argsort(altitude)[points["ring"]] == points["laser"])
    assert points["time"].min() == 0 and 0.045 < points["time"].max() < 0.05  # one rotation at 20 Hz (1024x20)


def test_ouster_sdk_agrees_on_every_point():
    sdk = pytest.importorskip("ouster.sdk", reason="ouster-sdk (Ouster's decoder) is not installed")
    from ouster.sdk import core

    for base in (LEGACY, DUAL):
        frames, _ = _decode(base)
        source = sdk.open_source(str(_file(base, ".pcap")), meta=[str(_file(base, ".json"))])
        scan = next(iter(source))[0]
        xyz = core.XYZLut(source.sensor_info[0], use_extrinsics=False)(scan)
        has_return = scan.field("RANGE") > 0
        rows, columns = np.nonzero(has_return)
        order = np.lexsort((rows, columns))  # ours: column by column, beams in order
        ours = frames[0].points[frames[0].points["return_type"] == RETURN_STRONGEST]
        np.testing.assert_allclose(np.stack([ours["x"], ours["y"], ours["z"]], axis=1),
                                   xyz[has_return][order], atol=5e-5)


def test_ouster_live_udp():
    metadata = _file(DUAL, ".json")
    payloads = [bytes(p.payload) for p in iter_udp_packets(_file(DUAL, ".pcap"), ports=[7502])]
    next_rotation = bytearray(payloads[0])
    next_rotation[2:4] = ((int.from_bytes(payloads[0][2:4], "little") + 1) & 0xFFFF).to_bytes(2, "little")  # frame_id
    source = UdpSource("127.0.0.1", 0, metadata, timeout_s=0.5)
    frames: list = []

    sender = threading.Thread(target=send_when_bound, args=(source, [*payloads, bytes(next_rotation)], 0.0005))
    sender.start()
    with pytest.raises(LidarTimeoutError):
        for frame in source:
            frames.append(frame)
    sender.join()
    assert len(frames) == 1  # the next frame id closes the capture's rotation
    points = frames[0].points
    assert np.count_nonzero(points["return_type"] == RETURN_STRONGEST) == REFERENCE[DUAL]["returns"]
    assert np.count_nonzero(points["return_type"] == RETURN_SECOND) == REFERENCE[DUAL]["second"]
    assert source.model_evidence.decided_by == "metadata" and source.model_evidence.model == "OS-0-32-U1"


def test_bad_ouster_metadata_is_a_clear_error(tmp_path):
    broken = tmp_path / "meta.json"
    broken.write_text('{"beam_altitude_angles": [1, 2]}')
    with pytest.raises(CalibrationError, match=r"meta.json: not a usable Ouster sensor metadata JSON"):
        OusterDecoder(broken)
    with pytest.raises(LidarInputError, match=r"meta.json"):
        PcapSource(_file(LEGACY, ".pcap"), broken)
    with pytest.raises(LidarInputError, match="Ouster metadata: the model comes from it"):
        PcapSource(_file(LEGACY, ".pcap"), _file(LEGACY, ".json"), model="VLP-16")


def test_damaged_and_random_ouster_packets_decode_or_are_dropped():
    decoder = OusterDecoder(_file(DUAL, ".json"))
    payloads = [bytes(p.payload) for p in iter_udp_packets(_file(DUAL, ".pcap"), ports=[7502])]
    rng = np.random.default_rng(22)
    damaged = np.frombuffer(b"".join(payloads), np.uint8).reshape(len(payloads), -1).copy()
    damaged[rng.integers(0, damaged.shape[0], 200), rng.integers(0, damaged.shape[1], 200)] = rng.integers(0, 256, 200)
    random = rng.integers(0, 256, damaged.shape, dtype=np.uint8)
    for packets in (damaged, random):
        frames = decoder.decode(packets, np.arange(packets.shape[0], dtype=np.int64))
        tail = decoder.flush()
        for frame in [*frames, *([tail] if tail is not None else [])]:
            assert np.isfinite(frame.points["x"]).all() and np.isfinite(frame.points["z"]).all()
