"""Continuity and clock health end to end: a driver runtime publishing through the real client
into a real broker, its ``_health`` records read back by ``edge status`` and /metrics."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from broker.client import Consumer, Producer
from drivers.runtime import HEALTH_TOPIC, DriverRuntime, Sample
from edge.api.metrics import build_registry, render

MS = 1_000_000


def run_driver(endpoint: str) -> None:
    """A 10 Hz camera stream with one 0.6 s stall and a clock 3 ms behind the host."""
    stamps = [10**18 + i * 100 * MS for i in range(20)] + [10**18 + 2_500 * MS + i * 100 * MS for i in range(5)]
    producer = Producer(endpoint, linger_ms=0, acks="written")
    runtime = DriverRuntime(name="front", kind="camera", topic="camera.front", producer=producer,
                            encode=lambda payload: (payload, {"encoding": "raw"}), queue_size=64, nominal_hz=10.0)
    try:
        assert runtime.run(lambda: (Sample(ts, b"x", clock_offset_ns=3 * MS) for ts in stamps), finite=True) == 0
    finally:
        producer.close(5)


def test_gaps_and_clock_offset_reach_status_health_topic_and_metrics(broker):
    ep = broker.endpoint
    run_driver(ep)
    done = subprocess.run([sys.executable, "-m", "edge.cli", "status", "--format", "json", "--interval", "0.1"],
                          capture_output=True, text=True, timeout=60, env={**os.environ, "EDGE_ENDPOINT": ep},
                          check=False)
    assert done.returncode == 0, done.stderr
    status = json.loads(done.stdout)
    front = status["topics"]["camera.front"]
    assert front["gaps"] == 1 and front["last_gap"] == {"start_ns": 10**18 + 1_900 * MS, "length_ms": 600.0}
    assert front["usual_interval_ms"] == 100.0 and front["rate_ratio"] == 1.0
    assert status["drivers"]["front"]["clock_offset_ms"] == 3.0
    assert status["topics"][HEALTH_TOPIC]["gaps"] is None  # no driver reports on it

    # recorded in _health: a replay of the drive shows when the sensor was unhealthy
    consumer = Consumer(ep)
    consumer.assign([(HEALTH_TOPIC, 0)])
    records = consumer.poll(5)
    consumer.close()
    reports = [json.loads(bytes(r.value)) for r in records if r.key is not None and bytes(r.key) == b"front"]
    assert reports and reports[-1]["continuity"]["gaps"] == 1

    families = render(build_registry(lambda: status)).decode()
    assert 'edge_topic_gaps_total{topic="camera.front"} 1.0' in families
    assert 'edge_topic_last_gap_seconds{topic="camera.front"} 0.6' in families
    assert 'edge_driver_clock_offset_ms{kind="camera",sensor="front",topic="camera.front"} 3.0' in families
