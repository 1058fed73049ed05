"""The systems compared by ``python -m benchmarks``: one adapter module per broker, plus the disk.

Every broker adapter gives the harness the same three things, so a workload runs unchanged
on each system:

- a ``BrokerSystem`` (in the harness process): start/stop the broker for one durability
  mode, create topics with raised message-size limits, and name the broker's process ids
  (psutil samples their RSS and CPU);
- a ``ProducerClient`` and a ``ConsumerClient`` built in the producer and consumer child
  processes from the picklable ``connection`` dict of the running system.

Durability modes, the same for every system:
- ``written``: acknowledged once the broker has written the record (page cache);
- ``durable``: acknowledged once the broker has fsynced it (per batch / per message).
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from typing import Any

MODES = ("written", "durable")
BROKER_SYSTEMS = ("edge", "kafka", "nats")
ALL_SYSTEMS = (*BROKER_SYSTEMS, "disk")
MAX_MESSAGE_BYTES = 16 * 1024 * 1024  # raised limit given to every peer (raw frames are 3.75 MB)


class SystemUnavailable(RuntimeError):
    """The system cannot run on this machine (binary missing, download failed...)."""


class ProducerClient:
    """Sends records to (topic, partition); ``errors`` counts records the broker refused."""

    errors = 0

    def send(self, topic: str, partition: int, value: bytes) -> None:
        raise NotImplementedError

    def send_many(self, topic: str, partition: int, values: Sequence[bytes]) -> None:
        for value in values:
            self.send(topic, partition, value)

    def flush(self, timeout: float = 120.0) -> None:
        raise NotImplementedError

    def close(self) -> None:
        pass


class ConsumerClient:
    """Reads (topic, partitions) from the beginning; ``poll`` returns record values."""

    def assign(self, topics: dict[str, int]) -> None:
        """``topics``: topic name -> number of partitions; read all of them from offset 0."""
        raise NotImplementedError

    def poll(self, timeout: float) -> list:
        raise NotImplementedError

    def poll_counted(self, timeout: float, probe_limit: int) -> tuple[int, int, list]:
        """(records, bytes, values to read stamps from): every value when at most
        ``probe_limit`` arrived, else the first and the last. A client with a bulk read path
        overrides this to count without a Python object per record."""
        values = self.poll(timeout)
        probe = values if len(values) <= probe_limit else [values[0], values[-1]]
        return len(values), sum(map(len, values)), probe

    def close(self) -> None:
        pass


class BrokerSystem:
    """A broker started by the harness in a scratch directory. With ``modes_per_topic`` the
    durability mode is a topic and client setting, so one broker serves the phases of both
    modes (``mode`` is then just the first); otherwise it is the broker's own setting and
    the harness starts one broker per mode."""

    name = ""
    modes_per_topic = False

    def __init__(self, base_dir, mode: str, options: dict[str, Any] | None = None):
        self.base_dir = base_dir
        self.mode = mode
        self.options = options or {}

    def start(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def broker_pids(self) -> list[int]:
        raise NotImplementedError

    def create_topic(self, topic: str, partitions: int, mode: str) -> None:
        raise NotImplementedError

    def connection(self, mode: str) -> dict[str, Any]:
        """Picklable: what ``producer_client``/``consumer_client`` need in a child process."""
        raise NotImplementedError

    def describe(self, mode: str) -> str:
        """Version and settings of ``mode``, printed in the report."""
        return self.name

    def check_mode(self, mode: str) -> None:
        if not self.modes_per_topic and mode != self.mode:
            raise ValueError(f"{self.name} was started for {self.mode!r} phases, not {mode!r}")


def system_module(name: str):
    return importlib.import_module(f"benchmarks.systems.{name}")


def producer_client(name: str, connection: dict[str, Any]) -> ProducerClient:
    return system_module(name).producer_client(connection)


def consumer_client(name: str, connection: dict[str, Any]) -> ConsumerClient:
    return system_module(name).consumer_client(connection)
