"""Events' pins: kept by size and age retention and the disk guard, deleted (loudly) only at
the critical level, durable across restarts; bad pin requests are refused by name."""

from __future__ import annotations

import time

import pytest

from broker.errors import InvalidRequestError, UnknownTopicError
from broker.storage import DiskGuard, Storage
from broker.storage.layout import PINS_FILE
from broker.topic_config import TopicConfig

from .helpers import make_batch, read_all, values_of
from .test_retention import free_after_deletions

S = 10**9
MS = 10**6
# make_batch stamps offset N with capture time N ms: the window [40 ms, 79 ms] is offsets 40..79
START, END = 40 * MS, 79 * MS
NOW = 10 * S  # past END + the close grace: the pin is closed at once


def fill(storage, topic, batches=40, append_time_ns=None, **config):
    storage.create_topic(topic, TopicConfig(segment_bytes=2_000, **config))
    log = storage.log(topic, 0)
    for i in range(batches):
        log.append(make_batch(i * 4, 4, size=100), append_time_ns=append_time_ns)
    return log


def test_pin_survives_size_retention_until_the_event_is_deleted(data_dir):
    storage = Storage(data_dir)
    log = fill(storage, "t", retention_bytes=0)
    pin = storage.set_pin("ev1", "brake", ["t"], START, END, now_ns=NOW)
    assert pin.closed and [(r.first, r.next) for r in pin.ranges] == [(40, 80)]
    deleted = storage.enforce_retention(now_ns=NOW)
    assert deleted and not any(d.pinned for d in deleted)
    assert log.log_start_offset <= 40
    assert set(range(40, 80)) <= set(values_of(read_all(log)))
    report = storage.pins_report()
    assert report["pins"][0]["pinned_bytes"] > 0 and report["pinned_bytes"] == report["pins"][0]["pinned_bytes"]
    storage.clear_pin("ev1")
    storage.enforce_retention(now_ns=NOW)
    assert log.log_start_offset > 79 and storage.pins_report()["pinned_bytes"] == 0


def test_pin_survives_age_retention(data_dir):
    storage = Storage(data_dir)
    now = time.time_ns()
    log = fill(storage, "t", retention_age="1h", append_time_ns=now - 7_200 * S)
    storage.set_pin("ev1", "", ["t"], START, END, now_ns=NOW)  # capture times of 1970: the host clock then
    storage.enforce_retention(now_ns=now)
    assert log.log_start_offset <= 40 and set(range(40, 80)) <= set(values_of(read_all(log)))


def test_open_pin_keeps_what_the_after_window_records_then_closes(data_dir):
    storage = Storage(data_dir)
    log = fill(storage, "t", batches=10, retention_bytes=0)  # offsets 0..39 (0..39 ms)
    pin = storage.set_pin("ev1", "", ["t"], 20 * MS, 100 * MS, now_ns=50 * MS)
    assert not pin.closed and [(r.first, r.next) for r in pin.ranges] == [(20, None)]
    for i in range(10, 40):  # the after-window records, and more after it
        log.append(make_batch(i * 4, 4, size=100))
    storage.enforce_retention(now_ns=60 * MS)  # still recording: everything from 20 on is kept
    assert log.log_start_offset <= 20 and log.segments[0].next_offset > 20
    storage.enforce_retention(now_ns=100 * MS + 6 * S)  # closed at the first record past 100 ms
    assert [(r.first, r.next) for r in storage.pins.get("ev1").ranges] == [(20, 101)]
    assert log.log_start_offset <= 20


def test_pin_survives_a_restart_and_power_cut(data_dir):
    storage = Storage(data_dir)
    fill(storage, "t", retention_bytes=0)
    storage.set_pin("ev1", "crash", ["t"], START, END, now_ns=NOW)
    # no close: the pin was written (atomically) before set_pin returned
    reopened = Storage(data_dir)
    assert reopened.pins.get("ev1").label == "crash"
    reopened.enforce_retention(now_ns=NOW)
    log = reopened.log("t", 0)
    assert log.log_start_offset <= 40 and set(range(40, 80)) <= set(values_of(read_all(log)))
    reopened.close()


