"""``edge events`` against a real broker: create / list / show / delete, bad input named,
pins kept across a broker restart, and ``edge export --event`` exporting exactly the window."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from broker.client import Admin, Producer
from tests.support.broker_process import BrokerProcess

S = 10**9
FRAME = {"encoding": "bgr8", "width": "2", "height": "2"}


def edge(endpoint, *args, check=True):
    done = subprocess.run([sys.executable, "-m", "edge.cli", *args], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "EDGE_ENDPOINT": endpoint}, check=False)
    if check and done.returncode != 0:
        raise AssertionError(f"edge {' '.join(args)} -> {done.returncode}\n{done.stderr}")
    return done


def produce(endpoint, topic, stamps):
    with Producer(endpoint, linger_ms=0, acks="durable") as producer:
        for ts in stamps:
            producer.send(topic, bytes(12), headers=FRAME, timestamp_ns=ts)
        producer.flush(10)


@pytest.fixture
def broker(data_dir):
    with BrokerProcess(data_dir) as process:
        yield process


def test_create_list_show_delete_and_bad_input(broker):
    ep = broker.endpoint
    now = time.time_ns()
    produce(ep, "camera.front", [now - 5 * S + i for i in range(10)])
    produce(ep, "lidar.top", [now - 5 * S + i for i in range(4)])
    created = json.loads(edge(ep, "events", "create", "--label", "hard_brake",
                              "--before", "30s", "--after", "2s").stdout)
    assert {"id", "label", "start", "end", "state"} <= set(created)
    assert created["label"] == "hard_brake" and created["state"] == "recording"
    assert created["topics"] == ["camera.front", "lidar.top"]  # all recorded topics by default
    assert (created["end_ns"] - created["start_ns"]) == 32 * S
    assert created["pinned_bytes"] > 0
    listed = json.loads(edge(ep, "events", "list", "--format", "json").stdout)
    assert [e["id"] for e in listed["events"]] == [created["id"]] and listed["pinned_bytes"] == created["pinned_bytes"]
    assert created["id"] in edge(ep, "events", "list").stdout
    disk = json.loads(edge(ep, "status", "--json", "--interval", "0.1").stdout)["disk"]
    assert disk["events"] == 1 and disk["pinned_bytes"] == created["pinned_bytes"] and disk["pinned_deleted_bytes"] == 0
    shown = json.loads(edge(ep, "events", "show", created["id"]).stdout)
    assert shown["ranges"] == created["ranges"]

    unknown = edge(ep, "events", "create", "--topics", "camera.nope", check=False)
    assert unknown.returncode == 2 and "unknown topic 'camera.nope'" in unknown.stderr
    with Admin(ep) as admin:
        admin.configure_topic("lidar.top", {"retention_age": "1m"})
    too_long = edge(ep, "events", "create", "--topics", "lidar.top", "--before", "2m", check=False)
    assert too_long.returncode == 2 and "keeps only 60s" in too_long.stderr and "Traceback" not in too_long.stderr
    bad = edge(ep, "events", "create", "--before", "soon", check=False)
    assert bad.returncode != 0 and "invalid --before 'soon'" in bad.stderr
    missing = edge(ep, "events", "show", "ev-nope", check=False)
    assert missing.returncode == 2 and "no event with id 'ev-nope'" in missing.stderr

    assert edge(ep, "events", "delete", created["id"]).stdout.strip() == f"deleted {created['id']}"
    assert json.loads(edge(ep, "events", "list", "--format", "json").stdout)["events"] == []


@pytest.mark.parametrize("stop", ["stop", "kill"])
def test_pins_survive_a_broker_restart_and_a_power_cut(data_dir, stop):
    first = BrokerProcess(data_dir).start()
    try:
        produce(first.endpoint, "camera.front", [time.time_ns() - S + i for i in range(5)])
        created = json.loads(edge(first.endpoint, "events", "create", "--label", "x").stdout)
    finally:
        getattr(first, stop)()  # kill: SIGKILL right after the reply, nothing flushed at exit
    with BrokerProcess(data_dir) as second:
        shown = json.loads(edge(second.endpoint, "events", "show", created["id"]).stdout)
        assert shown["ranges"] == created["ranges"] and shown["label"] == "x"


def test_export_event_exports_exactly_its_window(broker, tmp_path):
    ep = broker.endpoint
    now = time.time_ns()
    produce(ep, "camera.front", [now - 60 * S + i for i in range(7)])  # before the window
    produce(ep, "camera.front", [now - 10 * S + i for i in range(11)])  # inside the before-window
    event = json.loads(edge(ep, "events", "create", "--topics", "camera.front", "--before", "30s",
                            "--after", "20s").stdout)
    produce(ep, "camera.front", [time.time_ns() + i for i in range(5)])  # the after-window, recording on
    produce(ep, "camera.front", [time.time_ns() + 60 * S + i for i in range(3)])  # past its end
    out = tmp_path / "event.mcap"
    done = edge(ep, "export", "--event", event["id"], "--format", "mcap", "--out", str(out), "--json", "--quiet")
    result = json.loads(done.stdout)
    assert result["records"] == 16 and result["written"] == 16 and out.is_file()
    wrong = edge(ep, "export", "--event", "ev-nope", "--out", str(tmp_path / "x.mcap"), check=False)
    assert wrong.returncode != 0 and "--event ev-nope: no event with id 'ev-nope'" in wrong.stderr


def test_event_state_complete_then_shipped_by_the_mirror_commits(broker):
    ep = broker.endpoint
    now = time.time_ns()
    produce(ep, "camera.front", [now - 40 * S + i * S for i in range(10)])  # stamps -40 s .. -31 s
    with Admin(ep) as admin:  # a window that ended long enough ago is closed at once
        admin.set_pin("ev-past", ["camera.front"], now - 38 * S, now - 34 * S - 1, label="past")
        admin.commit_offsets("_mirror", {("camera.front", 0): 5})
    event = json.loads(edge(ep, "events", "show", "ev-past").stdout)
    assert event["state"] == "complete" and event["ranges"][0]["first_offset"] == 2
    assert event["ranges"][0]["end_offset"] == 6 and (event["records"], event["shipped_records"]) == (4, 3)
    with Admin(ep) as admin:
        admin.commit_offsets("_mirror", {("camera.front", 0): 6})
    assert json.loads(edge(ep, "events", "show", "ev-past").stdout)["state"] == "shipped"


def test_a_gap_creates_an_event_reaching_back_over_it_once_per_interval(broker):
    from edge.events import EventsConfig, GapTrigger

    ep = broker.endpoint
    now = time.time_ns()
    produce(ep, "camera.front", [now - 20 * S + i * S for i in range(20)])
    trigger = GapTrigger(ep, "front", EventsConfig(before="5s", after="1s", on_gap=True, topics=["camera.front"]))
    trigger({"start_ns": now - 10 * S, "length_ms": 4000.0}).join(10)
    assert trigger({"start_ns": now - 2 * S, "length_ms": 900.0}) is None  # within trigger_min_interval
    [event] = json.loads(edge(ep, "events", "list", "--format", "json").stdout)["events"]
    assert event["id"] == trigger.created[0] and event["label"] == "gap:front"
    assert event["start_ns"] <= now - 15 * S and event["ranges"][0]["first_offset"] <= 5
    step = GapTrigger(ep, "front", EventsConfig(before="5s", after="1s", topics=["camera.front"]), kind="clock_step")
    step({"start_ns": now, "step_ms": 898.0}).join(10)  # a clock step: its own kind, its own rate limit
    labels = sorted(e["label"] for e in json.loads(edge(ep, "events", "list", "--format", "json").stdout)["events"])
    assert labels == ["clock_step:front", "gap:front"]


def test_a_record_with_the_trigger_header_creates_an_event(broker):
    import threading

    from edge.events import EventsConfig, watch_triggers

    ep = broker.endpoint
    produce(ep, "camera.front", [time.time_ns() - S + i for i in range(5)])
    with Producer(ep, linger_ms=0, acks="durable") as producer:  # before the watcher: not an event
        producer.send("vehicle.can", b"{}", headers={"event": "hard_brake"}).result(5)
    config = EventsConfig(before="5s", after="1s", topics=["camera.front"], trigger_min_interval="1h",
                          triggers=[{"topic": "vehicle.can", "header": "event=hard_brake", "label": "hard brake"},
                                    {"topic": "vehicle.imu", "header": "event=crash"}])
    stop = threading.Event()
    result = {}
    watcher = threading.Thread(target=lambda: result.update(created=watch_triggers(ep, config, stop, poll_s=0.1)))
    watcher.start()
    try:
        time.sleep(1.0)
        with Producer(ep, linger_ms=0, acks="durable") as producer:
            producer.send("vehicle.can", b"{}", headers={"event": "cruise"}).result(5)  # other value: no event
            for _ in range(2):  # the second within trigger_min_interval: no second event
                producer.send("vehicle.can", b"{}", headers={"event": "hard_brake"}).result(5)
            producer.send("vehicle.imu", b"{}", headers={"event": "crash"}).result(5)  # a topic created later
        deadline = time.monotonic() + 10
        while len(json.loads(edge(ep, "events", "list", "--format", "json").stdout)["events"]) < 2:
            assert time.monotonic() < deadline, "the triggers created no events"
            time.sleep(0.2)
    finally:
        stop.set()
        watcher.join(10)
    events = json.loads(edge(ep, "events", "list", "--format", "json").stdout)["events"]
    assert sorted(e["label"] for e in events) == ["crash", "hard brake"] and result["created"] == 2
    assert all(e["topics"] == ["camera.front"] for e in events)
