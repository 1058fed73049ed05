"""The broker as a real process: round trips over ipc and tcp, long-poll, time lookups,
durable acks, restarts, SIGKILL under a live producer, groups with a killed member."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import threading
import time

import pytest

from broker.client import Admin, Consumer, Producer
from broker.errors import BrokerError, BrokerUnavailableError, OffsetOutOfRangeError, UnknownTopicError
from tests.support.broker_process import BrokerProcess, free_tcp_port


def produce_values(endpoint, topic, values, **kw):
    with Producer(endpoint, linger_ms=1, **kw) as producer:
        futures = [producer.send(topic, v, headers={"i": str(i)}, timestamp_ns=1_000_000 + i)
                   for i, v in enumerate(values)]
        producer.flush(10)
        return [f.result().offset for f in futures]


def consume_all(endpoint, topic, partition=0, expected=None, timeout=5.0):
    consumer = Consumer(endpoint)
    consumer.assign([(topic, partition)])
    out = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and (expected is None or len(out) < expected):
        out.extend(consumer.poll(0.2))
        if expected is None and not out:
            continue
    consumer.close()
    return out


@pytest.mark.parametrize("transport", ["ipc", "tcp"])
def test_round_trip(data_dir, transport):
    endpoint = None if transport == "ipc" else f"tcp://127.0.0.1:{free_tcp_port()}"
    with BrokerProcess(data_dir, endpoint) as broker:
        values = [os.urandom(n) for n in (0, 1, 100, 70_000, 2_000_000)]
        assert produce_values(broker.endpoint, "round", values) == [0, 1, 2, 3, 4]
        records = consume_all(broker.endpoint, "round", expected=5)
        assert [bytes(r.value) for r in records] == values
        assert [r.headers["i"] for r in records] == [b"0", b"1", b"2", b"3", b"4"]
        assert [r.timestamp for r in records] == [1_000_000 + i for i in range(5)]
        if transport == "ipc":
            mode = stat.S_IMODE(os.stat(broker.endpoint[len("ipc://"):]).st_mode)
            assert mode == 0o660


def test_long_poll_fetch_wakes_on_produce(broker):
    with Admin(broker.endpoint) as admin:
        admin.create_topic("lp")
    consumer = Consumer(broker.endpoint, max_wait_ms=5000)
    consumer.assign([("lp", 0)])
    got = []
    thread = threading.Thread(target=lambda: got.extend(consumer.poll(8)))
    started = time.monotonic()
    thread.start()
    time.sleep(0.5)
    produce_values(broker.endpoint, "lp", [b"wake"])
    thread.join(10)
    assert [bytes(r.value) for r in got] == [b"wake"]
    assert time.monotonic() - started < 4
    consumer.close()


def test_offsets_by_time_and_errors(broker):
    produce_values(broker.endpoint, "times", [b"a", b"b", b"c"])
    with Admin(broker.endpoint) as admin:
        assert admin.list_offset("times", 0, "earliest") == 0
        assert admin.list_offset("times", 0, "latest") == 3
        # the three records went in one batch: the record that reaches the time is found (Kafka)
        assert admin.list_offset("times", 0, "timestamp", 1_000_001) == 1
        assert admin.list_offset("times", 0, "timestamp", 10**18) == 3
        with pytest.raises(UnknownTopicError):
            admin.list_offset("nope", 0, "latest")
    consumer = Consumer(broker.endpoint)
    consumer.assign([("times", 0)])
    consumer.seek_to_time(1_000_001)
    assert [bytes(r.value) for r in consumer.poll(2)] == [b"b", b"c"]
    consumer.close()


def test_poll_values_reads_in_bulk_what_poll_reads(broker):
    with Admin(broker.endpoint) as admin:
        admin.create_topic("bulk", partitions=2)
    values = [i.to_bytes(4, "little") * (i % 7) for i in range(20_000)]
    with Producer(broker.endpoint, linger_ms=1) as producer:
        for p in (0, 1):
            producer.send_many("bulk", values, timestamps=list(range(1_000, 21_000)), partition=p)
        producer.flush(10)
    consumer = Consumer(broker.endpoint, fetch_max_bytes=64 * 1024)
    consumer.assign([("bulk", 0), ("bulk", 1)])
    consumer.seek("bulk", 1, 5)
    got: dict[int, list] = {0: [], 1: []}
    offsets: dict[int, list] = {0: [], 1: []}
    deadline = time.monotonic() + 10
    while sum(map(len, got.values())) < 2 * 20_000 - 5 and time.monotonic() < deadline:
        for chunk in consumer.poll_values(0.5):
            got[chunk.partition] += [bytes(v) for v in chunk.values()]
            offsets[chunk.partition] += chunk.offsets.tolist()
    assert got[0] == values and got[1] == values[5:]
    assert offsets[0] == list(range(20_000)) and offsets[1] == list(range(5, 20_000))
    consumer.seek_to_time(20_990, [("bulk", 0)])
    tail = [c for c in consumer.poll_values(2) if c.partition == 0]
    assert [int(t) for c in tail for t in c.timestamps] == list(range(20_990, 21_000))
    consumer.close()


@pytest.mark.parametrize("bulk", [False, True], ids=["poll", "poll_values"])
def test_a_backlog_on_one_partition_does_not_starve_the_others(broker, bulk):
    # the broker fills fetch_max_bytes in the order the fetch lists partitions: the consumer
    # must move partitions that returned data to the back, or "slow" waits for "busy" to drain
    with Admin(broker.endpoint) as admin:
        admin.create_topic("busy", partitions=1)
        admin.create_topic("slow", partitions=1)
    with Producer(broker.endpoint, linger_ms=1) as producer:
        producer.send_many("busy", [bytes(64 * 1024)] * 64, partition=0)  # 4 MiB backlog
        producer.send("slow", b"late", partition=0)
        producer.flush(10)
    consumer = Consumer(broker.endpoint, fetch_max_bytes=256 * 1024)  # 16 fetches to drain "busy"
    consumer.assign([("busy", 0), ("slow", 0)])
    polls_until_slow = None
    for n in range(1, 20):
        got = consumer.poll_values(2) if bulk else consumer.poll(2)
        if any(c.topic == "slow" for c in got):
            polls_until_slow = n
            break
    consumer.close()
    assert polls_until_slow is not None and polls_until_slow <= 3, polls_until_slow


def test_durable_acks_and_acks_none(data_dir):
    with BrokerProcess(data_dir) as broker:
        with Admin(broker.endpoint) as admin:
            admin.create_topic("d", config={"flush": "interval", "flush_interval": "100ms"})
        with Producer(broker.endpoint, acks="durable", linger_ms=0) as producer:
            result = producer.send("d", b"x").result(5)
            assert result.durable_offset >= result.offset + 1
        with Producer(broker.endpoint, acks="none") as producer:
            assert producer.send("d", b"y").result(5).offset is None
        records = consume_all(broker.endpoint, "d", expected=2)
        assert [bytes(r.value) for r in records] == [b"x", b"y"]


def test_committed_offsets_and_data_survive_restart(data_dir):
    broker = BrokerProcess(data_dir).start()
    produce_values(broker.endpoint, "keep", [b"1", b"2", b"3"])
    consumer = Consumer(broker.endpoint, group="g")
    consumer.assign([("keep", 0)])
    assert len(consumer.poll(2)) == 3
    consumer.commit({("keep", 0): 2})
    consumer.close()
    assert broker.stop() == 0
    broker.start()
    try:
        consumer = Consumer(broker.endpoint, group="g")
        consumer.assign([("keep", 0)])
        assert [bytes(r.value) for r in consumer.poll(2)] == [b"3"]
        consumer.close()
        assert produce_values(broker.endpoint, "keep", [b"4"]) == [3]
    finally:
        broker.stop()


def test_producer_rides_through_broker_sigkill(data_dir):
    """Acknowledged-durable records are all there, in order, once, after a SIGKILL."""
    broker = BrokerProcess(data_dir).start()
    with Admin(broker.endpoint) as admin:
        admin.create_topic("k", config={"flush": "batch"})
    acked: list[int] = []
    errors = []
    stop = threading.Event()

    def produce():
        with Producer(broker.endpoint, acks="durable", linger_ms=1, request_timeout_s=1.0,
                      on_full="fail") as producer:
            i = 0
            while not stop.is_set():
                try:
                    future = producer.send("k", str(i).encode())
                    future.add_done_callback(
                        lambda f, i=i: acked.append(i) if f.exception() is None else errors.append(i))
                except BrokerError:
                    errors.append(i)
                i += 1
                time.sleep(0.001)

    def until(predicate, timeout: float) -> None:  # polled, not slept: the sleeps were 2.5 s in all
        deadline = time.monotonic() + timeout
        while not predicate() and time.monotonic() < deadline:
            time.sleep(0.02)

    thread = threading.Thread(target=produce)
    thread.start()
    until(lambda: len(acked) >= 50, 10)
    broker.kill()
    killed_at = len(acked)
    time.sleep(1.0)  # down longer than the producer's request timeout: sends in this window fail
    broker.start()
    until(lambda: len(acked) >= killed_at + 50, 10)
    stop.set()
    thread.join(20)
    assert killed_at > 0 and len(acked) > killed_at, "the producer resumed after the restart"
    assert errors, "records sent while the broker was down must fail, not vanish"
    with Admin(broker.endpoint) as admin:  # everything in the log (reading for a fixed 3 s took 3 s)
        end = admin.list_offset("k", 0, "latest")
    records = consume_all(broker.endpoint, "k", expected=end, timeout=10)
    values = [int(bytes(r.value)) for r in records]
    assert [r.offset for r in records] == list(range(len(records)))
    assert len(values) == len(set(values)), "no record twice"
    assert values == sorted(values), "in order"
    assert set(acked) <= set(values), "every acknowledged record is there"
    broker.stop()


def test_group_rebalances_when_a_member_is_killed(broker):
    with Admin(broker.endpoint) as admin:
        admin.create_topic("g4", partitions=4)
    member_code = (
        "import sys, time\n"
        "from broker.client import Consumer\n"
        f"c = Consumer({broker.endpoint!r}, group='grp', session_timeout_ms=1500, heartbeat_interval_ms=200)\n"
        "c.subscribe(['g4'])\n"
        "print('joined', flush=True)\n"
        "while True:\n"
        "    c.poll(0.2)\n"
    )
    other = subprocess.Popen([sys.executable, "-c", member_code], stdout=subprocess.PIPE, text=True)
    assert other.stdout.readline().strip() == "joined"
    me = Consumer(broker.endpoint, group="grp", session_timeout_ms=1500, heartbeat_interval_ms=200)
    me.subscribe(["g4"])
    deadline = time.monotonic() + 10
    while len(me.assignment()) != 2 and time.monotonic() < deadline:
        me.poll(0.2)
    assert len(me.assignment()) == 2
    other.send_signal(signal.SIGKILL)
    other.wait()
    other.stdout.close()
    deadline = time.monotonic() + 10
    while len(me.assignment()) != 4 and time.monotonic() < deadline:
        me.poll(0.2)
    assert me.assignment() == [("g4", p) for p in range(4)]
    me.close()


def test_offset_out_of_range_and_unreachable_broker(broker, tmp_path):
    produce_values(broker.endpoint, "r", [b"a"])
    with Admin(broker.endpoint) as admin:
        assert admin.describe_topic("r")["partitions"][0]["next_offset"] == 1
    from broker import protocol as P
    from broker.client import Connection

    conn = Connection(broker.endpoint)
    reply = conn.request(P.FETCH, {"partitions": [["r", 0, 50]], "max_bytes": 1000})
    assert reply.meta["partitions"][0]["error"] == OffsetOutOfRangeError.code
    conn.close()
    with Admin(f"ipc://{tmp_path}/nobody.sock", timeout_s=0.5) as nobody, \
            pytest.raises(BrokerUnavailableError, match=r"not reachable|no reply"):
        nobody.ping()
