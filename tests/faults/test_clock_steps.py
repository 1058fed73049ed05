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


def test_time_lookups_and_replay_across_clock_steps(broker):
    with Admin(broker.endpoint) as admin:
        admin.create_topic("camera.front", 1)
    with Producer(broker.endpoint, linger_ms=0, acks="durable") as producer:
        for i, ts in enumerate(STAMPS):  # one batch per record: lookups at record precision
            producer.send("camera.front", b"frame-%02d" % i, headers={"i": str(i)}, timestamp_ns=ts).result(10)
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
                           "--quiet", "--endpoint", broker.endpoint], capture_output=True, text=True, timeout=60)
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
