"""Broker benchmark: a real broker process, producer and consumer in separate processes, ipc.

    python -m benchmarks.broker [--quick]

Prints, in one run and side by side with ``dd`` on the same filesystem:
- MB/s for 1 MiB and 64 KiB records (acks=written), produced and consumed end to end;
- records/s for 100-byte records from one producer process (``send_many``);
- p50/p99 produce->consume latency for 64 KiB records offered at 100 MB/s;
- broker RSS with 64 partitions after traffic on all of them.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import signal
import subprocess
import sys
import time

import numpy as np
import psutil

from broker.client import Admin, Consumer, Producer

from .common import dd_write_mb_s, print_table, save_results, work_dir

MiB = 1024 * 1024


def start_broker(data_dir) -> tuple[subprocess.Popen, str]:
    endpoint = f"ipc://{data_dir}/broker.sock"
    proc = subprocess.Popen([sys.executable, "-m", "edge.cli", "broker", "--data-dir", str(data_dir),
                             "--endpoint", endpoint, "--log-level", "WARNING"])
    deadline = time.monotonic() + 15
    while True:
        try:
            with Admin(endpoint, timeout_s=0.5) as admin:
                admin.ping()
            return proc, endpoint
        except Exception:  # not up yet
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def stop_broker(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGTERM)
    proc.wait(30)


def _produce(endpoint: str, topic: str, size: int, count: int, done: mp.Queue) -> None:
    payload = os.urandom(size)
    with Producer(endpoint, linger_ms=1, max_batch_bytes=max(MiB, size + 1024), acks="written",
                  max_in_flight=8, buffer_bytes=256 * MiB) as producer:
        started = time.perf_counter()
        if size <= 1024:
            chunk = [payload] * 50_000
            for _ in range(count // len(chunk)):
                producer.send_many(topic, chunk)
        else:
            for _ in range(count):
                producer.send(topic, payload)
        producer.flush(300)
        done.put(time.perf_counter() - started)


def _consume(endpoint: str, topic: str, count: int, done: mp.Queue) -> None:
    consumer = Consumer(endpoint, fetch_max_bytes=16 * MiB, max_wait_ms=200)
    consumer.assign([(topic, 0)])
    got = 0
    started = None
    while got < count:
        records = consumer.poll(5)
        if not records:
            continue
        if started is None:
            started = time.perf_counter()
        got += len(records)
    consumer.close()
    done.put(time.perf_counter() - started)


def throughput(endpoint: str, topic: str, size: int, count: int) -> tuple[float, float, float]:
    """(produce MB/s, end-to-end MB/s, records/s) with producer and consumer processes."""
    ctx = mp.get_context("spawn")
    produced, consumed = ctx.Queue(), ctx.Queue()
    consumer = ctx.Process(target=_consume, args=(endpoint, topic, count, consumed))
    producer = ctx.Process(target=_produce, args=(endpoint, topic, size, count, produced))
    with Admin(endpoint) as admin:
        admin.create_topic(topic, config={"flush": "os", "segment_bytes": "512MiB"})
    started = time.perf_counter()
    consumer.start()
    producer.start()
    produce_s = produced.get(timeout=600)
    consumed.get(timeout=600)
    total_s = time.perf_counter() - started
    producer.join()
    consumer.join()
    volume = size * count / 1e6
    return volume / produce_s, volume / total_s, count / produce_s


def _latency_producer(endpoint: str, topic: str, size: int, rate_mb_s: float, seconds: float) -> None:
    payload = bytearray(os.urandom(size))
    interval = size / (rate_mb_s * 1e6)
    with Producer(endpoint, linger_ms=0, acks="written", max_in_flight=8) as producer:
        next_due = time.perf_counter()
        end = next_due + seconds
        while next_due < end:
            delay = next_due - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            payload[:8] = time.time_ns().to_bytes(8, "little")
            producer.send(topic, bytes(payload))
            next_due += interval
        producer.flush(60)


def latency(endpoint: str, size: int = 64 * 1024, rate_mb_s: float = 100.0,
            seconds: float = 10.0) -> tuple[float, float, int]:
    topic = f"latency-{size}-{rate_mb_s:g}"
    with Admin(endpoint) as admin:
        admin.create_topic(topic, config={"flush": "os"})
    consumer = Consumer(endpoint, max_wait_ms=100)
    consumer.assign([(topic, 0)])
    ctx = mp.get_context("spawn")
    producer = ctx.Process(target=_latency_producer, args=(endpoint, topic, size, rate_mb_s, seconds))
    producer.start()
    expected = int(seconds * rate_mb_s * 1e6 / size)
    lat = []
    deadline = time.monotonic() + seconds + 30
    while len(lat) < expected and time.monotonic() < deadline:
        for record in consumer.poll(1):
            lat.append(time.time_ns() - int.from_bytes(bytes(record.value[:8]), "little"))
    producer.join()
    consumer.close()
    arr = np.array(lat[len(lat) // 10 :], dtype=np.float64) / 1e6  # skip warm-up
    return float(np.percentile(arr, 50)), float(np.percentile(arr, 99)), len(lat)


def rss_with_partitions(endpoint: str, proc: subprocess.Popen, partitions: int = 64) -> float:
    with Admin(endpoint) as admin:
        admin.create_topic("wide", partitions=partitions, config={"flush": "os"})
    with Producer(endpoint, linger_ms=1) as producer:
        for _ in range(20):
            for p in range(partitions):
                producer.send("wide", os.urandom(16 * 1024), partition=p)
        producer.flush(60)
    consumer = Consumer(endpoint)
    consumer.assign([("wide", p) for p in range(partitions)])
    got = 0
    while got < 20 * partitions:
        got += len(consumer.poll(2))
    consumer.close()
    return psutil.Process(proc.pid).memory_info().rss / 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    base = work_dir("broker")
    scale = 0.25 if args.quick else 1.0
    dd = dd_write_mb_s(base, int(2048 * scale))
    proc, endpoint = start_broker(base / "data")
    try:
        big = throughput(endpoint, "big", MiB, int(2048 * scale))
        mid = throughput(endpoint, "mid", 64 * 1024, int(16384 * scale))
        small = throughput(endpoint, "small", 100, int(4_000_000 * scale) // 50_000 * 50_000)
        p50, p99, n = latency(endpoint, seconds=5 if args.quick else 15)
        rss = rss_with_partitions(endpoint, proc)
    finally:
        stop_broker(proc)
        work_dir("broker")
    rows = [
        ("dd page-cache write", f"{dd:,.0f} MB/s", "ceiling, same filesystem"),
        ("1 MiB records produce", f"{big[0]:,.0f} MB/s", f"{big[0] / dd:.0%} of dd (goal >= 80%)"),
        ("1 MiB records end to end", f"{big[1]:,.0f} MB/s", "producer and consumer processes"),
        ("64 KiB records produce", f"{mid[0]:,.0f} MB/s", f"{mid[0] / dd:.0%} of dd"),
        ("64 KiB records end to end", f"{mid[1]:,.0f} MB/s", ""),
        ("100 B records (send_many)", f"{small[2]:,.0f} rec/s", "goal >= 1,000,000"),
        ("64 KiB @100 MB/s latency p50", f"{p50:.2f} ms", f"{n} records"),
        ("64 KiB @100 MB/s latency p99", f"{p99:.2f} ms", "goal <= 2 ms"),
        ("broker RSS, 64 partitions", f"{rss:.0f} MB", "goal <= 100 MB"),
    ]
    print_table("broker over ipc (separate producer/consumer processes)", rows)
    path = save_results("broker", {
        "dd_mb_s": dd, "produce_1mib_mb_s": big[0], "e2e_1mib_mb_s": big[1], "produce_64kib_mb_s": mid[0],
        "e2e_64kib_mb_s": mid[1], "records_100b_per_s": small[2], "latency_p50_ms": p50, "latency_p99_ms": p99,
        "broker_rss_mb_64_partitions": rss,
    })
    print(f"\nresults: {path}")


if __name__ == "__main__":
    main()
