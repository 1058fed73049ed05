"""Readers when the log changes under them (issue 27), with a real broker process: broker
restarts mid-stream, retention deleting what a slow reader has not reached, deleted and
re-created topics, a torn tail recovered below a reader's position. Every test counts the
records lost, skipped and duplicated: 0 unless the consumer reported them."""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest

from broker.client import Admin, Consumer
from broker.errors import BrokerUnavailableError, LogTruncatedError, OffsetOutOfRangeError, UnknownTopicError
from tests.integration.readers_support import delete_by_retention, produce_numbers, read_numbers
from tests.support.broker_process import BrokerProcess

SMALL_SEGMENTS = {"segment_bytes": 2048}


def test_consumer_resumes_by_itself_after_a_broker_kill_mid_stream(broker):
    produce_numbers(broker.endpoint, "s", range(1000))
    consumer = Consumer(broker.endpoint, fetch_max_bytes=4096, timeout_s=3.0)
    consumer.assign([("s", 0)])
    got = read_numbers(consumer, 300)
    # the prefetch is in flight when the broker dies: its reply is lost
    broker.kill()
    started = time.monotonic()
    with pytest.raises(BrokerUnavailableError, match="poll again to resume"):
        consumer.poll(0.5)  # retried for the whole poll, then said
    # the dropped connection is noticed at once, not after the 3 s reply timeout
    assert time.monotonic() - started < 3.0  # without: 0.5 s poll + 0.5 s wait + 3 s timeout
    assert consumer.broker_lost_since is not None
    broker.start()
    produce_numbers(broker.endpoint, "s", range(1000, 1500))
    got += read_numbers(consumer, 1500 - len(got), timeout=15)
    assert got == list(range(1500)), f"lost {len(set(range(1500)) - set(got))}, duplicated {len(got) - len(set(got))}"
    assert consumer.broker_lost_since is None and consumer.stats["broker_outages"] >= 1
    assert consumer.stats["resets"] == 0  # an unclean restart with nothing cut is no reset
    consumer.close()


def test_a_slow_consumer_hears_of_records_retention_deleted(data_dir):
    resets = []
    with BrokerProcess(data_dir) as broker:
        with Admin(broker.endpoint) as admin:
            admin.create_topic("slow", config=SMALL_SEGMENTS)
        produce_numbers(broker.endpoint, "slow", range(2000))
        consumer = Consumer(broker.endpoint, fetch_max_bytes=1024, on_reset=resets.append)
        consumer.assign([("slow", 0)])
        got = read_numbers(consumer, 1100)[:1100]
        consumer.seek("slow", 0, 1100)  # the reader is at 1,100 when retention runs
        broker.stop()
        log_start = delete_by_retention(data_dir, "slow", keep_bytes=8192)
        assert 1100 < log_start < 2000
        broker.start()
        got += read_numbers(consumer, 2000 - log_start, timeout=15)
        consumer.close()
        with Admin(broker.endpoint) as admin:  # counted for /metrics too
            assert admin.metadata()["broker"]["stats"]["fetch_position_errors"] == {"offset_out_of_range": 1}
    assert got == list(range(1100)) + list(range(log_start, 2000))
    print(f"retention: reader at 1100, log start {log_start}: {log_start - 1100} skipped, reported")
    assert len(resets) == 1
    event = resets[0]
    assert (event.reason, event.from_offset, event.to_offset, event.skipped) == ("retention", 1100, log_start,
                                                                                  log_start - 1100)
    assert consumer.stats["records_skipped"] == log_start - 1100 and consumer.stats["resets"] == 1


def test_reset_policy_error_raises_with_the_range_and_moves_nothing(data_dir):
    with BrokerProcess(data_dir) as broker:
        with Admin(broker.endpoint) as admin:
            admin.create_topic("strict", config=SMALL_SEGMENTS)
        produce_numbers(broker.endpoint, "strict", range(1000))
        broker.stop()
        log_start = delete_by_retention(data_dir, "strict", keep_bytes=4096)
        broker.start()
        consumer = Consumer(broker.endpoint, auto_offset_reset="error")
        consumer.assign([("strict", 0)])
        consumer.seek("strict", 0, 5)
        with pytest.raises(OffsetOutOfRangeError) as caught:
            consumer.poll(2)
        reset = caught.value.reset
        assert (reset.from_offset, reset.to_offset, reset.skipped) == (5, log_start, log_start - 5)
        assert consumer.position("strict", 0) == 5 and consumer.stats["reset_refusals"] == 1
        consumer.seek("strict", 0, reset.to_offset)
        assert read_numbers(consumer, 1000 - log_start) == list(range(log_start, 1000))
        consumer.close()


def test_deleting_a_topic_answers_its_waiting_readers_and_others_keep_flowing(broker):
    produce_numbers(broker.endpoint, "live", range(10))
    produce_numbers(broker.endpoint, "doomed", range(10))
    consumer = Consumer(broker.endpoint, max_wait_ms=5000)
    consumer.assign([("live", 0), ("doomed", 0)])
    assert sorted(read_numbers(consumer, 20)) == sorted(list(range(10)) * 2)
    outcome: list = []

    def wait_for_news():
        started = time.monotonic()
        try:
            consumer.poll(20)
        except UnknownTopicError as exc:
            outcome.append((time.monotonic() - started, exc))

    waiter = threading.Thread(target=wait_for_news)
    waiter.start()
    time.sleep(0.5)  # the fetch is parked on both topics
    with Admin(broker.endpoint) as admin:
        admin.delete_topic("doomed")
    waiter.join(25)
    assert outcome, "the reader of a deleted topic heard nothing"
    seconds, error = outcome[0]
    assert seconds < 3 and "doomed" in error.message
    print(f"deleted topic: the parked reader heard it after {seconds:.2f}s")
    assert consumer.assignment() == [("live", 0)]
    produce_numbers(broker.endpoint, "live", range(10, 20))
    assert read_numbers(consumer, 10) == list(range(10, 20))
    consumer.close()


