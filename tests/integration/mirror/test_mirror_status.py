"""Status never says a stale "up" (issue 28 case 7, issue 21 item 14): Kafka frozen ->
"stalled since T" within twice ``stall_after``; mirror SIGKILLed -> "down"; ``too_large =
"stop"`` -> a final status with the reason. Against a real Kafka node."""

from __future__ import annotations

import signal
import threading
import time

import pytest
from confluent_kafka.admin import AdminClient, NewTopic

from broker.client import Producer
from edge.status import StatusTracker, format_status

from .test_mirror import cloud_records, produce_local

pytestmark = [pytest.mark.kafka, pytest.mark.slow]


def condition_within(tracker: StatusTracker, wanted: str, timeout: float) -> tuple[dict, float]:
    started = time.monotonic()
    mirror: dict = {}
    while time.monotonic() - started < timeout:
        mirror = tracker.sample()["mirror"] or {}
        if mirror.get("condition") == wanted:
            return mirror, time.monotonic() - started
        time.sleep(0.2)
    raise AssertionError(f"mirror not {wanted} within {timeout}s: {mirror}")


def test_frozen_kafka_shows_stalled_and_a_killed_mirror_down(broker, kafka_single, mirror_single):
    make, vehicle = mirror_single
    produce_local(broker.endpoint, "telemetry.can", 50, size=100)
    mirror = make(topics='["telemetry.*"]', transaction_interval='"200ms"', stall_after='"3s"').start()
    tracker = StatusTracker(broker.endpoint, include_drives=False)
    stop = threading.Event()

    def keep_producing():
        i = 50
        while not stop.is_set():
            produce_local(broker.endpoint, "telemetry.can", 5, size=100, start=i)
            i += 5
            time.sleep(0.1)

    writer = threading.Thread(target=keep_producing)
    try:
        assert len(cloud_records(kafka_single, f"vehicles.{vehicle}.telemetry.can", 50, timeout=60)) == 50
        condition_within(tracker, "up", 10)
        writer.start()
        kafka = kafka_single.procs[0]
        kafka.send_signal(signal.SIGSTOP)
        try:
            # before: "mirror: up, lag 14" for the whole freeze
            stalled, after_s = condition_within(tracker, "stalled", 2 * 3.0 + 2)
            assert stalled["condition_since_ns"] and "nothing committed" in stalled["condition_reason"]
            assert "mirror: stalled since" in format_status(tracker.sample())
        finally:
            kafka.send_signal(signal.SIGCONT)
        condition_within(tracker, "up", 60)
        mirror.kill()
        # before: "up, lag 0" 20 s after the SIGKILL (the last report, whatever its age)
        down, _ = condition_within(tracker, "down", 2)
        assert "process is gone" in down["condition_reason"]
    finally:
        stop.set()
        if writer.is_alive():
            writer.join(10)
        mirror.kill()
    print(f"stalled reported {after_s:.1f}s after Kafka froze (stall_after 3s)")


def test_too_large_stop_leaves_a_final_status_with_the_reason(broker, kafka_single, mirror_single):
    make, vehicle = mirror_single
    admin = AdminClient({"bootstrap.servers": kafka_single.bootstrap_servers})
    dest = f"vehicles.{vehicle}.camera.big"
    for future in admin.create_topics([NewTopic(dest, 1, 1, config={"max.message.bytes": "10000"})]).values():
        future.result(30)
    with Producer(broker.endpoint) as producer:
        producer.send("camera.big", b"x" * 20_000, key=b"k").result(10)
    mirror = make(topics='["camera.*"]', too_large='"stop"').start()
    assert mirror.proc.wait(60) == 1, mirror.log()
    status = StatusTracker(broker.endpoint, include_drives=False).sample()["mirror"]
    # before: the mirror exited with a log line and published no status at all
    assert status["condition"] == "stopped" and "too large" in status["condition_reason"], status
    assert "mirror: stopped" in format_status(StatusTracker(broker.endpoint, include_drives=False).sample())
