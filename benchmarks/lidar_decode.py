"""LiDAR decode benchmark: Velodyne VLP-16 packets → points → rotations on one core.

    python benchmarks/lidar_decode.py [--seconds 3] [--json]

Decodes the real capture (``../shared/data/vlp16-90deg-50frames.pcap``, 1,902 data
packets) over and over for about ``--seconds`` per case and prints packets/s, points/s
and the multiple of the sensor's own rate (754 packets/s), for: the pcap read alone, the
decode of the whole capture in one call, the decode in batches of 64 packets (what the
UDP source feeds it live), and read + decode end to end. Also the synthetic scanner's
rotations/s and ``encode_cloud``'s cost. The goal is ≥ 20× the sensor rate.

Per sensor model ("× real time per sensor"): each real capture — the VLP-16 above, the
HDL-32E cut of VeloView's Monterey sample ($EDGE_LIDAR_CAPTURES, else ../shared/data/lidar: see
docs/LIDAR.md "Test captures"; 1,808 packets/s) and the two Ouster samples (OS2-32 at 1024x20 =
1,280 packets/s, OS0-32 at 1024x10 = 640) —
decoded end to end (pcap read, model identified from the packets, batches of 64) against
that model's own packet rate; and, when installed, the independent reference decoder
``velodyne_decoder`` on the same files.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from drivers.lidar.ouster import OusterDecoder  # noqa: E402
from drivers.lidar.pcap import PacketBatch, read_udp_payloads  # noqa: E402
from drivers.lidar.sim import SyntheticScan  # noqa: E402
from drivers.lidar.velodyne import VelodyneDecoder, decode_pcap  # noqa: E402
from drivers.pointcloud import encode_cloud  # noqa: E402

SHARED_DATA = Path(os.environ.get("EDGE_SHARED_DATA", REPO.parent / "shared" / "data"))
CAPTURE = SHARED_DATA / "vlp16-90deg-50frames.pcap"
CALIBRATION = SHARED_DATA / "VLP-16.xml"
SENSOR_PACKETS_PER_S = 754  # VLP-16, single return
TEST_DATA = Path(os.environ.get("EDGE_LIDAR_CAPTURES", SHARED_DATA / "lidar"))
PER_SENSOR = [  # (model, capture, calibration, the sensor's packets/s in single return)
    ("VLP-16", CAPTURE, CALIBRATION, 1e6 / (12 * 110.592)),
    ("HDL-32E", TEST_DATA / "hdl32e-monterey-frame8.pcap", TEST_DATA / "HDL-32.xml", 1e6 / (12 * 46.08)),
    # Ouster: columns_per_frame / columns_per_packet × rotations a second (lidar_mode 1024x20, 1024x10)
    ("OS-2-32 (LEGACY)", TEST_DATA / "ouster" / "OS-2-32-U0_v2.0.0_1024x10.pcap",
     TEST_DATA / "ouster" / "OS-2-32-U0_v2.0.0_1024x10.json", 1024 / 16 * 20),
    ("OS-0-32 (RNG19 dual)", TEST_DATA / "ouster" / "OS-0-32-U1_v2.2.0_1024x10.pcap",
     TEST_DATA / "ouster" / "OS-0-32-U1_v2.2.0_1024x10.json", 1024 / 16 * 10),
]


def make_decoder(calibration: Path):
    return OusterDecoder(calibration) if calibration.suffix == ".json" else VelodyneDecoder(calibration)


def per_sensor(seconds: float) -> dict[str, dict[str, float]]:
    """× real time of the end-to-end decode of each model's capture (and the reference's)."""
    try:
        import velodyne_decoder
    except ImportError:
        velodyne_decoder = None
    rows: dict[str, dict[str, float]] = {}
    for model, capture, calibration, sensor_rate in PER_SENSOR:
        if not capture.is_file():
            continue
        probe = make_decoder(calibration)
        batch = read_udp_payloads(capture, port=probe.port, payload_size=probe.packet_size)

        decoder = make_decoder(calibration)  # once per stream: identification, tables

        def ours(decoder: VelodyneDecoder | OusterDecoder = decoder, batch: PacketBatch = batch) -> None:
            for begin in range(0, len(batch), 64):
                decoder.decode(batch.payloads[begin:begin + 64], batch.timestamps_ns[begin:begin + 64])
            decoder.flush()

        def read_and_decode(capture: Path = capture, probe: VelodyneDecoder | OusterDecoder = probe,
                            ours: Callable[[], None] = ours) -> None:
            read_udp_payloads(capture, port=probe.port, payload_size=probe.packet_size)
            ours()

        runs, elapsed = repeat(seconds, read_and_decode)
        rows[f"{model}: read + decode (ours)"] = {"x_real_time": round(runs * len(batch) / elapsed / sensor_rate, 1)}
        if velodyne_decoder is not None and calibration.suffix != ".json":
            config = velodyne_decoder.Config(model=getattr(velodyne_decoder.Model, model.replace("-", "")))

            def reference(capture: Path = capture, config: Any = config) -> None:  # velodyne_decoder.Config
                for _ in velodyne_decoder.read_pcap(str(capture), config, as_pcl_structs=True):
                    pass

            try:
                runs, elapsed = repeat(seconds, reference)
            except (ValueError, RuntimeError, TypeError) as exc:
                rows[f"{model}: velodyne_decoder (reference)"] = {"x_real_time": 0.0, "error": str(exc)}
            else:
                rows[f"{model}: velodyne_decoder (reference)"] = {
                    "x_real_time": round(runs * len(batch) / elapsed / sensor_rate, 1)}
    return rows


def repeat(seconds: float, work) -> tuple[int, float]:
    """Run ``work`` until ``seconds`` have passed (at least twice); (runs, elapsed)."""
    work()  # warm up: tables, caches, page faults
    runs, started = 0, time.perf_counter()
    while True:
        work()
        runs += 1
        elapsed = time.perf_counter() - started
        if elapsed >= seconds and runs >= 2:
            return runs, elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="time spent on each case")
    parser.add_argument("--json", action="store_true", help="print the results as JSON too")
    args = parser.parse_args()
    if not CAPTURE.is_file():
        print(f"capture not found: {CAPTURE} (set EDGE_SHARED_DATA)", file=sys.stderr)
        return 1
    logging.disable(logging.WARNING)  # the capture's product-id note would repeat every run

    batch = read_udp_payloads(CAPTURE)
    packets = len(batch)
    points = sum(f.points.shape[0] for f in decode_pcap(CAPTURE, CALIBRATION)[0])
    results: dict[str, dict[str, float]] = {}

    def record(name: str, runs: int, elapsed: float, n_packets: int, n_points: int) -> None:
        pps = runs * n_packets / elapsed
        results[name] = {"packets_per_s": round(pps), "points_per_s": round(runs * n_points / elapsed),
                         "x_sensor_rate": round(pps / SENSOR_PACKETS_PER_S, 1)}

    record("pcap read (mmap + numpy gather)", *repeat(args.seconds, lambda: read_udp_payloads(CAPTURE)), packets, 0)

    def decode_whole() -> None:
        decoder = VelodyneDecoder(CALIBRATION)
        decoder.decode(batch.payloads, batch.timestamps_ns)
        decoder.flush()

    record("decode, one call for the capture", *repeat(args.seconds, decode_whole), packets, points)

    def decode_batches(size: int = 64) -> None:
        decoder = VelodyneDecoder(CALIBRATION)
        for begin in range(0, packets, size):
            decoder.decode(batch.payloads[begin:begin + size], batch.timestamps_ns[begin:begin + size])
        decoder.flush()

    record("decode, batches of 64 packets", *repeat(args.seconds, decode_batches), packets, points)
    record("pcap read + decode (decode_pcap)", *repeat(args.seconds, lambda: decode_pcap(CAPTURE, CALIBRATION)),
           packets, points)

    sensors = per_sensor(args.seconds)
    scan = SyntheticScan("VLP-16", 10.0)
    counter = iter(range(10**9))
    runs, elapsed = repeat(args.seconds, lambda: scan.rotation(next(counter)))
    rotations_per_s = runs / elapsed
    cloud = scan.rotation(0)
    runs, elapsed = repeat(min(args.seconds, 1.0), lambda: encode_cloud(cloud))
    encode_us = elapsed / runs * 1e6

    print(f"\nVelodyne VLP-16 decode, one core — {CAPTURE.name}: {packets} packets, {points:,} points, 52 rotations")
    print(f"sensor rate: {SENSOR_PACKETS_PER_S} packets/s (~{SENSOR_PACKETS_PER_S * 384:,} point slots/s); "
          "goal ≥ 20×\n")
    width = max(len(name) for name in results)
    print(f"  {'case':<{width}}  {'packets/s':>11}  {'points/s':>13}  {'× sensor':>8}")
    for name, row in results.items():
        points_text = f"{row['points_per_s']:,}" if row["points_per_s"] else "-"
        print(f"  {name:<{width}}  {row['packets_per_s']:>11,}  {points_text:>13}  {row['x_sensor_rate']:>7}×")
    print(f"\n  synthetic VLP-16 scan: {rotations_per_s:.0f} rotations/s (10 Hz needed); "
          f"encode_cloud of {cloud.shape[0]:,} points: {encode_us:.1f} µs")
    print("\n  × real time per sensor, one core:")
    for name, row in sensors.items():
        print(f"    {name:<40} {row['x_real_time']:>7}×" + (f"  ({row['error']})" if "error" in row else ""))
    goal_met = results["decode, batches of 64 packets"]["x_sensor_rate"] >= 20 and all(
        row["x_real_time"] >= 20 for name, row in sensors.items() if "(ours)" in name)
    print(f"\n  goal (≥ 20× the sensor rate, live-sized batches): {'met' if goal_met else 'NOT met'}")
    if args.json:
        print(json.dumps({"cases": results, "per_sensor": sensors, "sim_rotations_per_s": round(rotations_per_s, 1),
                          "encode_cloud_us": round(encode_us, 1)}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
