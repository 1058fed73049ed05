"""The producer's delivery handles and batching against a live broker: one Future per batch
shared by its records' RecordFutures, errors reaching every record of a failed batch, and a
partition whose pipeline is full growing its open batch instead of queueing tiny ones."""

from __future__ import annotations

import os
import signal
import time

import pytest

from broker.client import Admin, Consumer, Producer
from broker.client.delivery import RecordFuture
from broker.errors import BrokerError


def test_record_futures_give_each_record_its_offset_and_call_back_with_themselves(broker):
    with Admin(broker.endpoint) as admin:
        admin.create_topic("deliv")
    called: list = []
    with Producer(broker.endpoint, linger_ms=5) as producer:
        futures = [producer.send("deliv", b"v%d" % i) for i in range(300)]
        futures[7].add_done_callback(called.append)
        producer.flush(10)
    assert all(isinstance(f, RecordFuture) and f.done() and not f.cancelled() for f in futures)
    results = [f.result(0) for f in futures]
    assert [r.offset for r in results] == list(range(300))
    assert {(r.topic, r.partition, r.count) for r in results} == {("deliv", 0, 1)}
    assert called == [futures[7]]
    late: list = []
    futures[0].add_done_callback(late.append)  # on a settled future: called at once
    assert late == [futures[0]]


def test_a_failed_batch_fails_every_record_with_the_typed_error(broker):
    with Admin(broker.endpoint) as admin:
        admin.create_topic("one", partitions=1)
    with Producer(broker.endpoint, linger_ms=5) as producer:
        futures = [producer.send("one", b"x", partition=3) for _ in range(10)]
        producer.flush(10)  # settles them; failures are reported on the futures
    errors = [f.exception(0) for f in futures]
    assert all(isinstance(e, BrokerError) for e in errors)
    assert "partition" in str(errors[0])
    with pytest.raises(BrokerError):
        futures[-1].result(0)


def test_a_full_pipeline_grows_the_open_batch(broker):
    with Admin(broker.endpoint) as admin:
        admin.create_topic("busy")
    n = 200
    with Producer(broker.endpoint, linger_ms=0, max_in_flight=1) as producer:
        producer.send("busy", (0).to_bytes(4, "big")).result(10)  # connected, pipeline empty
        os.kill(broker.proc.pid, signal.SIGSTOP)  # a broker stalled (disk, CPU): no acks for a while
        try:
            futures = []
            for i in range(1, n):
                futures.append(producer.send("busy", i.to_bytes(4, "big")))
                time.sleep(0.001)  # records trickle in, as from a sensor, far apart for linger 0
        finally:
            os.kill(broker.proc.pid, signal.SIGCONT)
        producer.flush(30)
    batches = {id(f._batch) for f in futures}
    # without the rule each record would have been sealed alone after linger 0 and queued
    assert len(batches) <= 5, f"{len(batches)} batches for {n - 1} records"
    consumer = Consumer(broker.endpoint)
    consumer.assign([("busy", 0)])
    got: list[int] = []
    deadline = time.monotonic() + 10
    while len(got) < n and time.monotonic() < deadline:
        got += [int.from_bytes(bytes(r.value), "big") for r in consumer.poll(1)]
    consumer.close()
    assert got == list(range(n))


def test_close_while_the_io_thread_still_waits_leaves_its_fd_to_it(broker):
    with Admin(broker.endpoint) as admin:
        admin.create_topic("stuck")
    producer = Producer(broker.endpoint, linger_ms=0, request_timeout_s=1.0)
    producer.send("stuck", b"first").result(10)
    os.kill(broker.proc.pid, signal.SIGSTOP)  # no acknowledgement will come in time
    try:
        future = producer.send("stuck", b"second")
        started = time.monotonic()
        producer.close(timeout=0.2)  # returns while the I/O thread is still inside its poll
        assert time.monotonic() - started < 2
        with pytest.raises(BrokerError):
            future.result(5)
        fd = producer._sender.wake_fd
        deadline = time.monotonic() + 5
        while producer._sender.thread.is_alive() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not producer._sender.thread.is_alive()
        with pytest.raises(OSError):  # closed by the thread on its way out, exactly once
            os.fstat(fd)
    finally:
        os.kill(broker.proc.pid, signal.SIGCONT)


def test_a_partition_count_refresh_does_not_stall_send_on_a_hung_broker(broker):
    with Admin(broker.endpoint) as admin:
        admin.create_topic("meta")
    with Producer(broker.endpoint, linger_ms=0, request_timeout_s=1.0) as producer:
        producer.send("meta", b"x").result(10)  # caches the partition count (1)
        count, _ = producer._metadata._partition_counts["meta"]
        producer._metadata._partition_counts["meta"] = (count, time.monotonic() - 60)  # due for a refresh
        os.kill(broker.proc.pid, signal.SIGSTOP)
        try:
            started = time.monotonic()
            producer.send("meta", b"y")  # refresh fails fast, the cached count is used
            assert time.monotonic() - started < 0.6
            assert producer._metadata._partition_counts["meta"][0] == count
        finally:
            os.kill(broker.proc.pid, signal.SIGCONT)
