"""Frame sources: pcap playback, live UDP, PCD/PLY directories, the simulator, and their
errors on bad input."""

from __future__ import annotations

import logging
import threading
import time

import numpy as np
import pytest

from drivers.lidar.frame import LidarInputError, LidarTimeoutError
from drivers.lidar.pcap import iter_udp_packets
from drivers.lidar.sim import SENSOR_HEIGHT_M
from drivers.lidar.sources import PcapSource, PcdDirSource, SimSource, UdpSource, open_lidar_source, parse_rate
from drivers.lidar.velodyne import decode_pcap
from drivers.pointcloud import POINT_DTYPE, SENSOR_POINT_DTYPE
from drivers.runtime import SensorError

from .builders import CALIBRATION, CAPTURE, copy_records, ethernet_udp_frame, send_when_bound, write_pcap

# -- pcap --------------------------------------------------------------------------------

def test_pcap_source_as_fast_as_possible(shared_data):
    stamps = iter(range(1000, 10**6, 1000))
    source = PcapSource(shared_data / CAPTURE, shared_data / CALIBRATION, rate="max", clock_ns=lambda: next(stamps))
    frames = list(source)
    assert len(frames) == 52 and [f.seq for f in frames] == list(range(52))
    assert [f.capture_ns for f in frames[:3]] == [1000, 2000, 3000]  # host clock at emission
    assert frames[16].points.shape[0] == 13860 and frames[16].points.dtype == SENSOR_POINT_DTYPE
    assert source.stats.frames == 52


def test_pcap_source_keeps_recorded_timestamps_and_loops(shared_data):
    reference, _ = decode_pcap(shared_data / CAPTURE, model="VLP-16")
    source = PcapSource(shared_data / CAPTURE, model="VLP-16", rate="max", loop=True, keep_timestamps=True)
    frames = []
    for frame in source:
        frames.append(frame)
        if len(frames) == 60:
            break
    assert [f.capture_ns for f in frames[:52]] == [f.capture_ns for f in reference]
    assert [f.seq for f in frames] == list(range(60))
    captures = np.array([f.capture_ns for f in frames])
    assert np.all(np.diff(captures) > 0)  # the second pass is shifted past the first
    assert frames[52].points.shape[0] == reference[0].points.shape[0]


def test_pcap_source_recorded_pace(shared_data, tmp_path):
    short = copy_records(shared_data / CAPTURE, tmp_path / "short.pcap", 400)  # ~0.4 s of capture
    frames, started = [], time.monotonic()
    for frame in PcapSource(short, model="VLP-16", rate="recorded", keep_timestamps=True):
        frames.append((time.monotonic() - started, frame.capture_ns))
    elapsed = frames[-1][0] - frames[0][0]
    recorded = (frames[-1][1] - frames[0][1]) / 1e9
    assert len(frames) >= 6
    assert recorded - 0.01 <= elapsed < recorded + 0.2  # never ahead of the recording; late only if starved


def test_pcap_source_fixed_rate_and_stop(shared_data):
    stop = threading.Event()
    source = PcapSource(shared_data / CAPTURE, model="VLP-16", rate=50.0, stop=stop)
    started = time.monotonic()
    seen = 0
    for _ in source:
        seen += 1
        if seen == 6:
            stop.set()
    assert seen == 6
    assert 0.08 <= time.monotonic() - started < 0.5  # 5 periods of 20 ms


