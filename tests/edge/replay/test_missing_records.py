"""A window read from the broker while retention deletes under it: every record of the
window is either delivered once or reported missing (offset ranges), whether the consumer
resets its position by itself (``earliest``) or raises OffsetOutOfRangeError; a fake
broker makes the deletion land exactly between two fetches."""

from __future__ import annotations

import pytest

from broker import client
from broker.errors import OffsetOutOfRangeError
from broker.records import Record
from edge.replay.errors import SourceError
from edge.replay.missing import MissingRecords, describe_missing
from edge.replay.sources import BrokerSource, open_window
from edge.replay.timespec import Window

T0 = 1_795_000_000_000_000_000
MS = 1_000_000
TP = ("camera.front", 0)


class FakeLog:
    """1,200 records, 1 ms apart; ``delete_before(n)`` is retention; after ``delete_at``
    fetches it deletes up to ``delete_to`` (the slow reader's moment)."""

    def __init__(self, records: int = 1200, per_fetch: int = 100, delete_at: int | None = None, delete_to: int = 0):
        self.stamps = [T0 + i * MS for i in range(records)]
        self.start = 0
        self.per_fetch = per_fetch
        self.fetches = 0
        self.delete_at, self.delete_to = delete_at, delete_to

    def lookup(self, ts: int) -> int:
        return next((i for i in range(self.start, len(self.stamps)) if self.stamps[i] >= ts), len(self.stamps))

    def fetch(self, offset: int) -> list[Record]:
        self.fetches += 1
        if self.delete_at is not None and self.fetches > self.delete_at:
            self.start = max(self.start, self.delete_to)
        if offset < self.start:
            raise OffsetOutOfRangeError(f"offset {offset} below the log start {self.start}")
        return [Record(i, self.stamps[i], None, b"v%d" % i, {}, TP[0], TP[1])
                for i in range(offset, min(offset + self.per_fetch, len(self.stamps)))]


class FakeAdmin:
    def __init__(self, log: FakeLog):
        self.log = log

    def list_offset(self, topic, partition, spec="latest", timestamp=None):
        return {"earliest": self.log.start, "latest": len(self.log.stamps)}.get(spec) if spec != "timestamp" \
            else self.log.lookup(timestamp)

    def close(self):
        pass


class FakeConsumer:
    """The client consumer's public surface; ``reset`` is its policy on out-of-range."""

    reset = "earliest"

    def __init__(self, log: FakeLog):
        self.log = log
        self.positions = {}

    def assign(self, tps):
        self.positions = dict.fromkeys(tps, 0)

    def seek(self, topic, partition, offset):
        self.positions[(topic, partition)] = offset

    def position(self, topic, partition):
        return self.positions[(topic, partition)]

    def poll(self, timeout=1.0):
        position = self.positions[TP]
        try:
            records = self.log.fetch(position)
        except OffsetOutOfRangeError:
            if self.reset == "error":
                raise
            self.positions[TP] = self.log.start  # today's silent reset
            return []
        if records:
            self.positions[TP] = records[-1].offset + 1
        return records

    def close(self):
        pass


def read_window(monkeypatch, log: FakeLog, window: Window, reset: str = "earliest"):
    monkeypatch.setattr(client, "Admin", lambda endpoint, timeout_s=10.0: FakeAdmin(log))
    monkeypatch.setattr(FakeConsumer, "reset", reset)
    monkeypatch.setattr(client, "Consumer", lambda endpoint, **kw: FakeConsumer(log))
    source = BrokerSource("fake://")
    missing = MissingRecords()
    with open_window(source, [TP], window, missing=missing) as stream:
        offsets = [r.offset for r in stream]
    return offsets, missing


@pytest.mark.parametrize("reset", ["earliest", "error"])
def test_records_deleted_while_reading_are_reported_as_offset_ranges(monkeypatch, reset):
    log = FakeLog(delete_at=3, delete_to=900)  # 300 read, then retention passes the reader
    offsets, missing = read_window(monkeypatch, log, Window(T0, T0 + 1200 * MS), reset)
    assert offsets == list(range(300)) + list(range(900, 1200))
    assert missing.to_json() == {"records": 600, "before_log_start": [],
                                 "ranges": [{"topic": "camera.front", "partition": 0, "start": 300, "end": 900}]}
    assert len(offsets) + missing.count == 1200 and len(set(offsets)) == len(offsets)  # lost 0, duplicated 0
    assert "600 records" in describe_missing(missing.to_json()) and "camera.front:0:300-899" in describe_missing(
        missing.to_json())


def test_deletion_past_the_windows_end_reports_the_rest_of_the_window(monkeypatch):
    log = FakeLog(delete_at=2, delete_to=1100)
    offsets, missing = read_window(monkeypatch, log, Window(T0, T0 + 500 * MS))
    assert offsets == list(range(200))
    assert missing.ranges == {TP: [(200, 500)]}


def test_a_window_older_than_the_log_is_flagged_and_a_complete_one_is_not(monkeypatch):
    log = FakeLog()
    log.start = 400  # deleted before the export began
    offsets, missing = read_window(monkeypatch, log, Window(T0 + 100 * MS, T0 + 600 * MS))
    assert offsets == list(range(400, 600))
    assert missing.before_log_start == {TP: 400} and missing.count == 0 and missing
    assert "log starts at 400" in describe_missing(missing.to_json())
    offsets, missing = read_window(monkeypatch, log, Window(T0 + 100 * MS, T0 + 300 * MS))  # all deleted
    assert offsets == [] and missing.before_log_start == {TP: 400}
    offsets, missing = read_window(monkeypatch, FakeLog(), Window(T0 + 100 * MS, T0 + 600 * MS))
    assert offsets == list(range(100, 600)) and not missing


def test_an_offset_start_below_the_log_start_is_a_counted_gap(monkeypatch):
    log = FakeLog()
    log.start = 250
    offsets, missing = read_window(monkeypatch, log, Window(T0, T0 + 300 * MS, start_offsets={TP: 200}))
    assert offsets == list(range(250, 300))
    assert missing.ranges == {TP: [(200, 250)]}


def test_ranges_noted_twice_count_once():
    missing = MissingRecords()
    for start, end in [(10, 20), (15, 30), (10, 20), (40, 41)]:
        missing.note(TP, start, end)
    assert missing.ranges[TP] == [(10, 30), (40, 41)] and missing.count == 21


def test_out_of_range_that_is_not_retention_is_an_error_not_a_loop(monkeypatch):
    log = FakeLog()

    def truncated(offset):  # e.g. a torn tail cut below the reader: the log start did not move
        raise OffsetOutOfRangeError(f"offset {offset} is past the log end")

    monkeypatch.setattr(log, "fetch", truncated)
    with pytest.raises(SourceError, match="past the log end"):
        read_window(monkeypatch, log, Window(T0, T0 + 100 * MS), reset="error")
