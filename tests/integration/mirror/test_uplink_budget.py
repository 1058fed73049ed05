"""The uplink budget against a real (single-node KRaft) Kafka: a complete event's partition
ships before a higher-priority topic, and a per-topic cap holds its rate while an uncapped
topic ships beside it."""

from __future__ import annotations

import time

import pytest

from broker.client import Admin

from .test_mirror import BASE_NS, cloud_records, produce_local

pytestmark = [pytest.mark.kafka, pytest.mark.slow]


def test_complete_events_ship_first_and_topic_caps_hold(broker, kafka_single, mirror_single):
    make, vehicle = mirror_single
    produce_local(broker.endpoint, "camera.rear", 60, size=50_000)  # 3 MB, holds the event
    produce_local(broker.endpoint, "telemetry.can", 200, size=100)
    produce_local(broker.endpoint, "camera.front", 100, size=50_000)  # 5 MB under a 500 kB/s cap
    with Admin(broker.endpoint) as admin:  # an event over camera.rear's last records, already complete
        pin = admin.set_pin("ev-up", ["camera.rear"], BASE_NS + 40 * 1000, BASE_NS + 59 * 1000)
    assert pin["closed"] and pin["ranges"] == [["camera.rear", 0, 40, 60]]
    mirror = make(topics='["camera.*", "telemetry.*"]', bandwidth='"2MB"', transaction_interval='"250ms"',
                  priorities='{"telemetry.*" = 9, "camera.*" = 1}', topic_bandwidth='{"camera.front" = "500kB"}').start()
    started = time.monotonic()
    try:
        rear = cloud_records(kafka_single, f"vehicles.{vehicle}.camera.rear", 60, timeout=60)
        rear_done = time.monotonic() - started
        telemetry = cloud_records(kafka_single, f"vehicles.{vehicle}.telemetry.can", 200, timeout=30)
        telemetry_done = time.monotonic() - started
        front = cloud_records(kafka_single, f"vehicles.{vehicle}.camera.front", 100, timeout=60)
        front_done = time.monotonic() - started
    finally:
        assert mirror.stop() == 0, mirror.log()
    assert len(rear) == 60 and len(telemetry) == 200 and len(front) == 100
    # the event's partition (priority 1) went before telemetry (priority 9): it was done first
    assert rear_done <= telemetry_done, (rear_done, telemetry_done)
    # camera.front: 5 MB at 500 kB/s, a second's burst first: ~9 s after shipping began (±10 %
    # of the cap, plus the mirror's start-up, which the other topics' completion bounds)
    assert 0.9 * 9 <= front_done - min(rear_done, telemetry_done) + 1 <= 1.1 * 9 + 3, (front_done, rear_done)
    with Admin(broker.endpoint) as admin:
        [event] = admin.list_pins()["pins"]
    assert event["shipped"] and event["shipped_records"] == event["records"] == 20
