"""Driver runtime: overload policy, record contract headers, sensor loss, exit codes.

The broker is not under test here: a recording producer stands in for the client library
(the end-to-end path through a real broker is in tests/integration)."""

from __future__ import annotations

import json
import threading
import time
from concurrent.futures import Future

from broker.errors import BrokerUnavailableError, DeliveryUnknownError, DiskFullError
from drivers.runtime import HEALTH_TOPIC, DriverRuntime, Sample, SensorError


class RecordingProducer:
    def __init__(self, fail: bool = False, delay_s: float = 0.0):
        self.sent: list[tuple] = []
        self.fail = fail
        self.delay_s = delay_s
        self.flushed = False

    def send(self, topic, value, key=None, headers=None, partition=None, timestamp_ns=None):
        if self.fail and topic != HEALTH_TOPIC:
            raise BrokerUnavailableError("broker down (test)")
        time.sleep(self.delay_s)
        self.sent.append((topic, bytes(value), key, dict(headers or {}), timestamp_ns))

    def flush(self, timeout=None):
        self.flushed = True

    def data(self):
        return [s for s in self.sent if s[0] != HEALTH_TOPIC]

    def health(self):
        return [json.loads(s[1]) for s in self.sent if s[0] == HEALTH_TOPIC]


def runtime(producer, **kw) -> DriverRuntime:
    kw.setdefault("queue_size", 4)
    return DriverRuntime(name="cam0", kind="camera", topic="camera.cam0", producer=producer,
                         encode=lambda payload: (payload, {"encoding": "raw"}), **kw)


def finite(n, start=1_000):
    return lambda: (Sample(start + i, f"frame{i}".encode()) for i in range(n))


def test_records_follow_the_contract_and_finite_source_exits_zero():
    producer = RecordingProducer()
    rt = runtime(producer)
    assert rt.run(finite(3)) == 0
    data = producer.data()
    assert [d[1] for d in data] == [b"frame0", b"frame1", b"frame2"]
    assert [d[4] for d in data] == [1000, 1001, 1002]
    assert data[1][3] == {"sensor": "cam0", "seq": "1", "capture_ns": "1001", "encoding": "raw"}
    assert producer.flushed
    final = producer.health()[-1]
    assert final["state"] == "stopped" and final["captured"] == 3 and final["published"] == 3


def test_slow_publisher_drops_oldest_and_counts():
    producer = RecordingProducer(delay_s=0.02)
    rt = runtime(producer, queue_size=2)
    assert rt.run(finite(40)) == 0
    data = producer.data()
    dropped = rt.counters.dropped["queue_full"]
    assert dropped > 0 and len(data) + dropped == 40
    # the newest frame always survives drop-oldest
    assert data[-1][1] == b"frame39"
    seqs = [int(d[3]["seq"]) for d in data]
    assert seqs == sorted(seqs)


def test_drop_newest_keeps_the_oldest():
    producer = RecordingProducer(delay_s=0.02)
    rt = runtime(producer, queue_size=2, policy="drop_newest")
    rt.run(finite(30))
    assert producer.data()[0][1] == b"frame0"
    assert rt.counters.dropped["queue_full"] > 0


def test_broker_down_keeps_capturing_and_counts_drops():
    producer = RecordingProducer(fail=True)
    rt = runtime(producer)
    assert rt.run(finite(10)) == 0
    assert rt.counters.captured == 10
    assert rt.counters.dropped["broker"] + rt.counters.dropped["queue_full"] == 10
    assert producer.data() == []


def test_sensor_lost_is_reported_and_reopened():
    producer = RecordingProducer()
    opens = {"n": 0}

    def flaky():
        opens["n"] += 1
        if opens["n"] <= 2:
            yield Sample(1, b"before")
            raise SensorError("camera /dev/video0: no frame for 2 s")
        yield Sample(2, b"after")

    rt = runtime(producer, reopen_backoff=(0.01, 0.05))
    assert rt.run(flaky) == 0
    assert rt.counters.sensor_errors == 2 and rt.counters.reopens == 2
    assert [d[1] for d in producer.data()] == [b"before", b"before", b"after"]
    assert "no frame" in rt.counters.last_error


def test_empty_source_exits_nonzero():
    rt = runtime(RecordingProducer())
    assert rt.run(lambda: iter(())) == 1


def test_stop_ends_an_endless_source_promptly():
    producer = RecordingProducer()
    rt = runtime(producer)

    def endless():
        i = 0
        while True:
            time.sleep(0.005)
            i += 1
            yield Sample(i, b"x")

    timer = threading.Timer(0.3, rt.stop)
    timer.start()
    started = time.monotonic()
    assert rt.run(endless) == 0
    assert time.monotonic() - started < 3
    assert producer.flushed and producer.data()


def test_encode_failure_drops_one_frame_only():
    producer = RecordingProducer()
    calls = {"n": 0}

    def encode(payload):
        calls["n"] += 1
        if calls["n"] == 2:
            raise ValueError("bad frame")
        return payload, {"encoding": "raw"}

    rt = DriverRuntime(name="c", kind="camera", topic="t", producer=producer, encode=encode)
    rt.run(finite(4))
    assert len(producer.data()) == 3 and rt.counters.dropped["encode_error"] == 1


class SettlingProducer(RecordingProducer):
    """Takes every record and settles each delivery at once with the next outcome in turn."""

    def __init__(self, outcomes):
        super().__init__()
        self.outcomes = outcomes

    def send(self, topic, value, key=None, headers=None, partition=None, timestamp_ns=None):
        super().send(topic, value, key, headers, partition, timestamp_ns)
        future = Future()
        if topic != HEALTH_TOPIC:
            outcome = self.outcomes[(len(self.data()) - 1) % len(self.outcomes)]
            if outcome is None:
                future.set_result(None)
            else:
                future.set_exception(outcome)
        else:
            future.set_result(None)
        return future


def test_disk_full_and_unknown_deliveries_are_counted_apart():
    producer = SettlingProducer([None, DiskFullError("disk full"), DeliveryUnknownError("no ack in time"),
                                 BrokerUnavailableError("gone")])
    rt = runtime(producer, policy="block")
    assert rt.run(finite(8)) == 0
    c = rt.counters
    assert (c.acknowledged, c.dropped["disk_full"], c.unknown, c.dropped["broker"]) == (2, 2, 2, 2)
    assert rt.health()["unknown"] == 2 and rt.health()["dropped"]["disk_full"] == 2


def test_health_records_carry_continuity_gaps_and_clock_offset():
    producer = RecordingProducer()
    gaps = []
    rt = runtime(producer, queue_size=64, nominal_hz=10.0, on_gap=gaps.append)
    ms = 1_000_000
    stamps = [i * 100 * ms for i in range(20)] + [2_500 * ms + i * 100 * ms for i in range(5)]
    assert rt.run(lambda: (Sample(ts, b"x", clock_offset_ns=3 * ms) for ts in stamps)) == 0
    final = producer.health()[-1]
    assert final["continuity"]["gaps"] == 1 and final["continuity"]["last_gap"] == {"start_ns": 1_900 * ms,
                                                                                    "length_ms": 600.0}
    assert final["clock_offset_ms"] == 3.0 and final["continuity"]["rate_ratio"] == 1.0 and len(gaps) == 1
