"""Replay benchmark: timing accuracy at 1x and throughput at max speed, through a real broker.

    python -m benchmarks.replay [--quick]

Timing: a minute (``--quick``: 15 s) of mixed sensors as a vehicle records them (two
cameras at 30 Hz with 200 KB JPEG-sized frames, a LiDAR at 10 Hz with 600 KB clouds) is
replayed at 1x; the error of each output inter-record interval against the recorded one
is reported (p50/p99/max, ms), next to the same figure for ``time.sleep``-paced emission
(the floor the OS gives a Python process) — the ratio says what the player costs.
Throughput: the same window at ``--max``, in MB/s, next to the broker's own consumer
reading it and a producer with the replay sink's settings writing the same records; replay
does both through one broker, so its ceiling is the two one after the other
(1 / (1/read + 1/write)), reported as a ratio. Issue 7's goal: p99 within a few ms.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

from broker.client import Consumer, Producer
from broker.records import Record
from edge.replay import BrokerSource, ReplayOptions, TopicNaming, prepare_replay
from edge.replay.player import REPLAY_ID, REPLAY_OFFSET, REPLAY_PARTITION, REPLAY_TOPIC
from edge.replay.sinks import BrokerSink
from edge.replay.timespec import WindowSpec

from .broker import start_broker, stop_broker
from .common import print_table, save_results, work_dir

T0 = 1_795_000_000_000_000_000
MS = 1_000_000
SENSORS = (("camera.front", 30, 0, 200_000), ("camera.rear", 30, 11 * MS, 200_000), ("lidar.top", 10, 3 * MS, 600_000))


def record(endpoint: str, seconds: int) -> int:
    total = 0
    with Producer(endpoint, linger_ms=5, buffer_bytes=256 * 1024 * 1024) as producer:
        for topic, hz, phase, size in SENSORS:
            payload = os.urandom(size)
            for i in range(seconds * hz):
                jitter = int(np.random.default_rng(i).integers(-2 * MS, 2 * MS))  # real capture jitter
                producer.send(topic, payload, headers={"seq": str(i)},
                              timestamp_ns=T0 + phase + i * 10**9 // hz + jitter)
                total += size
        producer.flush(120)
    return total


def interval_errors_ms(pairs: list[tuple[int, float]], speed: float = 1.0) -> np.ndarray:
    ts = np.array([p[0] for p in pairs], dtype=np.float64) / 1e9
    wall = np.array([p[1] for p in pairs], dtype=np.float64)
    return np.abs(np.diff(wall) - np.diff(ts) / speed) * 1e3


def sleep_paced_errors_ms(stamps_ns: list[int]) -> np.ndarray:
    """The OS floor: emit at the same due times with time.sleep and nothing else."""
    start_wall, start_ts = time.monotonic(), stamps_ns[0]
    out = []
    for ts in stamps_ns:
        due = start_wall + (ts - start_ts) / 1e9
        remaining = due - time.monotonic()
        if remaining > 0:
            time.sleep(remaining)
        out.append((ts, time.monotonic()))
    return interval_errors_ms(out)


def replay_once(endpoint: str, speed: float | None, prefix: str):
    emitted: list[tuple[int, float]] = []
    session = prepare_replay(BrokerSource(endpoint), ["camera.*", "lidar.top"], WindowSpec(0, T0 + 3600 * 10**9),
                             endpoint=endpoint, naming=TopicNaming(prefix), options=ReplayOptions(speed=speed),
                             on_emit=lambda record, due, now: emitted.append((record.timestamp, now)))
    started = time.perf_counter()
    try:
        status = session.player.run()
    finally:
        session.close()
    return status, emitted, time.perf_counter() - started


def replay_headers(topic: str) -> dict[str, bytes]:
    """The headers the player adds to every record, at their usual sizes."""
    return {REPLAY_TOPIC: topic.encode(), REPLAY_PARTITION: b"0", REPLAY_OFFSET: b"123456", REPLAY_ID: b"0123456789ab"}


def producer_write_mb_s(endpoint: str, seconds: int) -> float:
    """The write half of the ceiling: the same records (count, sizes, headers) published
    as fast as the replay sink's producer settings allow, into topics of their own."""
    sink = BrokerSink(endpoint, TopicNaming("ceiling."))
    sink.prepare({topic: 1 for topic, *_ in SENSORS}, {}, same_broker=True)
    payloads = {topic: os.urandom(size) for topic, _hz, _phase, size in SENSORS}
    order = sorted((phase + i * 10**9 // hz, topic) for topic, hz, phase, _size in SENSORS for i in range(seconds * hz))
    started, total = time.perf_counter(), 0
    try:
        for ts, topic in order:
            record = Record(offset=0, timestamp=T0 + ts, key=None, value=payloads[topic], topic=topic)
            sink.emit(record, {"seq": b"0", **replay_headers(topic)}, T0 + ts)
            total += len(record.value)
        sink.flush()
    finally:
        sink.close()
    return total / (time.perf_counter() - started) / 1e6


def consumer_read_mb_s(endpoint: str) -> float:
    consumer = Consumer(endpoint, max_wait_ms=50)
    consumer.assign([(t, 0) for t, *_ in SENSORS])
    consumer.seek_to_beginning()
    started, total, idle = time.perf_counter(), 0, 0
    while idle < 5:
        records = consumer.poll(0.2)
        idle = 0 if records else idle + 1
        total += sum(len(r.value) for r in records)
    elapsed = time.perf_counter() - started - 5 * 0.2
    consumer.close()
    return total / elapsed / 1e6


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    seconds = 15 if args.quick else 60
    data = work_dir("replay")
    proc, endpoint = start_broker(data)
    try:
        nbytes = record(endpoint, seconds)
        status, emitted, wall = replay_once(endpoint, 1.0, "timing.")
        errors = interval_errors_ms(emitted)
        floor = sleep_paced_errors_ms([ts for ts, _ in emitted])
        max_status, _e, max_wall = replay_once(endpoint, None, "fast.")
        read = consumer_read_mb_s(endpoint)
        write = producer_write_mb_s(endpoint, seconds)
    finally:
        stop_broker(proc)
    replay_mb_s = max_status.bytes / max_wall / 1e6
    # replay reads every byte and writes it again through the one broker: its ceiling is
    # the read and the write done one after the other
    read_then_write = 1 / (1 / read + 1 / write)
    results = {
        "recorded_s": seconds, "records": status.records, "bytes": nbytes,
        "interval_error_ms": {"p50": float(np.percentile(errors, 50)), "p99": float(np.percentile(errors, 99)),
                              "max": float(errors.max())},
        "sleep_floor_ms": {"p50": float(np.percentile(floor, 50)), "p99": float(np.percentile(floor, 99)),
                           "max": float(floor.max())},
        "wall_s_at_1x": wall, "reanchors": status.reanchors, "player_lateness": status.lateness,
        "max_speed_mb_s": replay_mb_s, "consumer_read_mb_s": read, "max_vs_read": replay_mb_s / read,
        "producer_write_mb_s": write, "read_then_write_mb_s": read_then_write,
        "max_vs_read_then_write": replay_mb_s / read_then_write,
    }
    print_table(f"replay timing at 1x over {seconds} s of mixed camera + LiDAR ({status.records} records)", [
        ("interval error p50", f"{results['interval_error_ms']['p50']:.2f} ms",
         f"sleep floor {results['sleep_floor_ms']['p50']:.2f} ms"),
        ("interval error p99", f"{results['interval_error_ms']['p99']:.2f} ms",
         f"sleep floor {results['sleep_floor_ms']['p99']:.2f} ms "
         f"({results['interval_error_ms']['p99'] / max(results['sleep_floor_ms']['p99'], 1e-3):.1f}x)"),
        ("interval error max", f"{results['interval_error_ms']['max']:.2f} ms", f"reanchors {status.reanchors}"),
        ("wall time", f"{wall:.2f} s", f"recorded {seconds} s"),
    ])
    print_table("replay at max speed", [
        ("replay", f"{replay_mb_s:.0f} MB/s", "read + republish"),
        ("consumer read", f"{read:.0f} MB/s", f"ratio {results['max_vs_read']:.2f}"),
        ("producer write", f"{write:.0f} MB/s", "the same records, the sink's producer settings"),
        ("read, then write", f"{read_then_write:.0f} MB/s",
         f"ratio {results['max_vs_read_then_write']:.2f} (the ceiling: every byte is read and written)"),
    ])
    print(f"\nresults: {save_results('replay', results)}")


if __name__ == "__main__":
    main()