@pytest.mark.parametrize("new_records", [200, 100], ids=["longer", "shorter"])
def test_a_recreated_topic_is_detected_and_read_from_its_start(broker, new_records):
    resets = []
    produce_numbers(broker.endpoint, "again", range(150))
    consumer = Consumer(broker.endpoint, on_reset=resets.append)
    consumer.assign([("again", 0)])
    assert read_numbers(consumer, 150) == list(range(150))
    assert consumer.poll(0.3) == []  # between polls, no fetch in flight: it hears of nothing until the next
    with Admin(broker.endpoint) as admin:
        old_id = admin.describe_topic("again")["id"]
        admin.delete_topic("again")
        admin.create_topic("again")
        new_id = admin.describe_topic("again")["id"]
    assert old_id != new_id
    produce_numbers(broker.endpoint, "again", range(1000, 1000 + new_records))
    assert read_numbers(consumer, new_records) == list(range(1000, 1000 + new_records))  # none of the new one skipped
    assert [(r.reason, r.from_offset, r.to_offset, r.skipped) for r in resets] == [("recreated", 150, 0, 0)]
    consumer.close()


def _tear_tail(data_dir, topic: str, keep_fraction: float) -> None:
    """Cut the partition's active segment mid-file (a torn tail) and drop the recovery
    checkpoint so recovery scans it all, as after a power cut."""
    directory = data_dir / topic / "0"
    log_path = sorted(directory.glob("*.log"))[-1]
    with open(log_path, "r+b") as f:
        f.truncate(int(os.path.getsize(log_path) * keep_fraction))
    (data_dir / "recovery-points.json").unlink(missing_ok=True)


@pytest.mark.parametrize("policy", ["earliest", "error"])
def test_a_tail_taken_back_by_recovery_below_the_readers_position_is_detected(data_dir, policy):
    resets = []
    with BrokerProcess(data_dir) as broker:
        produce_numbers(broker.endpoint, "torn", range(200))
        consumer = Consumer(broker.endpoint, on_reset=resets.append, auto_offset_reset=policy, timeout_s=3.0)
        consumer.assign([("torn", 0)])
        assert read_numbers(consumer, 200) == list(range(200))
        assert consumer.poll(0.2) == []  # at the end, with the partition's log epoch
        broker.kill()
        _tear_tail(data_dir, "torn", 0.5)
        broker.start()
        with Admin(broker.endpoint) as admin:
            recovered_end = admin.describe_topic("torn")["partitions"][0]["next_offset"]
        assert 0 < recovered_end < 200
        # new records take the recovered offsets and go past the reader's position
        produce_numbers(broker.endpoint, "torn", range(1000, 1150))
        if policy == "error":
            with pytest.raises(LogTruncatedError) as caught:
                read_numbers(consumer, 150)
            assert (caught.value.reset.from_offset, caught.value.reset.to_offset) == (200, recovered_end)
            consumer.seek("torn", 0, caught.value.reset.to_offset)
        got = read_numbers(consumer, 150)
        consumer.close()
    assert got == list(range(1000, 1150)), "records written at the recovered offsets were skipped"
    print(f"torn tail: reader at 200, recovered end {recovered_end}: {200 - recovered_end} taken back, reported")
    if policy == "earliest":
        assert consumer.stats["records_taken_back"] == 200 - recovered_end
        assert [(r.reason, r.from_offset, r.to_offset, r.taken_back) for r in resets] == [
            ("truncated", 200, recovered_end, 200 - recovered_end)]


def test_a_seek_after_recovery_is_not_mistaken_for_a_truncation(data_dir):
    resets = []
    with BrokerProcess(data_dir) as broker:
        produce_numbers(broker.endpoint, "fresh", range(100))
        consumer = Consumer(broker.endpoint, on_reset=resets.append, timeout_s=3.0)
        consumer.assign([("fresh", 0)])
        assert read_numbers(consumer, 100) == list(range(100))
        broker.kill()
        _tear_tail(data_dir, "fresh", 0.5)
        broker.start()
        produce_numbers(broker.endpoint, "fresh", range(1000, 1100))
        consumer.seek_to_end()  # a position from the recovered log, past the old epoch's end
        end = consumer.position("fresh", 0)
        produce_numbers(broker.endpoint, "fresh", range(2000, 2010))
        assert read_numbers(consumer, 10) == list(range(2000, 2010))
        consumer.close()
    assert end > 100 and resets == []


def test_a_fetch_reply_lost_to_a_hung_broker_does_not_strand_the_consumer(broker):
    produce_numbers(broker.endpoint, "hung", range(500))
    consumer = Consumer(broker.endpoint, fetch_max_bytes=4096, timeout_s=1.0)
    consumer.assign([("hung", 0)])
    got = read_numbers(consumer, 100)[:100]
    consumer.seek("hung", 0, 100)  # drops the prefetch: the next fetch goes out while the broker hangs
    os.kill(broker.proc.pid, signal.SIGSTOP)  # connection open, nothing answers: the prefetch times out
    try:
        with pytest.raises(BrokerUnavailableError):
            consumer.poll(1.5)
    finally:
        os.kill(broker.proc.pid, signal.SIGCONT)
    got += read_numbers(consumer, 500 - len(got))
    assert got == list(range(500)), f"lost {len(set(range(500)) - set(got))}, duplicated {len(got) - len(set(got))}"
    consumer.close()
