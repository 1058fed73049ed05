"""Property-based fuzzing (hypothesis) of the inputs a vehicle gets from outside: pcap
files (the real VLP-16 capture, damaged), Velodyne packets (real ones with flipped bytes,
and random ones) and config files. Each must either work or fail with the module's own
typed error naming what was wrong; never another exception, never a hang. The wire
protocol is fuzzed against a live broker in tests/integration/test_broker_fuzz.py, record
batches in tests/broker/test_records.py, the HTTP API in tests/api/test_openapi_fuzz.py.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from drivers.lidar.pcap import PcapError, PcapReader
from drivers.lidar.velodyne import VelodyneDecoder
from edge.config import ConfigError, load_config, parse_config

CAPTURE = "vlp16-90deg-50frames.pcap"
SIM = Path(__file__).resolve().parents[2] / "configs" / "sim.toml"
# scripts/faults raises the examples (EDGE_FUZZ_EXAMPLES) for the long runs
FUZZ = settings(max_examples=int(os.environ.get("EDGE_FUZZ_EXAMPLES", "120")), deadline=None,
                suppress_health_check=list(HealthCheck))


@pytest.fixture(scope="module")
def capture_head(shared_data) -> bytes:
    return (shared_data / CAPTURE).read_bytes()[:200_000]  # the global header and ~160 packets


@pytest.fixture(scope="module")
def real_packets(shared_data) -> np.ndarray:
    with PcapReader(shared_data / CAPTURE) as reader:
        payloads = [bytes(p.payload) for p, _ in zip(reader.udp_packets(), range(200), strict=False)]  # the first 200
    return np.frombuffer(b"".join(p for p in payloads if len(p) == 1206), np.uint8).reshape(-1, 1206)


@FUZZ
@given(data=st.data())
def test_damaged_pcap_reads_or_names_file_and_offset(capture_head, tmp_path_factory, data):
    damaged = bytearray(capture_head[:data.draw(st.integers(0, len(capture_head)), label="cut")])
    for _ in range(data.draw(st.integers(0, 8), label="flips")):
        if damaged:
            at = data.draw(st.integers(0, len(damaged) - 1))
            damaged[at] = data.draw(st.integers(0, 255))
    path = tmp_path_factory.mktemp("pcap") / "damaged.pcap"
    path.write_bytes(bytes(damaged))
    packets = 0
    try:
        with PcapReader(path) as reader:
            for packet in reader.udp_packets():
                assert 0 <= len(packet.payload) <= 65_535
                packets += 1
    except PcapError as exc:
        assert exc.path == str(path) and 0 <= exc.offset <= len(damaged), (exc, exc.offset)
        assert str(exc)
    assert packets <= len(damaged) // 42  # no packet out of nothing (42 = smallest Ethernet+IP+UDP)


@FUZZ
@given(data=st.data())
def test_velodyne_decoder_survives_damaged_and_random_packets(real_packets, data):
    n = data.draw(st.integers(1, 40), label="packets")
    start = data.draw(st.integers(0, len(real_packets) - n))
    packets = real_packets[start:start + n].copy()
    flat = packets.reshape(-1)
    for _ in range(data.draw(st.integers(0, 64), label="flips")):
        flat[data.draw(st.integers(0, flat.size - 1))] = data.draw(st.integers(0, 255))
    if data.draw(st.booleans(), label="random"):
        packets = np.frombuffer(data.draw(st.binary(min_size=1206 * n, max_size=1206 * n)), np.uint8).reshape(n, 1206)
    arrival = np.arange(n, dtype=np.int64) * 1_327_000 + 1_795_000_000_000_000_000
    decoder = VelodyneDecoder(model="VLP-16")
    try:
        frames = decoder.decode(packets, arrival)
    except ValueError as exc:  # the decoder's typed refusal, with a reason
        assert str(exc)
        return
    tail = decoder.flush()
    for frame in [*frames, *([tail] if tail is not None else [])]:
        points = frame.points
        assert len(points) <= n * 384  # 12 blocks x 32 returns per packet
        assert np.isfinite(points["x"]).all() and np.isfinite(points["z"]).all()


SETTINGS = st.sampled_from([
    ("broker", "data_dir"), ("broker", "endpoint"), ("broker", "auto_create_topics"), ("broker.defaults", "codec"),
    ("broker.defaults", "segment_bytes"), ("broker.defaults", "retention_age"), ("broker.defaults", "partitions"),
    ("broker.disk_guard", "min_free"), ("api", "port"), ("api", "host"), ("api", "token"), ("vehicle", "id"),
    ("broker", "nonsense"), ("topics.lidar_top", "codec"), ("broker.curve", "server_secret_key"),
])
VALUES = st.one_of(st.integers(-2**70, 2**70), st.floats(allow_nan=True), st.booleans(),
                   st.text(max_size=30), st.sampled_from(["256MiB", "-1h", "0", "zstd", "tcp://0.0.0.0:1", "ipc://"]),
                   st.lists(st.integers(), max_size=3))


def _set(data: dict, section: str, key: str, value) -> None:
    table = data
    for part in section.split("."):
        table = table.setdefault(part, {})
        if not isinstance(table, dict):
            return
    table[key] = value


@FUZZ
@given(changes=st.lists(st.tuples(SETTINGS, VALUES), min_size=1, max_size=4))
def test_mutated_configs_load_or_name_file_and_key(tmp_path_factory, changes):
    data = tomllib.loads(SIM.read_text())
    for (section, key), value in changes:
        _set(data, section, key, value)
    path = tmp_path_factory.mktemp("config") / "edge.toml"
    try:
        parse_config(data, path)
    except ConfigError as exc:
        assert str(path) in exc.message, exc.message
        # the key, or its table (a missing sibling, e.g. broker.curve.authorized_keys) is named
        assert any(key in exc.message or section.rsplit(".", 1)[-1] in exc.message
                   for (section, key), _v in changes), exc.message


@FUZZ
@given(cut=st.integers(0, 4000), garbage=st.binary(max_size=40))
def test_damaged_config_files_fail_with_the_file_named(tmp_path_factory, cut, garbage):
    text = SIM.read_bytes()
    path = tmp_path_factory.mktemp("config") / "edge.toml"
    path.write_bytes(text[:cut] + garbage)
    try:
        load_config(path)
    except ConfigError as exc:
        assert str(path) in exc.message, exc.message
