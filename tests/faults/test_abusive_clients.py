"""Abusive or buggy clients (issue 21, item 10): one client cannot make the broker build an
unbounded reply, park unbounded fetches, or pile up unbounded unread replies. Each case is
refused with a typed error (never silence), counted in the broker's stats, and the broker's
RSS (psutil) stays bounded while other clients are served at once."""

from __future__ import annotations

import json
import time

import psutil
import zmq

from broker import protocol as P
from broker.client import Admin, Producer
from broker.errors import BrokerBusyError, InvalidRequestError
from broker.limits import MAX_FETCH_REPLY_BYTES, MAX_PARKED_PARTITIONS, MAX_PARKED_PER_CLIENT

MiB = 1024 * 1024


def raw_client(endpoint: str, rcvhwm: int = 1000) -> zmq.Socket:
    sock = zmq.Context.instance().socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.RCVHWM, rcvhwm)
    sock.setsockopt(zmq.SNDHWM, 100_000)
    sock.connect(endpoint)
    return sock


def send_fetch(sock, request_id: int, partitions, max_bytes: int, wait_ms: int = 0) -> None:
    meta = {"partitions": partitions, "max_bytes": max_bytes, "max_wait_ms": wait_ms}
    sock.send_multipart([P.encode_header(P.FETCH, request_id), json.dumps(meta).encode()])


def recv(sock, timeout_s: float = 5.0):
    assert sock.poll(int(timeout_s * 1000)), "no reply: the broker went silent"
    frames = sock.recv_multipart(copy=False)
    return P.decode_header(frames[0].bytes), json.loads(frames[1].bytes), [len(f) for f in frames[2:]]


def fill_topic(endpoint: str, topic: str, records: int, size: int) -> None:
    with Producer(endpoint, linger_ms=0, max_batch_bytes=size) as producer:
        for i in range(records):
            producer.send(topic, i.to_bytes(4, "big") * (size // 4))
        producer.flush(60)


def ping_s(endpoint: str) -> float:
    started = time.monotonic()
    with Admin(endpoint, timeout_s=5) as admin:
        admin.ping()
    return time.monotonic() - started


def rss(broker) -> int:
    return psutil.Process(broker.proc.pid).memory_info().rss


def test_fetch_reply_is_capped_and_repeats_refused(broker):
    fill_topic(broker.endpoint, "big", 70, MiB)  # 70 MiB, more than one reply may carry
    before = rss(broker)
    sock = raw_client(broker.endpoint)
    try:
        send_fetch(sock, 1, [["big", 0, 0]] * 3, 2**40)
        header, meta, _ = recv(sock)
        assert header.status == InvalidRequestError.code and "more than once" in meta["message"]
        send_fetch(sock, 2, [["big", 0, 0]], 2**40)
        header, meta, sizes = recv(sock, 30)
        assert header.status == 0
        assert MAX_FETCH_REPLY_BYTES - MiB < sum(sizes) <= MAX_FETCH_REPLY_BYTES + MiB
    finally:
        sock.close()
    growth = rss(broker) - before
    print(f"\nfetch of 2**40 bytes: reply {sum(sizes) / MiB:.1f} MiB, broker RSS +{growth / MiB:.0f} MiB")
    assert growth < 2 * MAX_FETCH_REPLY_BYTES, f"broker RSS grew {growth / MiB:.0f} MiB"
    with Admin(broker.endpoint) as admin:
        assert admin.metadata()["broker"]["stats"]["fetch_max_bytes_clamped"] == 1


def test_parked_fetches_are_capped_per_client_and_in_total(broker):
    with Admin(broker.endpoint) as admin:
        admin.create_topic("wide", 64)
    parts = [["wide", p, 0] for p in range(64)]
    before = rss(broker)
    greedy = raw_client(broker.endpoint)
    n = 2000
    for i in range(n):  # long polls on partitions without data: each would wait 30 s
        send_fetch(greedy, i, parts, MiB, wait_ms=30_000)
    busy = 0
    for _ in range(n - MAX_PARKED_PER_CLIENT):
        header, meta, _ = recv(greedy)
        assert header.status == BrokerBusyError.code, meta
        busy += 1
    assert not greedy.poll(300), "the parked ones wait for data"
    latency = ping_s(broker.endpoint)
    assert latency < 1.0, "other clients are served at once"
    growth = rss(broker) - before
    print(f"\n{n} long polls: {busy} refused, ping {latency * 1000:.0f} ms, broker RSS +{growth / MiB:.0f} MiB")
    assert growth < 100 * MiB, f"broker RSS grew {growth / MiB:.0f} MiB"

    # many clients, each within its own cap, together past the broker's: answered at once, empty
    others = [raw_client(broker.endpoint) for _ in range(MAX_PARKED_PARTITIONS // (64 * MAX_PARKED_PER_CLIENT) + 2)]
    try:
        for sock in others:
            for i in range(MAX_PARKED_PER_CLIENT):
                send_fetch(sock, i, parts, MiB, wait_ms=30_000)
        answered = 0
        for sock in others:
            while sock.poll(200):
                header, meta, _ = recv(sock)
                assert header.status == 0, meta
                answered += 1
        assert answered >= 2 * MAX_PARKED_PER_CLIENT  # the overflow, not parked
        with Admin(broker.endpoint) as admin:
            stats = admin.metadata()["broker"]["stats"]
        assert stats["fetch_parked_refused"] == busy
        assert stats["fetch_parked_overflow"] == answered
        assert stats["parked_fetches"] * 64 <= MAX_PARKED_PARTITIONS
    finally:
        greedy.close()
        for sock in others:
            sock.close()


def test_unread_replies_are_bounded_and_answered_with_errors(broker):
    fill_topic(broker.endpoint, "frames", 16, MiB)
    before = rss(broker)
    lazy = raw_client(broker.endpoint, rcvhwm=1)  # asks and asks, reads nothing
    n = 400
    try:
        for i in range(n):
            send_fetch(lazy, i, [["frames", 0, i % 16]], MiB)
        time.sleep(3)
        peak = rss(broker) - before
        assert peak < 2 * MAX_FETCH_REPLY_BYTES, f"broker RSS grew {peak / MiB:.0f} MiB for unread replies"
        assert ping_s(broker.endpoint) < 1.0
        data, busy = 0, 0
        for _ in range(n):  # every request is answered: data first, then errors, no silence
            header, meta, _sizes = recv(lazy, 10)
            if header.status == 0:
                data += 1
            else:
                assert header.status == BrokerBusyError.code and "unread" in meta["message"], meta
                busy += 1
        print(f"\n{n} unread fetches: peak broker RSS +{peak / MiB:.0f} MiB, {data} answered with data, "
              f"{busy} BrokerBusy")
        assert busy > 0 and data + busy == n
        assert data * MiB <= 2 * MAX_FETCH_REPLY_BYTES
    finally:
        lazy.close()
    with Admin(broker.endpoint) as admin:
        assert admin.metadata()["broker"]["stats"]["reply_backlog_refused"] == busy