def test_disk_guard_below_min_free_keeps_pins(data_dir, monkeypatch, caplog):
    storage = Storage(data_dir, disk_guard=DiskGuard(min_free="10MB", critical_free="1MB"))
    pinned = fill(storage, "camera", priority=1)
    other = fill(storage, "telemetry", priority=9)
    storage.set_pin("ev1", "", ["camera"], 0, END, now_ns=NOW)  # camera's head segment is pinned
    free_after_deletions(monkeypatch, 1000, short=5_000_000, enough=20_000_000)
    deleted = storage.enforce_retention(now_ns=NOW)
    assert deleted and {d.topic for d in deleted} == {"telemetry"}  # the low-priority topic is spared
    assert pinned.log_start_offset == 0 and len(other.segments) == 1
    assert "event=disk_guard_stuck" in caplog.text


def test_disk_guard_critical_deletes_pins_last_and_loudly(data_dir, monkeypatch, caplog):
    caplog.set_level("INFO", logger="broker.retention")
    storage = Storage(data_dir, disk_guard=DiskGuard(min_free="10MB", critical_free="8MB"))
    log = fill(storage, "camera")
    fill(storage, "telemetry", batches=8)
    storage.set_pin("ev1", "", ["camera"], 0, END, now_ns=NOW)
    free_after_deletions(monkeypatch, 6, short=1_000_000, enough=50_000_000)
    deleted = storage.enforce_retention(now_ns=NOW)
    # the unpinned topic goes first (all but its active segment), then the event's records
    topics = [d.topic for d in deleted]
    assert topics[: topics.index("camera")] == ["telemetry"] * topics.index("camera")
    assert all(d.pinned for d in deleted if d.topic == "camera") and log.log_start_offset > 0
    lost = [d for d in deleted if d.pinned]
    assert storage.pinned_deleted_bytes == sum(d.size_bytes for d in lost) > 0
    assert caplog.text.count("event=pinned_deleted") == len(lost)
    report = storage.pins_report()["pins"][0]
    assert [x[:4] for x in report["lost"]] == [["camera", 0, d.base_offset, d.next_offset] for d in lost]
    assert Storage(data_dir).pins.get("ev1").lost == report["lost"]  # the loss is durable too


@pytest.mark.parametrize("topics,start,error,needle", [
    (["nope"], START, UnknownTopicError, "nope"),
    ([], START, InvalidRequestError, "no topics"),
    (["t"], NOW - 3 * 3600 * S, InvalidRequestError, "keeps only 3600s"),
])
def test_bad_pin_requests_are_refused_by_name(data_dir, topics, start, error, needle):
    storage = Storage(data_dir)
    fill(storage, "t", batches=2, retention_age="1h")
    with pytest.raises(error, match=needle):
        storage.set_pin("ev1", "", topics, start, NOW, now_ns=NOW)
    assert len(storage.pins) == 0


def test_duplicate_and_unknown_ids_are_refused(data_dir):
    storage = Storage(data_dir)
    fill(storage, "t", batches=2)
    storage.set_pin("ev1", "", ["t"], START, END, now_ns=NOW)
    with pytest.raises(InvalidRequestError, match="exists already"):
        storage.set_pin("ev1", "", ["t"], START, END, now_ns=NOW)
    with pytest.raises(InvalidRequestError, match="no event"):
        storage.clear_pin("ev2")
    with pytest.raises(InvalidRequestError, match="invalid event id"):
        storage.set_pin("../x", "", ["t"], START, END, now_ns=NOW)


def test_overlapping_pins_stack(data_dir):
    storage = Storage(data_dir)
    log = fill(storage, "t", retention_bytes=0)
    storage.set_pin("a", "", ["t"], START, END, now_ns=NOW)
    storage.set_pin("b", "", ["t"], 60 * MS, 120 * MS, now_ns=NOW)
    storage.clear_pin("b")  # deleting one event never releases the other's records
    storage.enforce_retention(now_ns=NOW)
    assert log.log_start_offset <= 40 and set(range(40, 80)) <= set(values_of(read_all(log)))


def test_unreadable_pins_file_is_kept_aside_and_reported(data_dir, caplog):
    Storage(data_dir).close()
    (data_dir / PINS_FILE).write_text("{not json")
    storage = Storage(data_dir)
    assert len(storage.pins) == 0 and "event=pins_unreadable" in caplog.text
    assert list(data_dir.glob(f"{PINS_FILE}.unreadable-*"))


def test_pins_file_name_is_not_a_topic_name(data_dir):
    from broker.errors import InvalidTopicError
    with pytest.raises(InvalidTopicError):
        Storage(data_dir).create_topic(PINS_FILE)

