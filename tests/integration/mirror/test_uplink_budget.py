"""The uplink budget against a real (single-node KRaft) Kafka: a complete event's partition
ships before a higher-priority topic, and a per-topic cap holds its rate while an uncapped
topic ships beside it."""

from __future__ import annotations

import time
import uuid

import pytest
from confluent_kafka import Consumer as KafkaConsumer
from confluent_kafka import TopicPartition

from broker.client import Admin

from .test_mirror import BASE_NS, produce_local

pytestmark = [pytest.mark.kafka, pytest.mark.slow]


def completion_times(cluster, expected: dict[str, int], timeout: float = 90) -> dict[str, float]:
    """Seconds from now until each destination topic holds its expected committed records,
    all topics watched at once (one consumer), so the times can be compared."""
    consumer = KafkaConsumer({"bootstrap.servers": cluster.bootstrap_servers, "group.id": f"t-{uuid.uuid4()}",
                              "auto.offset.reset": "earliest", "enable.auto.commit": False,
                              "isolation.level": "read_committed"})
    consumer.assign([TopicPartition(topic, 0, 0) for topic in expected])
    seen: dict[str, set[int]] = {topic: set() for topic in expected}
    done: dict[str, float] = {}
    started = time.monotonic()
    while len(done) < len(expected) and time.monotonic() - started < timeout:
        msg = consumer.poll(0.05)
        if msg is not None and msg.error() is None:
            seen[msg.topic()].add(msg.offset())
            if msg.topic() not in done and len(seen[msg.topic()]) >= expected[msg.topic()]:
                done[msg.topic()] = time.monotonic() - started
    consumer.close()
    assert len(done) == len(expected), {t: len(o) for t, o in seen.items()}
    return done


@pytest.mark.parametrize("events_first", ["true", "false"])
def test_complete_events_ship_first_and_topic_caps_hold(broker, kafka_single, mirror_single, events_first):
    make, vehicle = mirror_single
    produce_local(broker.endpoint, "camera.rear", 60, size=50_000)  # 3 MB, holds the event
    produce_local(broker.endpoint, "telemetry.can", 200, size=100)
    produce_local(broker.endpoint, "camera.front", 100, size=50_000)  # 5 MB under a 500 kB/s cap
    with Admin(broker.endpoint) as admin:  # an event over camera.rear's last records, already complete
        pin = admin.set_pin("ev-up", ["camera.rear"], BASE_NS + 40 * 1000, BASE_NS + 59 * 1000)
    assert pin["closed"] and pin["ranges"] == [["camera.rear", 0, 40, 60]]
    mirror = make(topics='["camera.*", "telemetry.*"]', bandwidth='"2MB"', transaction_interval='"250ms"',
                  priorities='{"telemetry.*" = 9, "camera.*" = 1}', topic_bandwidth='{"camera.front" = "500kB"}',
                  events_first=events_first).start()
    try:
        done = completion_times(kafka_single, {f"vehicles.{vehicle}.{t}": n for t, n in
                                               (("camera.rear", 60), ("telemetry.can", 200), ("camera.front", 100))})
    finally:
        assert mirror.stop() == 0, mirror.log()
    rear, telemetry, front = (done[f"vehicles.{vehicle}.{t}"] for t in ("camera.rear", "telemetry.can", "camera.front"))
    print(f"uplink (events_first {events_first}): event's partition done {rear:.2f} s, telemetry {telemetry:.2f} s, "
          f"capped camera.front {front:.2f} s")
    # the event's partition (priority 1) against telemetry (priority 9): with events first its last
    # records share telemetry's transaction at the latest; by priority alone telemetry is done
    # first and camera.rear's 3 MB take their time after it (measured 0.45 to 0.9 s)
    if events_first == "true":
        assert rear <= telemetry + 0.2, done
    else:
        assert rear > telemetry + 0.2, done
    # camera.front ships last: 5 MB at 500 kB/s, a second's burst first, is 9 s after the others
    # (20 kB of telemetry is nothing); within ±10 %
    assert 0.9 * 9 <= front - telemetry <= 1.1 * 9, done
    with Admin(broker.endpoint) as admin:
        [event] = admin.list_pins()["pins"]
    assert event["shipped"] and event["shipped_records"] == event["records"] == 20
