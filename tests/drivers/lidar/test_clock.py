"""Packet time stamps: absolute sensor time, host time, and the sensor clock anchored to
the host clock when the two disagree."""

from __future__ import annotations

import numpy as np
import pytest

from drivers.lidar.clock import HOUR_NS, PacketClock

SPACING_NS = 1_327_104  # a VLP-16 packet


def _stream(n: int, start_toh_us: int, host_start_ns: int, jitter_ns: np.ndarray):
    toh_us = (start_toh_us + np.round(np.arange(n) * SPACING_NS / 1000).astype(np.int64)) % 3_600_000_000
    host = host_start_ns + np.arange(n) * SPACING_NS + jitter_ns
    return toh_us, host


def test_anchored_clock_is_smooth_monotonic_and_tracks_the_fastest_packet():
    rng = np.random.default_rng(1)
    jitter = rng.integers(50_000, 900_000, 3000)  # 50..900 µs of network / scheduling delay
    toh_us, host = _stream(3000, 1_000_000_000, 1_700_000_123_000_000_000, jitter)
    clock = PacketClock("auto")
    times = np.concatenate([clock.times_ns(toh_us[i:i + 100], host[i:i + 100]) for i in range(0, 3000, 100)])
    assert np.all(np.diff(times) >= 0.99 * SPACING_NS - 2000)
    ideal = host - jitter  # the true first-firing times
    late = times - ideal
    assert late[-1000:].max() < 150_000  # near the fastest packet's delay (50 µs), not the mean (475 µs)
    assert late.min() >= -1000


def test_synchronised_sensor_uses_its_absolute_time():
    base = 1_700_000_000 * 1_000_000_000 // HOUR_NS * HOUR_NS
    toh_us, host = _stream(10, 100_000_000, base + 100_000_000_000 + 200_000, np.zeros(10, np.int64))
    times = PacketClock("auto").times_ns(toh_us, host)
    assert times[0] == base + 100_000_000_000


def test_sensor_hour_rollover_is_unwrapped():
    toh_us, host = _stream(20, 3_600_000_000 - 10_000, 1_700_000_000_500_000_000, np.zeros(20, np.int64))
    assert toh_us[0] > toh_us[-1]  # wrapped inside the stream
    times = PacketClock("auto").times_ns(toh_us, host)
    assert np.all(np.diff(times) > 0) and (times[-1] - times[0]) == pytest.approx(19 * SPACING_NS, abs=20_000)


def test_clock_jump_reanchors():
    toh_us, host = _stream(20, 10_000_000, 1_700_000_000_000_000_000, np.zeros(20, np.int64))
    host[10:] += 30_000_000_000  # the host clock stepped 30 s forward
    times = PacketClock("auto").times_ns(toh_us, host)
    assert times[9] == host[9] and times[10] == host[10]


def test_host_and_bad_source():
    host = np.array([5, 3, 9], np.int64)
    assert PacketClock("host").times_ns(np.zeros(3, np.uint32), host).tolist() == [5, 3, 9]
    with pytest.raises(ValueError, match="time_source"):
        PacketClock("gps")  # type: ignore[arg-type]


def test_the_host_minus_sensor_offset_of_the_last_packet_is_kept_for_health():
    base = 1_700_000_000 * 1_000_000_000 // HOUR_NS * HOUR_NS
    toh_us, host = _stream(10, 100_000_000, base + 100_000_000_000 + 200_000, np.zeros(10, np.int64))
    clock = PacketClock("auto")
    assert clock.last_offset_ns is None
    clock.times_ns(toh_us, host)
    assert clock.last_offset_ns == int(host[-1] - (base + toh_us[-1] * 1000))
    assert abs(clock.last_offset_ns - 200_000) < 1000
    host_only = PacketClock("host")
    host_only.times_ns(toh_us, host)
    assert host_only.last_offset_ns is None  # no sensor clock read: nothing to compare
