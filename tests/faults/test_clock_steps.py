"""The recording clock steps backwards and forwards (an NTP or GNSS correction mid-drive):
time lookups still answer by the largest capture time seen so far (as Kafka's time index
does), and replay still plays every record once, in offset order, without stalling for
the hour the clock jumped (the player's timing under steps is in
tests/edge/replay/test_player.py)."""

from __future__ import annotations

import json
import subprocess
import sys
import time

from broker.client import Admin, Consumer, Producer

T0 = 1_795_000_000_000_000_000
MS = 1_000_000
HOUR = 3600 * 10**9

# 1 s at 20 Hz, then the clock steps back 2 s (1 s more), then forward 1 h (1 s more)
STAMPS = ([T0 + i * 50 * MS for i in range(20)] + [T0 - 1000 * MS + i * 50 * MS for i in range(20)]
          + [T0 + HOUR + i * 50 * MS for i in range(20)])


def record_stepped_clock(endpoint: str, *, one_batch: bool = False) -> None:
    with Admin(endpoint) as admin:
        # flush=batch: a durable ack at the batch's own fsync, not at the next 200 ms interval
        # flush (60 single-record batches waited 12 s for the interval)
        admin.create_topic("camera.front", 1, config={"flush": "batch"})
    with Producer(endpoint, linger_ms=1000 if one_batch else 0, acks="durable") as producer:
        pending = []
        for i, ts in enumerate(STAMPS):
            pending.append(producer.send("camera.front", b"frame-%02d" % i, headers={"i": str(i)}, timestamp_ns=ts))
            if not one_batch:  # one batch per record
                pending[-1].result(10)
        producer.flush(10)
        for future in pending:
            future.result(10)


def test_time_lookups_and_replay_across_clock_steps(broker):
    record_stepped_clock(broker.endpoint)  # one batch per record
    with Admin(broker.endpoint) as admin:
        def lookup(ts: int) -> int:
            return admin.list_offset("camera.front", 0, "timestamp", ts)

        assert lookup(T0 - 5 * 10**9) == 0
        assert lookup(T0) == 0
        assert lookup(T0 + 500 * MS) == 10
        # records 20..39 are older than record 19: the first record at or after a time is
        # found through the largest time so far, so nothing before offset 40 passes T0+1s
        assert lookup(T0 + 980 * MS) == 40
        assert lookup(T0 + 10 * 10**9) == 40
        assert lookup(T0 + HOUR + 500 * MS) == 50
        assert lookup(T0 + 2 * HOUR) == 60  # the log end

    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "edge.cli", "replay", "--topics", "camera.front",
                           "--start", "earliest", "--end", str(T0 + 2 * HOUR), "--speed", "1", "--no-control",
                           "--quiet", "--endpoint", broker.endpoint],
                          capture_output=True, text=True, timeout=60, check=False)
    wall = time.monotonic() - started
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert summary["records"] == 60 and summary["gaps"] == 1, summary
    assert wall < 15, f"the replay took {wall:.1f}s for 3 s of recording"
    consumer = Consumer(broker.endpoint, max_wait_ms=50)
    consumer.assign([("replay.camera.front", 0)])
    got = []
    deadline = time.monotonic() + 10
    while len(got) < 60 and time.monotonic() < deadline:
        got += consumer.poll(0.5)
    consumer.close()
    assert [int(r.headers["i"]) for r in got] == list(range(60))
    assert [r.timestamp for r in got] == STAMPS


def _read_from(endpoint: str, start_ns: int, fetch_max_bytes: int) -> list[int]:
    consumer = Consumer(endpoint, fetch_max_bytes=fetch_max_bytes, max_wait_ms=50)
    consumer.assign([("camera.front", 0)])
    consumer.seek_to_time(start_ns)
    got: list[int] = []
    deadline = time.monotonic() + 10
    while consumer.position("camera.front", 0) < len(STAMPS) and time.monotonic() < deadline:
        got += [r.offset for r in consumer.poll(0.5)]
    consumer.close()
    return got


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "edge.cli", *args],
                          capture_output=True, text=True, timeout=60, check=False)


def test_from_a_time_is_kafkas_rule_whatever_the_fetch_size_or_batching(broker):
    """The first offset stamped at or after T, then everything after it: records 20..39,
    stamped before record 19 by a clock that stepped back, are neither skipped by
    ``--from`` nor by a window (both were on main, and seek_to_time gave 30 or 50)."""
    record_stepped_clock(broker.endpoint, one_batch=True)
    start = T0 + 500 * MS
    for fetch_max_bytes in (1, 1 << 20):
        assert _read_from(broker.endpoint, start, fetch_max_bytes) == list(range(10, 60)), fetch_max_bytes
    done = _cli("consume", "camera.front", "--from", str(start), "--timeout", "1", "--endpoint", broker.endpoint)
    assert done.returncode == 0, done.stderr
    assert [json.loads(line)["offset"] for line in done.stdout.splitlines()] == list(range(10, 60))
    # a window [T0+0.5s, T0+0.98s) is the offsets [lookup(start), lookup(end)) = [10, 40)
    done = _cli("replay", "--topics", "camera.front", "--start", str(start), "--end", str(T0 + 980 * MS),
                "--max", "--no-control", "--quiet", "--endpoint", broker.endpoint)
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert summary["records"] == 30 and summary["missing"]["records"] == 0, summary
