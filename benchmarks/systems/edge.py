"""The appliance's own broker (``python -m edge.cli broker``) and client library over ipc.

written: topic ``flush="os"``, producer ``acks="written"``;
durable: topic ``flush="batch"`` (fsync per batch), producer ``acks="durable"``.
Producer: linger 1 ms, 1 MiB batches, 8 batches in flight, 256 MiB buffer (blocks when full).
Consumer: the bulk read path, ``Consumer.poll_values`` (no Python object per record).
With the ``profile_dir`` option the broker runs under cProfile and writes
``edge-<mode>.prof`` there when it stops (SIGTERM shuts it down cleanly).
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from broker.client import Admin, Consumer, Producer

from ..common import stop_process
from . import MAX_MESSAGE_BYTES, BrokerSystem, ConsumerClient, ProducerClient

MiB = 1024 * 1024


class EdgeBroker(BrokerSystem):
    name = "edge"
    modes_per_topic = True  # topic flush policy + producer acks

    def start(self) -> None:
        data_dir = Path(self.base_dir) / "data"
        data_dir.mkdir(parents=True, exist_ok=True)
        self.endpoint = f"ipc://{data_dir}/broker.sock"
        server = ["-m", "edge.cli", "broker", "--data-dir", str(data_dir), "--endpoint", self.endpoint,
                  "--log-level", "WARNING"]
        profile_dir = self.options.get("profile_dir")
        if profile_dir:
            Path(profile_dir).mkdir(parents=True, exist_ok=True)
            server = ["-m", "cProfile", "-o", str(Path(profile_dir) / "edge.prof"), *server]
        self.process = subprocess.Popen([sys.executable, *server])
        deadline = time.monotonic() + 20
        while True:
            try:
                with Admin(self.endpoint, timeout_s=0.5) as admin:
                    admin.ping()
                return
            except Exception:
                if time.monotonic() > deadline or self.process.poll() is not None:
                    raise
                time.sleep(0.05)

    def stop(self) -> None:
        stop_process(self.process, 60.0)

    def broker_pids(self) -> list[int]:
        return [self.process.pid]

    def create_topic(self, topic: str, partitions: int, mode: str) -> None:
        flush = "batch" if mode == "durable" else "os"
        with Admin(self.endpoint) as admin:
            admin.create_topic(topic, partitions=partitions, config={
                "flush": flush, "segment_bytes": "512MiB", "max_record_bytes": MAX_MESSAGE_BYTES})

    def connection(self, mode: str) -> dict:
        return {"endpoint": self.endpoint, "mode": mode}

    def describe(self, mode: str) -> str:
        flush = "flush=batch, acks=durable" if mode == "durable" else "flush=os, acks=written"
        return f"edge broker over ipc ({flush})"


class EdgeProducer(ProducerClient):
    def __init__(self, connection: dict):
        self.producer = Producer(connection["endpoint"], linger_ms=1, max_batch_bytes=MiB, acks=connection["mode"],
                                 max_in_flight=8, buffer_bytes=256 * MiB, block_timeout_s=60)
        self.errors = 0

    def _count_failure(self, future, count: int = 1) -> None:
        # runs in the producer's I/O thread when the delivery is settled
        if future.exception() is not None:
            self.errors += count

    def send(self, topic: str, partition: int, value: bytes) -> None:
        self.producer.send(topic, value, partition=partition).add_done_callback(self._count_failure)

    def send_many(self, topic: str, partition: int, values: Sequence[bytes]) -> None:
        futures = self.producer.send_many(topic, values, partition=partition)
        per_chunk = max(1, len(values) // max(1, len(futures)))  # chunk sizes, near enough for counting
        for future in futures:
            future.add_done_callback(lambda f: self._count_failure(f, per_chunk))

    def flush(self, timeout: float = 120.0) -> None:
        self.producer.flush(timeout)

    def close(self) -> None:
        self.producer.close()


class EdgeConsumer(ConsumerClient):
    def __init__(self, connection: dict):
        self.consumer = Consumer(connection["endpoint"], fetch_max_bytes=16 * MiB, max_wait_ms=100)

    def assign(self, topics: dict[str, int]) -> None:
        self.consumer.assign([(topic, p) for topic, n in topics.items() for p in range(n)])

    def poll(self, timeout: float) -> list:
        return [record.value for record in self.consumer.poll(timeout)]

    def poll_counted(self, timeout: float, probe_limit: int) -> tuple[int, int, list]:
        # the bulk read path (Consumer.poll_values): counts and sizes from numpy columns
        chunks = self.consumer.poll_values(timeout)
        count = sum(map(len, chunks))
        if count <= probe_limit:
            probe = [v for chunk in chunks for v in chunk.values()]
        else:
            probe = [chunks[0].value(0), chunks[-1].value(len(chunks[-1]) - 1)]
        return count, sum(chunk.nbytes for chunk in chunks), probe

    def close(self) -> None:
        self.consumer.close()


def system(base_dir, mode: str, options: dict | None = None) -> EdgeBroker:
    return EdgeBroker(base_dir, mode, options)


def producer_client(connection: dict) -> ProducerClient:
    return EdgeProducer(connection)


def consumer_client(connection: dict) -> ConsumerClient:
    return EdgeConsumer(connection)
