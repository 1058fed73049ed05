"""Where a replay publishes: topics of a broker, named by a prefix or a remap.

Guarantees:
- Naming: a source topic ``t`` goes to ``remap[t]`` when given, else ``prefix + t``;
  the record keeps its partition, key, headers (plus the player's replay headers) and
  capture timestamp. A destination that is one of the replay's own source topics on the
  same broker is refused before anything is published (it would feed itself).
- Destinations are checked before the first record: a missing one is created with the
  source's partition count and config (codec, retention); an existing one with fewer
  partitions than the source is refused, naming both counts.
- Memory is bounded by the producer's buffer (``buffer_bytes``, default 32 MiB): when the
  broker is slower than the replay, ``emit`` blocks (the player then re-anchors instead of
  bursting), it never drops or buffers without bound.
- ``flush`` waits for every published record to be acknowledged and raises the first
  delivery error, so a replay that reports success has landed all its records.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Protocol

from broker.errors import BrokerError, UnknownTopicError
from broker.records import Record

from .errors import SinkError

_SOURCE_ONLY_CONFIG = ("partitions",)  # what a destination does not copy from its source


class Sink(Protocol):
    def emit(self, record: Record, headers: Mapping[str, bytes], timestamp_ns: int) -> None: ...

    def flush(self) -> None: ...

    def close(self) -> None: ...


def parse_remap(pairs: Iterable[str]) -> dict[str, str]:
    """``["camera.front=sim.front", ...]`` as a dict; SinkError for a malformed pair."""
    remap: dict[str, str] = {}
    for pair in pairs:
        for item in filter(None, (p.strip() for p in pair.split(","))):
            source, sep, dest = item.partition("=")
            if not sep or not source.strip() or not dest.strip():
                raise SinkError(f"--remap {item!r}: expected SOURCE=DESTINATION (e.g. camera.front=replay.front)")
            remap[source.strip()] = dest.strip()
    return remap


class Delivery(Protocol):
    """What the sink keeps of a record sent (the producer's per-record future)."""

    def done(self) -> bool: ...

    def exception(self, timeout: float | None = None) -> BaseException | None: ...


class TopicNaming:
    """Source topic -> destination topic."""

    def __init__(self, prefix: str = "replay.", remap: Mapping[str, str] | None = None):
        self.prefix = prefix or ""
        self.remap = dict(remap or {})

    def __call__(self, topic: str) -> str:
        return self.remap.get(topic) or self.prefix + topic


class BrokerSink:
    """Publishes replayed records into the broker at ``endpoint``."""

    def __init__(self, endpoint: str, naming: TopicNaming, *, buffer_bytes: int = 32 * 1024 * 1024,
                 linger_ms: float = 1.0, acks: str = "written"):
        from broker.client import Producer

        self.endpoint = endpoint
        self.naming = naming
        self.producer = Producer(endpoint, acks=acks, linger_ms=linger_ms, buffer_bytes=buffer_bytes,
                                 on_full="block", block_timeout_s=60.0, request_timeout_s=30.0)
        self._dest: dict[str, str] = {}
        self._pending: list[Delivery] = []
        self._error: BaseException | None = None

    def prepare(self, partitions: dict[str, int], configs: Mapping[str, Mapping[str, Any] | None], *,
                same_broker: bool) -> dict[str, str]:
        """Check / create the destinations of ``partitions`` (source topic -> partition
        count); returns source -> destination. ``same_broker``: the source is this broker."""
        from broker.client import Admin

        mapping = {topic: self.naming(topic) for topic in partitions}
        if same_broker:
            loops = sorted(t for t, d in mapping.items() if d in partitions)
            if loops:
                raise SinkError(f"replaying {', '.join(loops)} into "
                                f"{', '.join(mapping[t] for t in loops)} would feed the replay its own output: "
                                "give --prefix or --remap to other topic names")
        targets = list(mapping.values())
        if len(set(targets)) != len(targets):
            raise SinkError(f"two source topics map to one destination: {mapping}")
        with Admin(self.endpoint) as admin:
            for topic, dest in mapping.items():
                needed = partitions[topic]
                try:
                    have = len(admin.describe_topic(dest)["partitions"])
                except UnknownTopicError:
                    config = {k: v for k, v in (configs.get(topic) or {}).items() if k not in _SOURCE_ONLY_CONFIG}
                    try:
                        admin.create_topic(dest, needed, config or None)
                    except BrokerError as exc:
                        raise SinkError(f"cannot create replay topic {dest!r}: {exc.message}") from None
                    continue
                if have < needed:
                    raise SinkError(f"replay topic {dest!r} has {have} partition(s), the source {topic!r} has "
                                    f"{needed}: delete it or choose another --prefix")
        self._dest = mapping
        return mapping

    def emit(self, record: Record, headers: Mapping[str, bytes], timestamp_ns: int) -> None:
        if self._error is not None:
            raise self._error
        dest = self._dest.get(record.topic)
        if dest is None:
            dest = self._dest[record.topic] = self.naming(record.topic)
        future = self.producer.send(dest, record.value, key=record.key, headers=headers,
                                    partition=record.partition, timestamp_ns=timestamp_ns)
        future.add_done_callback(self._delivered)
        self._pending.append(future)
        if len(self._pending) >= 4096:
            self._pending = [f for f in self._pending if not f.done()]

    def _delivered(self, future: Delivery) -> None:
        exc = future.exception()
        if exc is not None and self._error is None:
            self._error = exc if isinstance(exc, BrokerError) else SinkError(f"publishing failed: {exc}")

    def flush(self) -> None:
        self.producer.flush(timeout=60.0)
        for future in self._pending:
            future.exception(timeout=60.0)
        self._pending.clear()
        if self._error is not None:
            raise self._error

    def close(self) -> None:
        self.producer.close()
