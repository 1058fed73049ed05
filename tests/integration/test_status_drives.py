"""Drives (start/stop records, listing, windows) and status (rates, horizon, health, lag)."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from broker.client import Admin, Consumer, Producer
from broker.errors import BrokerError
from edge.drives import DRIVES_TOPIC, list_drives, record_event, resolve_drive
from edge.status import StatusTracker, format_status


def test_drives_are_listed_with_windows_and_topics(broker):
    ep = broker.endpoint
    record_event(ep, "start", "drive-a", reason="test", time_ns=1_000)
    with Producer(ep, linger_ms=0) as producer:
        for i in range(5):
            producer.send("camera.front", b"x" * 100, timestamp_ns=2_000 + i)
        producer.flush(5)
    record_event(ep, "stop", "drive-a", time_ns=10_000)
    record_event(ep, "start", "drive-b", time_ns=20_000)  # power cut: never stopped
    record_event(ep, "start", "drive-c", time_ns=30_000)
    drives = list_drives(ep)
    assert [d.name for d in drives] == ["drive-a", "drive-b", "drive-c"]
    a, b, c = drives
    assert (a.start_ns, a.end_ns, a.open, a.interrupted) == (1_000, 10_000, False, False)
    assert a.topics["camera.front"]["records"] == 5 and a.topics["camera.front"]["bytes"] > 500
    assert (b.end_ns, b.interrupted) == (30_000, True)
    assert c.open and c.end_ns is None
    assert resolve_drive(ep, "drive-a") == (1_000, 10_000)
    with pytest.raises(BrokerError, match="no drive named 'nope'"):
        resolve_drive(ep, "nope")


def test_garbage_on_the_drives_topic_is_ignored(broker):
    with Producer(broker.endpoint, linger_ms=0) as producer:
        producer.send(DRIVES_TOPIC, b"not json").result(5)
        producer.send(DRIVES_TOPIC, json.dumps({"event": "start"}).encode()).result(5)
    record_event(broker.endpoint, "start", "ok", time_ns=5)
    assert [d.name for d in list_drives(broker.endpoint)] == ["ok"]


def test_status_rates_health_horizon_and_lag(broker):
    ep = broker.endpoint
    tracker = StatusTracker(ep, min_free_bytes=0)
    with Producer(ep, linger_ms=0) as producer:
        producer.send("_health", json.dumps({"state": "running", "captured": 7, "rate_hz": 10.0,
                                             "dropped": {"queue_full": 1}}).encode(), key=b"front").result(5)
        producer.send("_health", json.dumps({"link": "up", "lag_records": 3, "time_ns": time.time_ns()}).encode(),
                      key=b"mirror").result(5)
        first = tracker.sample()
        for _ in range(20):
            producer.send("camera.front", b"y" * 10_000)
        producer.flush(5)
    consumer = Consumer(ep, group="viewers")
    consumer.assign([("camera.front", 0)])
    consumer.commit({("camera.front", 0): 5})
    consumer.close()
    time.sleep(0.2)
    status = tracker.sample()
    front = status["topics"]["camera.front"]
    assert first["topics"].get("camera.front") is None
    assert front["records"] == 20 and front["records_per_s"] > 0 and front["bytes_per_s"] > 100_000
    assert status["drivers"]["front"]["captured"] == 7
    assert status["mirror"]["link"] == "up" and status["mirror"]["condition"] == "up"
    assert status["groups"]["viewers"]["lag"] == 15
    assert status["disk"]["retention_horizon_h"] > 0
    text = format_status(status)
    assert "camera.front" in text and "front" in text and "lag 15 records" in text and "mirror: up" in text


def test_a_far_future_stamp_neither_ends_a_drive_nor_hides_the_next(broker, tmp_path):
    """One record stamped 10 years ahead (a GNSS glitch): on main drive A showed 20 of its
    50 records, drive B none, and `edge export --drive B` said it held no records."""
    ep = broker.endpoint
    ms, year = 1_000_000, 365 * 24 * 3600 * 10**9
    now = time.time_ns()
    frame = {"encoding": "bgr8", "width": "2", "height": "2"}
    with Producer(ep, linger_ms=0, acks="durable") as producer:
        for name, begin in (("drive-a", now), ("drive-b", now + 200 * ms)):
            record_event(ep, "start", name, time_ns=begin)
            for i in range(50):
                ts = now + 10 * year if (name, i) == ("drive-a", 20) else begin + (i + 1) * ms
                producer.send("camera.front", bytes(12), headers=frame, timestamp_ns=ts)
            producer.flush(10)
            record_event(ep, "stop", name, time_ns=begin + 100 * ms)
    a, b = list_drives(ep)
    assert (a.name, a.topics["camera.front"]["records"]) == ("drive-a", 50)
    assert (b.name, b.topics.get("camera.front", {}).get("records")) == ("drive-b", 50)
    with Admin(ep) as admin:
        assert admin.describe_topic("camera.front")["partitions"][0]["future_records"] == 1
    done = subprocess.run([sys.executable, "-m", "edge.cli", "export", "--topics", "camera.front", "--drive", "drive-b",
                           "--out", str(tmp_path / "b.mcap"), "--json", "--quiet", "--endpoint", ep],
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["records"] == 50 and result["written"] == 50 and result["missing"]["records"] == 0


def test_drives_are_delimited_by_offsets_not_by_sensor_clocks(broker, tmp_path):
    """A camera whose clock is two days behind (no GNSS fix yet) and one that jumps back
    mid-drive: by capture time drive A would hold none of its records and drive B some of
    A's; by the offsets in the drive records each holds exactly its own 40."""
    ep = broker.endpoint
    day = 24 * 3600 * 10**9
    frame = {"encoding": "bgr8", "width": "2", "height": "2"}
    with Producer(ep, linger_ms=0, acks="durable") as producer:
        for name, skew in (("drive-a", -2 * day), ("drive-b", 0)):
            record_event(ep, "start", name)
            for i in range(40):
                producer.send("camera.front", bytes(12), headers={**frame, "drive": name},
                              timestamp_ns=time.time_ns() + skew - (10**9 if i == 20 else 0))
            producer.flush(10)
            record_event(ep, "stop", name)
    a, b = list_drives(ep)
    assert a.topics["camera.front"]["records"] == 40 and b.topics["camera.front"]["records"] == 40
    assert a.start_offsets == {} and a.end_offsets == {"camera.front": [40]} and b.start_offsets == a.end_offsets
    for name in ("drive-a", "drive-b"):
        out = tmp_path / name
        done = subprocess.run([sys.executable, "-m", "edge.cli", "export", "--topics", "camera.front", "--drive", name,
                               "--out", str(out), "--json", "--quiet", "--endpoint", ep],
                              capture_output=True, text=True, timeout=60, check=False)
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout)["records"] == 40
