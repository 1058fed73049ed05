"""File descriptors (issue 21, item 9): CREATE_TOPIC with many partitions, repeated, used to
exhaust the broker's fds and kill it. Partitions are now limited per topic and in total from
RLIMIT_NOFILE (ResourceLimitError naming the figures), and clients past the cap are refused
with BrokerBusyError while the fds they and the partitions hold stay within the limit.

Not covered, because it cannot be from inside the broker: a local process opening more
connections than the broker has fds. libzmq 4.3.5 aborts on EMFILE in its ipc listener
(ipc_listener.cpp:297), and it accepts in its own thread faster than the broker could stop
listening (docs/RELIABILITY.md)."""

from __future__ import annotations

import time

import pytest
import zmq

from broker import protocol as P
from broker.client import Admin, Producer
from broker.errors import BrokerBusyError, ResourceLimitError
from broker.limits import BrokerLimits
from tests.support.broker_process import BrokerProcess

FD_LIMIT = 512


def test_partition_limits_and_fd_exhaustion_never_kill_the_broker(data_dir):
    limits = BrokerLimits.from_fd_limit(FD_LIMIT)
    broker = BrokerProcess(data_dir, fd_limit=FD_LIMIT).start()
    try:
        with Admin(broker.endpoint) as admin:
            with pytest.raises(ResourceLimitError, match="per topic"):
                admin.create_topic("huge", 1024)
            created = 0
            with pytest.raises(ResourceLimitError, match="in total"):
                for i in range(limits.max_partitions_total):  # the old broker died on the way
                    admin.create_topic(f"t{i}", 8)
                    created += 8
            assert created == limits.max_partitions_total // 8 * 8
            meta = admin.metadata()
        broker_meta = meta["broker"]
        assert broker_meta["limits"]["max_partitions_total"] == limits.max_partitions_total
        assert broker_meta["stats"]["partitions_refused"] == 2
        with Producer(broker.endpoint, linger_ms=0) as producer:
            assert producer.send("t0", b"still writing").result(10).offset == 0

        # more clients than the cap: those past it are refused with a reason, not left unanswered
        context = zmq.Context()
        context.set(zmq.MAX_SOCKETS, 4096)
        socks = []
        try:
            for _ in range(limits.max_clients + 40):
                sock = context.socket(zmq.DEALER)
                sock.setsockopt(zmq.LINGER, 0)
                sock.connect(broker.endpoint)
                socks.append(sock)
            for sock in socks:
                sock.send_multipart([P.encode_header(P.PING, 1), b"{}"])
            answered, busy = 0, 0
            deadline = time.monotonic() + 5
            for sock in socks:
                if sock.poll(max(0, int((deadline - time.monotonic()) * 1000))):
                    status = P.decode_header(sock.recv_multipart()[0]).status
                    answered += 1
                    busy += status == BrokerBusyError.code
            assert broker.proc.poll() is None, f"the broker died:\n{broker.log()}"
            assert answered == len(socks), "every client got an answer"
            assert busy >= 40 - 1, "clients past the cap were refused with BrokerBusyError"
            assert answered - busy <= limits.max_clients + 1
        finally:
            for sock in socks:
                sock.close()
            context.term()
        deadline = time.monotonic() + 10
        while True:  # the refused clients are gone: a new one is served again
            try:
                with Admin(broker.endpoint, timeout_s=2) as admin:
                    stats = admin.metadata()["broker"]["stats"]
                break
            except BrokerBusyError:
                assert time.monotonic() < deadline, "clients stay refused after the others left"
                time.sleep(0.2)
        assert stats["clients_refused"] >= busy
        print(f"\nfd limit {FD_LIMIT}: {limits}, created {created} partitions, {busy} of {answered} clients refused")
        assert broker.proc.poll() is None
    finally:
        code = broker.stop()
    assert code == 0, broker.log()
