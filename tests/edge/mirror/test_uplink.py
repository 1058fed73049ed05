"""The uplink plan: complete events' partitions first, then priority; per-topic caps that pass
a capped topic over (others ship) and hold the rate; sampled-out records cost nothing."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from edge.config import ConfigError, parse_config
from edge.mirror.bandwidth import TokenBucket
from edge.mirror.config import MirrorConfig
from edge.mirror.uplink import UplinkPlan


def config(**extra) -> MirrorConfig:
    return MirrorConfig(bootstrap_servers="k:9092", topics=["*"], **extra)


def rec(topic, offset, size):
    return SimpleNamespace(topic=topic, offset=offset, value=b"x" * size)


def test_complete_unshipped_events_go_first_then_priority():
    plan = UplinkPlan(config(priorities={"telemetry.*": 9, "camera.*": 1}))
    parts = [("camera.front", 0), ("camera.rear", 0), ("telemetry.can", 0), ("lidar.top", 0)]
    assert plan.order(parts)[0] == ("telemetry.can", 0)
    pins = [{"closed": True, "ranges": [["camera.rear", 0, 100, 200]]},
            {"closed": False, "ranges": [["lidar.top", 0, 5, None]]},  # still recording: no boost
            {"closed": True, "ranges": [["camera.front", 0, 0, 50]]}]  # shipped already
    plan.note_events(pins, {("camera.front", 0): 50, ("camera.rear", 0): 120})
    assert plan.event_partitions == {("camera.rear", 0)}
    assert plan.order(parts) == [("camera.rear", 0), ("telemetry.can", 0), ("camera.front", 0), ("lidar.top", 0)]
    plan.note_events(pins, {("camera.front", 0): 50, ("camera.rear", 0): 200})  # now shipped
    assert plan.order(parts)[0] == ("telemetry.can", 0)
    off = UplinkPlan(config(events_first=False))
    off.note_events(pins, {})
    assert off.event_partitions == set()


def test_a_topic_cap_holds_its_rate_and_passes_the_topic_over():
    now = [0.0]
    plan = UplinkPlan(config(topic_bandwidth={"camera.*": "100kB"}, sampling={"camera.rear": 2}),
                      clock=lambda: now[0])
    shipped = 0
    for step in range(1000):  # 10 s in 10 ms steps, 50 kB records offered as fast as allowed
        now[0] = step * 0.01
        while plan.admits(rec("camera.front", shipped, 50_000)):
            shipped += 1
        assert plan.admits(rec("telemetry.can", step, 10_000))  # uncapped: never passed over
    rate = shipped * 50_000 / 10  # bytes per second over the 10 s (the first second's burst included)
    assert 90_000 <= rate <= 110_000, rate  # the 100 kB/s cap within ±10 %
    assert plan.capped >= 990
    assert plan.admits(rec("camera.rear", 1, 10**9))  # sampled out: free, even though over any cap


def test_try_acquire_never_waits_and_lets_a_record_larger_than_the_bucket_through_when_full():
    now = [0.0]
    bucket = TokenBucket(1000, clock=lambda: now[0], sleep=lambda s: pytest.fail("must not sleep"))
    assert bucket.try_acquire(600) and not bucket.try_acquire(600)
    now[0] = 1.0
    assert bucket.try_acquire(5000)  # full bucket: the big one goes, the debt is paid back by time
    now[0] = 5.0
    assert not bucket.try_acquire(1)
    now[0] = 5.01
    assert bucket.try_acquire(1)


def test_bad_topic_caps_are_named(tmp_path):
    with pytest.raises(Exception, match="topic_bandwidth"):
        config(topic_bandwidth={"camera.*": "0"})
    with pytest.raises(ConfigError, match=r"mirror.topic_bandwidth"):
        parse_config({"mirror": {"bootstrap_servers": "k:9092", "topics": ["*"],
                                 "topic_bandwidth": {"camera.*": "fast"}}}, tmp_path / "edge.toml")