def test_pcap_source_truncated_file_plays_what_is_readable(shared_data, tmp_path, caplog):
    data = (shared_data / CAPTURE).read_bytes()
    cut = tmp_path / "cut.pcap"
    cut.write_bytes(data[: len(data) // 2 + 333])
    with caplog.at_level(logging.WARNING, logger="drivers.lidar"):
        frames = list(PcapSource(cut, model="VLP-16", rate="max"))
    assert 20 < len(frames) < 30
    assert any("pcap_damaged" in r.getMessage() and str(cut) in r.getMessage() for r in caplog.records)


def test_pcap_source_bad_input(tmp_path, shared_data):
    with pytest.raises(LidarInputError, match=r"missing.pcap: file not found"):
        PcapSource(tmp_path / "missing.pcap")
    not_pcap = tmp_path / "notes.pcap"
    not_pcap.write_text("these are not packets, just some text long enough")
    with pytest.raises(LidarInputError, match=r"notes.pcap.*not a pcap file"):
        PcapSource(not_pcap)
    with pytest.raises(LidarInputError, match=r"calibration file .*nope.xml not found"):
        PcapSource(shared_data / CAPTURE, tmp_path / "nope.xml")
    with pytest.raises(LidarInputError, match="rate"):
        PcapSource(shared_data / CAPTURE, rate="fast")
    positions_only = write_pcap(tmp_path / "gps.pcap", [(1000, ethernet_udp_frame(b"\x00" * 512, dst_port=8308))])
    with pytest.raises(LidarInputError, match=r"gps.pcap: no Velodyne data packets"):
        list(PcapSource(positions_only, model="VLP-16", rate="max"))
    assert issubclass(LidarInputError, SensorError)


# -- UDP ---------------------------------------------------------------------------------

def test_udp_source_assembles_rotations_from_packets(shared_data):
    payloads = [bytes(p.payload) for p in iter_udp_packets(shared_data / CAPTURE, ports=[2368])]
    source = UdpSource("127.0.0.1", 0, shared_data / CALIBRATION, timeout_s=0.5)
    frames: list = []

    sender = threading.Thread(target=send_when_bound, args=(source, [*payloads, b"\x00" * 100], 0.001, 20))
    sender.start()
    with pytest.raises(LidarTimeoutError, match=r"udp://127\.0\.0\.1:\d+: no packets for"):
        for frame in source:
            frames.append(frame)
    sender.join()
    assert len(frames) >= 45  # 50 complete rotations sent; a burst may overflow a small buffer
    assert [f.seq for f in frames] == list(range(len(frames)))
    counts = {f.points.shape[0] for f in frames}
    assert 13860 in counts and 13898 in counts
    assert source.stats.skipped["wrong_size"] == 1


def test_udp_source_times_out_without_packets():
    source = UdpSource("127.0.0.1", 0, model="VLP-16", timeout_s=0.3)
    started = time.monotonic()
    with pytest.raises(LidarTimeoutError, match=r"no packets for 0.[3-9] s"):
        next(iter(source))
    assert time.monotonic() - started < 2
    assert issubclass(LidarTimeoutError, SensorError)


def test_udp_source_cannot_bind():
    with pytest.raises(LidarInputError, match=r"udp://203\.0\.113\.7:2368: cannot listen"):
        next(iter(UdpSource("203.0.113.7", 2368, model="VLP-16")))


# -- PCD / PLY directories ---------------------------------------------------------------

@pytest.fixture(scope="module")
def open3d():
    try:
        import open3d
    except ImportError as exc:  # pragma: no cover - open3d is part of the pointcloud extra
        pytest.skip(f"open3d cannot be imported: {exc}")
    return open3d


def _write_cloud(open3d, path, n: int, intensity: float | None = None) -> None:
    cloud = open3d.t.geometry.PointCloud()
    cloud.point.positions = open3d.core.Tensor(np.random.default_rng(n).random((n, 3)).astype(np.float32))
    if intensity is not None:
        cloud.point.intensity = open3d.core.Tensor(np.full((n, 1), intensity, np.float32))
    assert open3d.t.io.write_point_cloud(str(path), cloud)


def test_pcd_dir_source_reads_files_in_name_order(open3d, tmp_path, caplog):
    _write_cloud(open3d, tmp_path / "b-002.pcd", 120, intensity=9.0)
    _write_cloud(open3d, tmp_path / "a-001.pcd", 100, intensity=7.0)
    _write_cloud(open3d, tmp_path / "c-003.ply", 80)
    (tmp_path / "b-002b.pcd").write_text("not a point cloud")
    (tmp_path / "readme.txt").write_text("ignored")
    stamps = iter(range(10, 1000, 10))
    source = PcdDirSource(tmp_path, rate="max", clock_ns=lambda: next(stamps))
    with caplog.at_level(logging.WARNING, logger="drivers.lidar"):
        frames = list(source)
    assert [f.points.shape[0] for f in frames] == [100, 120, 80]
    assert [f.seq for f in frames] == [0, 1, 2] and [f.capture_ns for f in frames] == [10, 20, 30]
    assert frames[0].points["intensity"].tolist() == [7.0] * 100
    assert frames[2].points["intensity"].tolist() == [0.0] * 80
    assert frames[0].points.dtype == POINT_DTYPE and frames[0].model == "pcd"
    assert list(source.skipped) == [str(tmp_path / "b-002b.pcd")]
    assert any("b-002b.pcd" in r.getMessage() for r in caplog.records)


def test_pcd_dir_source_loops_at_a_fixed_rate(open3d, tmp_path):
    _write_cloud(open3d, tmp_path / "only.pcd", 10)
    frames, started = [], time.monotonic()
    for frame in PcdDirSource(tmp_path, rate=40.0, loop=True):
        frames.append(frame)
        if len(frames) == 5:
            break
    assert [f.seq for f in frames] == [0, 1, 2, 3, 4]
    assert 0.08 <= time.monotonic() - started < 0.6


def test_pcd_dir_source_bad_input(open3d, tmp_path):
    with pytest.raises(LidarInputError, match="missing: directory not found"):
        PcdDirSource(tmp_path / "missing")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(LidarInputError, match=r"empty: no .pcd or .ply files"):
        PcdDirSource(empty)
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "x.pcd").write_text("garbage")
    with pytest.raises(LidarInputError, match=r"none of the 1 .pcd/.ply files could be read"):
        list(PcdDirSource(broken, rate="max"))


# -- simulator ---------------------------------------------------------------------------

def test_sim_source_vlp16_rotation():
    frames = list(SimSource("VLP-16", 10, realtime=False, frames=3))
    assert [f.seq for f in frames] == [0, 1, 2] and all(f.model == "VLP-16" for f in frames)
    for frame in frames:
        points = frame.points
        assert 27_500 <= points.shape[0] <= 28_928  # 1,808 firings × 16 lasers, minus misses
        assert set(np.unique(points["ring"]).tolist()) == set(range(16))
        assert points["time"].min() >= 0 and points["time"].max() < 0.1
        assert np.all(np.diff(points["time"]) >= 0)
    z = frames[0].points["z"]
    assert z.min() > -SENSOR_HEIGHT_M - 0.05  # nothing below the ground plane (1 cm range noise)
    on_ground = np.abs(z + SENSOR_HEIGHT_M) < 0.03
    assert 0.3 < on_ground.mean() < 0.5  # the 8 downward lasers, where no box is in the way
    assert np.median(z[z < -1.5]) == pytest.approx(-SENSOR_HEIGHT_M, abs=0.01)


def test_sim_source_is_deterministic_per_seed():
    first = [f.points for f in SimSource(seed=3, realtime=False, frames=2)]
    again = [f.points for f in SimSource(seed=3, realtime=False, frames=2)]
    other = [f.points for f in SimSource(seed=4, realtime=False, frames=2)]
    np.testing.assert_array_equal(first[0], again[0])
    np.testing.assert_array_equal(first[1], again[1])
    assert not np.array_equal(first[0], first[1])  # the moving car and the noise change
    assert first[0].shape != other[0].shape or not np.array_equal(first[0], other[0])


def test_sim_source_hdl32e_and_pacing():
    frames, started = [], time.monotonic()
    for frame in SimSource("HDL-32E", 20, frames=3):
        frames.append(frame)
    assert 0.09 <= time.monotonic() - started < 0.6  # 3 frames at 20 Hz
    assert all(f.model == "HDL-32E" and 30_000 < f.points.shape[0] <= 34_720 for f in frames)
    with pytest.raises(LidarInputError, match="sim:HDL-64E"):
        SimSource("HDL-64E")


# -- specs -------------------------------------------------------------------------------

def test_open_lidar_source_specs(shared_data, tmp_path):
    assert isinstance(open_lidar_source("sim", rate="10"), SimSource)
    assert open_lidar_source("sim", model="HDL-32E", rate="max").realtime is False
    udp = open_lidar_source("udp://127.0.0.1:2399", model="VLP-16")
    assert isinstance(udp, UdpSource) and udp.port == 2399
    assert isinstance(open_lidar_source(f"pcap:{shared_data / CAPTURE}", model="VLP-16"), PcapSource)
    (tmp_path / "a.pcd").write_text("x")
    assert isinstance(open_lidar_source(f"pcd-dir:{tmp_path}", rate="recorded"), PcdDirSource)
    with pytest.raises(LidarInputError, match="expected udp://HOST:PORT"):
        open_lidar_source("udp://nowhere")
    with pytest.raises(LidarInputError, match="unknown lidar source 'ftp://x'"):
        open_lidar_source("ftp://x")
    assert parse_rate("12.5") == 12.5 and parse_rate("max") == "max"
    with pytest.raises(ValueError):
        parse_rate("0")


def test_pcap_source_reports_the_host_minus_sensor_clock_offset(shared_data):
    source = PcapSource(shared_data / CAPTURE, shared_data / CALIBRATION, rate="max")
    assert source.clock_offset_ns is None
    next(iter(source))
    # the capture's pcap (host) times against the VLP-16's top-of-hour clock: a real, finite offset
    assert source.clock_offset_ns is not None and abs(source.clock_offset_ns) < 3_600 * 10**9
