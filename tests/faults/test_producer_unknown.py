"""A producer whose acknowledgements stop coming (issue 21, item 11): the broker frozen by
SIGSTOP past the request timeout, then SIGCONT. It writes what it had read before it froze,
so a batch whose acknowledgement timed out is reported unknown (DeliveryUnknownError), never
failed; every record reported failed is absent from the log; every record present was
reported delivered or unknown; and the log holds the records in send order (no reorder:
the producer sends nothing after an unknown outcome until the broker has handled it).

With idempotence (the default) the same freeze costs nothing: every batch whose
acknowledgement timed out is sent again and acknowledged once, and every record is in the log
exactly once, in send order."""

from __future__ import annotations

import os
import signal
import threading
import time

from broker.client import Admin, Consumer, Producer
from broker.errors import BrokerError, DeliveryUnknownError, ProducerBufferFullError

TIMEOUT_S = 1.0


def read_all(endpoint: str, topic: str) -> list[int]:
    with Admin(endpoint) as admin:
        end = admin.list_offset(topic, 0, "latest")
    consumer = Consumer(endpoint)
    consumer.assign([(topic, 0)])
    consumer.seek_to_beginning()
    got: list[int] = []
    deadline = time.monotonic() + 20
    while len(got) < end and time.monotonic() < deadline:
        got += [int.from_bytes(bytes(r.value)[:4], "big") for r in consumer.poll(1)]
    consumer.close()
    assert len(got) == end
    return got


def freeze_while_sending(broker, producer: Producer, topic: str, futures: dict, refused: set) -> None:
    """Send numbered records steadily while the broker is frozen (SIGSTOP) for 2.5 request
    timeouts, then thawed; flush and close the producer."""
    stop = threading.Event()

    def send_steadily():
        i = 0
        while not stop.is_set():
            try:
                futures[i] = producer.send(topic, i.to_bytes(4, "big") + b"x" * 1000)
            except ProducerBufferFullError:
                refused.add(i)  # never taken: not in the log
            i += 1
            time.sleep(0.001)

    sender = threading.Thread(target=send_steadily)
    sender.start()
    try:
        time.sleep(0.5)
        os.kill(broker.proc.pid, signal.SIGSTOP)
        time.sleep(TIMEOUT_S * 2.5)
    finally:
        os.kill(broker.proc.pid, signal.SIGCONT)
    time.sleep(1.0)
    stop.set()
    sender.join()
    producer.flush(30)
    producer.close()


def test_frozen_broker_outcomes_are_delivered_unknown_or_really_failed(broker):
    with Admin(broker.endpoint) as admin:
        admin.create_topic("seq")
    futures, refused = {}, set()
    producer = Producer(broker.endpoint, linger_ms=2, request_timeout_s=TIMEOUT_S, on_full="fail",
                        buffer_bytes=512 * 1024, idempotent=False)
    freeze_while_sending(broker, producer, "seq", futures, refused)

    delivered, unknown, failed = set(), set(), set()
    for i, future in futures.items():
        exc = future.exception(10)
        if exc is None:
            delivered.add(i)
        elif isinstance(exc, DeliveryUnknownError):
            unknown.add(i)
        else:
            assert isinstance(exc, BrokerError)
            failed.add(i)
    present = read_all(broker.endpoint, "seq")
    print(f"\nfrozen broker: {len(futures)} sent, {len(delivered)} delivered, {len(unknown)} unknown "
          f"({len(unknown & set(present))} of them written), {len(failed)} failed, {len(refused)} refused; "
          f"{len(present)} in the log")
    assert not failed & set(present), f"{len(failed & set(present))} records reported failed are in the log"
    assert set(present) <= delivered | unknown
    assert unknown, "the freeze outlasted the request timeout: some outcomes were unknown"
    assert delivered <= set(present)
    assert not refused & set(present)
    assert present == sorted(present), "records of the partition are in send order"
    assert len(present) == len(set(present))
    assert max(delivered) > max(unknown), "sending resumed after the broker came back"


def test_frozen_broker_with_idempotence_every_record_exactly_once_in_order(broker):
    with Admin(broker.endpoint) as admin:
        admin.create_topic("once")
    futures, refused = {}, set()
    producer = Producer(broker.endpoint, linger_ms=2, request_timeout_s=TIMEOUT_S, on_full="fail",
                        buffer_bytes=512 * 1024)
    freeze_while_sending(broker, producer, "once", futures, refused)
    offsets = {i: future.result(10).offset for i, future in futures.items()}  # none failed, none unknown
    present = read_all(broker.endpoint, "once")
    print(f"\nfrozen broker, idempotent: {len(futures)} sent, {producer.retried_batches} batches retried, "
          f"{len(refused)} refused; {len(present)} in the log")
    assert producer.retried_batches > 0, "the freeze outlasted the request timeout"
    assert present == sorted(futures), "every record taken is in the log exactly once, in send order"
    assert [offsets[i] for i in present] == list(range(len(present))), "each acknowledged with its offset"
    assert not refused & set(present)
