"""Slow and dead peers: a producer writing as fast as it can while a consumer has stopped
reading keeps every process's memory bounded (the broker holds no per-consumer backlog, the
producer's buffer is capped and blocks or fails instead of growing), and the stalled
consumer, when it reads again, gets everything in order.

The broker gone (killed, or hung by SIGSTOP) for EDGE_OUTAGE_S seconds under the real driver
processes is in tests/faults/test_broker_outage.py (driver memory bounded, drops counted,
every sensor topic resumes by itself; the in-process version with a fake producer in
tests/drivers/test_runtime.py); Kafka gone under the mirror in
tests/integration/mirror/test_mirror.py (bounded memory, everything arrives after)."""

from __future__ import annotations

import os
import threading
import time

import psutil

from broker.client import Admin, Consumer, Producer
from broker.errors import ProducerBufferFullError

MiB = 1024 * 1024


def test_fast_producer_and_stalled_consumer_stay_bounded(broker):
    with Admin(broker.endpoint) as admin:
        admin.create_topic("flood", 1, config={"segment_bytes": "64MiB"})
    stalled = Consumer(broker.endpoint, max_wait_ms=50, fetch_max_bytes=4 * MiB)
    stalled.assign([("flood", 0)])
    stalled.poll(0.2)  # it reads once, then stops reading while the flood goes on
    broker_proc = psutil.Process(broker.proc.pid)
    me = psutil.Process(os.getpid())
    rss_broker, rss_me = [], []
    stop = threading.Event()

    def watch():
        while not stop.is_set():
            rss_broker.append(broker_proc.memory_info().rss / MiB)
            rss_me.append(me.memory_info().rss / MiB)
            time.sleep(0.1)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    payload = os.urandom(MiB)
    sent = refused = 0
    with Producer(broker.endpoint, linger_ms=0, buffer_bytes=16 * MiB, on_full="fail") as producer:
        deadline = time.monotonic() + 8.0
        while time.monotonic() < deadline and sent < 1024:  # up to 1 GiB in at most 8 s
            try:
                producer.send("flood", payload)
                sent += 1
            except ProducerBufferFullError:
                refused += 1  # back-pressure: the caller learns at once, nothing queues
                time.sleep(0.001)
        producer.flush(60)
    stop.set()
    watcher.join(5)
    assert sent > 300, f"only {sent} MiB written in 8 s"  # far beyond every buffer on the way
    # the flood is hundreds of MiB; what the processes hold is not
    assert max(rss_broker) - rss_broker[0] < 150, f"broker RSS grew {rss_broker[0]:.0f} -> {max(rss_broker):.0f} MiB"
    assert max(rss_me) - rss_me[0] < 120, f"producer RSS grew {rss_me[0]:.0f} -> {max(rss_me):.0f} MiB"
    got = 0
    expected_offset = 0
    while got < sent:
        records = stalled.poll(2.0)
        assert records, f"the stalled consumer got {got} of {sent} when it read again"
        assert [r.offset for r in records] == list(range(expected_offset, expected_offset + len(records)))
        expected_offset += len(records)
        got += len(records)
    stalled.close()
    print(f"slow peers: {sent} MiB produced ({refused} sends refused by back-pressure), broker RSS "
          f"{rss_broker[0]:.0f} -> max {max(rss_broker):.0f} MiB, producer {rss_me[0]:.0f} -> {max(rss_me):.0f} MiB")


def test_requests_wait_in_the_producers_not_in_the_broker(broker):
    # Three producers, each with 8 partitions x max_in_flight batches of 1 MiB on the wire,
    # meet a broker that was frozen for a second. While it catches up, the broker reads ahead
    # only a few requests per client (server.REQUESTS_QUEUED_PER_CLIENT); the rest wait in the
    # producers' sockets, which hold the very bytes the producers keep for retry anyway.
    with Admin(broker.endpoint) as admin:
        admin.create_topic("frames", 8, config={"segment_bytes": "256MiB"})
    broker_proc = psutil.Process(broker.proc.pid)
    baseline = broker_proc.memory_info().rss / MiB
    producers = [Producer(broker.endpoint, linger_ms=0, buffer_bytes=96 * MiB) for _ in range(3)]
    payload = os.urandom(MiB)
    per_producer = 64
    broker_proc.suspend()
    try:
        for producer in producers:
            for i in range(per_producer):
                producer.send("frames", payload, partition=i % 8)
        time.sleep(1.0)  # every window fills while the broker is away
    finally:
        broker_proc.resume()
    peak = baseline
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        peak = max(peak, broker_proc.memory_info().rss / MiB)
        if not any(p.pending() for p in producers):
            break
        time.sleep(0.02)
    for producer in producers:
        producer.close()
    with Admin(broker.endpoint) as admin:
        stored = sum(admin.list_offset("frames", partition) for partition in range(8))
    print(f"read-ahead: broker RSS {baseline:.0f} -> max {peak:.0f} MiB while {3 * per_producer} MiB waited")
    assert stored == 3 * per_producer, f"{stored} of {3 * per_producer} records stored"
    # read-ahead bound: 3 clients x 8 requests x 1 MiB, plus the loop's own working set
    assert peak - baseline < 64, (f"broker RSS {baseline:.0f} -> {peak:.0f} MiB while {3 * per_producer} MiB "
                                  "waited to be written")
