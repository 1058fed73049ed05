"""Record sources for replay and export: the vehicle's broker or the cloud Kafka cluster.

A ``RecordSource`` knows the topics it holds and opens one stream per partition over a
window; ``open_window`` merges them by capture time (edge.replay.merge). Both sources
yield ``broker.records.Record`` objects that look the same: the vehicle's topic name,
partition and offset, the capture time as ``timestamp`` and the record's own headers.

Guarantees:
- Bounded read-ahead: each partition stream holds at most the records of its current
  fetch plus one prefetched fetch, each at most ``read_ahead_bytes`` (or one record batch
  when a single batch is larger, e.g. a 6 MB raw frame). Nothing is read before it is
  needed, and nothing is kept after it was yielded.
- A window is a range of offsets per partition, found by Kafka's rule on both ends: from
  the first offset whose capture time is >= ``window.start_ns`` to the first offset whose
  capture time is >= ``window.end_ns`` (exclusive), capped at the log end as it was when the
  stream opened (a replay of a live topic ends instead of following it). Every record in
  that range is yielded, in offset order, including records a clock that stepped back
  stamped before the start: ``edge consume --from T``, replay and export agree, consecutive
  windows cover a partition exactly once, and no answer depends on fetch sizes.
  Partitions named by an offset start / stop at exactly that offset. Far-future stamps
  (flagged by the broker) never answer a time lookup, so they cannot end a window early.
- Records of the range that are no longer in the log (deleted by retention before or
  while the stream read) are never skipped in silence: the stream notes each hole as an
  offset range in ``MissingRecords`` (a start below the log start, an offset jump between
  consecutive records: offsets are dense, docs/FORMAT.md), also when the consumer reset
  its position by itself or raised OffsetOutOfRangeError.
- Kafka (the mirror's layout, ``vehicles.{vehicle}.{topic}`` by default): records carry
  ``edge.source.topic``, ``edge.source.partition``, ``edge.source.offset`` and
  ``edge.capture_ns`` headers; the stream restores topic, partition, offset and capture
  time from them and drops every ``edge.*`` header, so a Kafka record is indistinguishable
  from the vehicle's.
"""

from __future__ import annotations

import fnmatch
import re
import time
import uuid
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from typing import Any

from broker.errors import BrokerError, OffsetOutOfRangeError, UnknownTopicError
from broker.records import Record

from .errors import SourceError
from .merge import MergedStream
from .missing import MissingRecords
from .timespec import EARLIEST_NS, OffsetPoint, Window, WindowSpec

TopicPartition = tuple[str, int]

DEFAULT_READ_AHEAD_BYTES = 2 * 1024 * 1024
DEFAULT_KAFKA_TEMPLATE = "vehicles.{vehicle}.{topic}"
MIRROR_HEADER_PREFIX = "edge."
_STALL_S = 30.0  # no record for this long while the log says there are more: give up


class PartitionStream(ABC):
    """The records of one partition over a window, in offset order. Iterate once; the
    consumer it opens lives from the first ``next`` to the end or ``close``."""

    def __init__(self, source: RecordSource, tp: TopicPartition, window: Window, read_ahead_bytes: int):
        self.source = source
        self.tp = tp
        self.window = window
        self.read_ahead_bytes = read_ahead_bytes
        self.consumer: Any = None
        self.missing = MissingRecords()  # open_window shares one among its streams

    @abstractmethod
    def __iter__(self) -> Iterator[Record]: ...

    def close(self) -> None:
        if self.consumer is not None:
            self.consumer.close()
            self.consumer = None


class RecordSource(ABC):
    """Where replay and export read from. Not thread-safe: use from one thread."""

    description: str = ""

    @abstractmethod
    def topics(self) -> dict[str, int]:
        """Topic name (as on the vehicle) -> partition count."""

    def topic_config(self, topic: str) -> dict[str, Any] | None:
        """The topic's broker config (codec, ...) when the source knows it."""
        return None

    @abstractmethod
    def timestamp_at(self, tp: TopicPartition, offset: int) -> int | None:
        """Capture time of the record at ``offset``; None at the log end; SourceError
        outside the log."""

    @abstractmethod
    def count_between(self, tp: TopicPartition, start_ns: int, end_ns: int) -> int:
        """About how many records of ``tp`` fall in ``[start_ns, end_ns)`` (from the
        time indexes, without reading the records)."""

    @abstractmethod
    def stream(self, tp: TopicPartition, window: Window, *,
               read_ahead_bytes: int = DEFAULT_READ_AHEAD_BYTES) -> PartitionStream: ...

    def count_window(self, tp: TopicPartition, window: Window) -> int:
        """About how many records ``stream(tp, window)`` yields (before reading them)."""
        return self.count_between(tp, window.start_ns, window.end_ns)

    def close(self) -> None:  # a hook: sources without connections have nothing to close
        return None

    def __enter__(self) -> RecordSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# -- selection and windows -------------------------------------------------------------------


def select_partitions(source: RecordSource, patterns: Sequence[str], *,
                      exclude_prefixes: Sequence[str] = ()) -> list[TopicPartition]:
    """The partitions named by ``patterns``: topic names or shell patterns (``camera.*``),
    each optionally with ``:PARTITION``. Patterns never match internal topics (``_...``)
    nor topics under ``exclude_prefixes`` (a replay's own output); exact names do."""
    available = source.topics()
    chosen: list[TopicPartition] = []
    for raw in patterns:
        pattern = raw.strip()
        if not pattern:
            continue
        only: int | None = None
        head, sep, tail = pattern.rpartition(":")
        if sep and tail.isdigit():
            pattern, only = head, int(tail)
        if any(ch in pattern for ch in "*?["):
            names = [t for t in sorted(available) if fnmatch.fnmatchcase(t, pattern) and not t.startswith("_")
                     and not any(p and t.startswith(p) for p in exclude_prefixes)]
            if not names:
                raise SourceError(f"no topic of {source.description} matches {raw!r}")
        else:
            if pattern not in available:
                raise SourceError(f"{source.description} has no topic {pattern!r}"
                                  + (f" (topics: {', '.join(sorted(available)[:20])})" if available else ""))
            names = [pattern]
        for name in names:
            count = available[name]
            if only is not None and only >= count:
                raise SourceError(f"topic {name!r} has {count} partition(s), no partition {only}")
            for p in [only] if only is not None else range(count):
                if (name, p) not in chosen:
                    chosen.append((name, p))
    if not chosen:
        raise SourceError("no topics chosen (give --topics)")
    return chosen


def resolve_window(source: RecordSource, spec: WindowSpec, partitions: Sequence[TopicPartition]) -> Window:
    """Turn offset bounds into capture times (reading the one record each names)."""
    start_offsets = {tp: off for tp, off in spec.drive_start_offsets.items() if tp in partitions}
    end_offsets = {tp: off for tp, off in spec.drive_end_offsets.items() if tp in partitions}
    start, end = spec.start, spec.end
    if isinstance(start, OffsetPoint):
        tp = (start.topic, start.partition)
        _check_named(tp, partitions, start)
        ts = source.timestamp_at(tp, start.offset)
        if ts is None:
            raise SourceError(f"start {start}: there is no record at that offset yet (the log ends there)")
        start_offsets[tp] = start.offset
        start = ts
    if isinstance(end, OffsetPoint):
        tp = (end.topic, end.partition)
        _check_named(tp, partitions, end)
        ts = source.timestamp_at(tp, end.offset)
        end_offsets[tp] = end.offset
        end = time.time_ns() if ts is None else ts
    if end <= start and not (end == start and end_offsets):
        raise SourceError("the window is empty: its end is not after its start")
    return Window(int(start), int(end), start_offsets, end_offsets, spec.drive)


def _check_named(tp: TopicPartition, partitions: Sequence[TopicPartition], point: OffsetPoint) -> None:
    if tp not in partitions:
        raise SourceError(f"offset {point} names a partition that is not among the chosen topics")


def open_window(source: RecordSource, partitions: Sequence[TopicPartition], window: Window, *,
                read_ahead_bytes: int = DEFAULT_READ_AHEAD_BYTES,
                missing: MissingRecords | None = None) -> MergedStream:
    """The chosen partitions over ``window``, merged by capture time; holes are noted
    in ``missing`` (give one to read them after the streams ended)."""
    streams = [source.stream(tp, window, read_ahead_bytes=read_ahead_bytes) for tp in partitions]
    if missing is not None:
        for stream in streams:
            stream.missing = missing
    return MergedStream(streams)


# -- the vehicle broker ----------------------------------------------------------------------


class BrokerSource(RecordSource):
    """The vehicle's broker at ``endpoint`` (through broker.client)."""

    def __init__(self, endpoint: str, *, timeout_s: float = 10.0):
        from broker.client import Admin

        self.endpoint = endpoint
        self.timeout_s = timeout_s
        self.description = f"the broker at {endpoint}"
        self.admin = Admin(endpoint, timeout_s=timeout_s)
        self._metadata: dict[str, Any] | None = None

    def _topics_meta(self) -> dict[str, Any]:
        if self._metadata is None:
            self._metadata = self.admin.list_topics()
        return self._metadata

    def topics(self) -> dict[str, int]:
        return {name: len(t["partitions"]) for name, t in self._topics_meta().items()}

    def topic_config(self, topic: str) -> dict[str, Any] | None:
        meta = self._topics_meta().get(topic)
        return dict(meta.get("config") or {}) if meta else None

    def timestamp_at(self, tp: TopicPartition, offset: int) -> int | None:
        from broker.client import Consumer

        start = self.admin.list_offset(tp[0], tp[1], "earliest")
        end = self.admin.list_offset(tp[0], tp[1], "latest")
        if offset == end:
            return None
        if not start <= offset < end:
            raise SourceError(f"offset {offset} is outside {tp[0]}:{tp[1]}, which holds [{start}, {end})")
        consumer = Consumer(self.endpoint, fetch_max_bytes=1, max_wait_ms=0, timeout_s=self.timeout_s)
        try:
            consumer.assign([tp])
            consumer.seek(tp[0], tp[1], offset)
            records = consumer.poll(self.timeout_s)
        finally:
            consumer.close()
        if not records:
            raise SourceError(f"could not read {tp[0]}:{tp[1]}:{offset}")
        return records[0].timestamp

    def count_between(self, tp: TopicPartition, start_ns: int, end_ns: int) -> int:
        first = self.admin.list_offset(tp[0], tp[1], "timestamp", max(0, start_ns))
        last = self.admin.list_offset(tp[0], tp[1], "timestamp", end_ns)
        return max(0, last - first)

    def offset_range(self, tp: TopicPartition, window: Window) -> tuple[int, int]:
        """The window's offsets ``[first, stop)`` in ``tp`` (module docstring), with ``stop``
        capped at the log end now."""
        topic, partition = tp
        admin = self.admin
        try:
            end = admin.list_offset(topic, partition, "latest")
        except UnknownTopicError:
            raise SourceError(f"{self.description} has no topic {topic!r}") from None
        first = window.start_offsets.get(tp)
        if first is None:
            first = admin.list_offset(topic, partition, "timestamp", max(0, window.start_ns))
        stop = window.end_offsets.get(tp)
        if stop is None:
            stop = admin.list_offset(topic, partition, "timestamp", window.end_ns)
        return first, min(stop, end)

    def count_window(self, tp: TopicPartition, window: Window) -> int:
        first, stop = self.offset_range(tp, window)
        return max(0, stop - first)

    def stream(self, tp: TopicPartition, window: Window, *,
               read_ahead_bytes: int = DEFAULT_READ_AHEAD_BYTES) -> PartitionStream:
        return _BrokerPartitionStream(self, tp, window, read_ahead_bytes)

    def close(self) -> None:
        self.admin.close()


class _BrokerPartitionStream(PartitionStream):
    source: BrokerSource

    def __init__(self, source: BrokerSource, tp: TopicPartition, window: Window, read_ahead_bytes: int):
        super().__init__(source, tp, window, max(1, int(read_ahead_bytes)))

    def __iter__(self) -> Iterator[Record]:
        from broker.client import Consumer

        topic, partition = self.tp
        expected, stop = self.source.offset_range(self.tp, self.window)
        expected = self._skip_deleted(expected, stop, at_open=True)
        if expected >= stop:
            return
        self.consumer = consumer = Consumer(self.source.endpoint, fetch_max_bytes=self.read_ahead_bytes,
                                            max_wait_ms=100, timeout_s=self.source.timeout_s)
        consumer.assign([self.tp])
        consumer.seek(topic, partition, expected)
        last_progress = time.monotonic()
        try:
            while expected < stop and consumer.position(topic, partition) < stop:
                try:
                    records = consumer.poll(1.0)
                except OffsetOutOfRangeError as exc:  # deleted under us, and the consumer said so
                    resumed = self._skip_deleted(expected, stop)
                    if resumed == expected:  # not retention (e.g. the log was cut below us): no way on
                        raise SourceError(f"{topic}:{partition}: {exc.message}") from None
                    expected = resumed
                    consumer.seek(topic, partition, expected)
                    continue
                if not records:
                    if time.monotonic() - last_progress > _STALL_S:
                        raise SourceError(f"{topic}:{partition}: no records for {_STALL_S:.0f}s below offset {stop}")
                    continue
                last_progress = time.monotonic()
                for record in records:
                    if record.offset >= stop:
                        break
                    if record.offset > expected:  # the consumer moved on by itself: a hole
                        self.missing.note(self.tp, expected, record.offset)
                    expected = record.offset + 1
                    yield record
                del records
            # a reset that jumped past the window's end delivered nothing more
            self.missing.note(self.tp, expected, stop)
        finally:
            self.close()

    def _skip_deleted(self, expected: int, stop: int, *, at_open: bool = False) -> int:
        """Where reading continues: ``expected``, or the log start when retention removed
        the records from ``expected`` on (the hole is noted). At open, a time window whose
        first record is the oldest one kept may have lost older ones: noted too."""
        log_start = self.source.admin.list_offset(self.tp[0], self.tp[1], "earliest")
        if log_start > expected:
            self.missing.note(self.tp, expected, min(log_start, stop))
            return min(log_start, stop)
        if (at_open and expected == log_start > 0 and self.tp not in self.window.start_offsets
                and self.window.start_ns > EARLIEST_NS):
            self.missing.note_before_log_start(self.tp, log_start)
        return expected


# -- the cloud Kafka cluster -----------------------------------------------------------------


def _template_regex(template: str, vehicle: str) -> re.Pattern[str]:
    if "{topic}" not in template:
        raise SourceError(f"Kafka topic template {template!r} lacks {{topic}}")
    pattern = re.escape(template).replace(re.escape("{vehicle}"), re.escape(vehicle))
    return re.compile("^" + pattern.replace(re.escape("{topic}"), "(?P<topic>.+)") + "$")


def _text_int(raw: bytes | None) -> int | None:
    if raw is None:
        return None
    try:
        return int(bytes(raw).decode("ascii"))
    except (UnicodeDecodeError, ValueError):
        return None


class KafkaSource(RecordSource):
    """A Kafka cluster holding the mirror's copy of a vehicle's topics."""

    def __init__(self, bootstrap: str, vehicle: str, *, template: str = DEFAULT_KAFKA_TEMPLATE,
                 config: dict[str, Any] | None = None, timeout_s: float = 15.0):
        try:
            import confluent_kafka
        except ImportError:
            raise SourceError("reading from Kafka needs confluent-kafka (pip install edge-appliance[mirror])") from None
        self._ck = confluent_kafka
        self.bootstrap = bootstrap
        self.vehicle = vehicle
        self.template = template
        self.extra = dict(config or {})
        self.timeout_s = timeout_s
        self.description = f"Kafka at {bootstrap} (vehicle {vehicle})"
        self._regex = _template_regex(template, vehicle)
        self._meta = self._consumer()
        self._topics: dict[str, tuple[str, int]] | None = None

    def _consumer(self, **overrides: Any) -> Any:  # a confluent_kafka.Consumer
        from edge.third_party_logs import librdkafka_logger  # librdkafka's log through ours, rate-limited

        conf = {"bootstrap.servers": self.bootstrap, "group.id": f"edge-replay-{uuid.uuid4().hex[:12]}",
                "enable.auto.commit": False, "enable.partition.eof": True, "auto.offset.reset": "earliest",
                "client.id": "edge-replay", "logger": librdkafka_logger(), **self.extra, **overrides}
        return self._ck.Consumer(conf)

    def kafka_topic(self, topic: str) -> str:
        return self.template.format(vehicle=self.vehicle, topic=topic)

    def topics(self) -> dict[str, int]:
        if self._topics is None:
            try:
                meta = self._meta.list_topics(timeout=self.timeout_s)
            except self._ck.KafkaException as exc:
                raise SourceError(f"{self.description}: {exc}") from None
            found = {}
            for name, topic in meta.topics.items():
                match = self._regex.match(name)
                if match and topic.error is None:
                    found[match["topic"]] = (name, len(topic.partitions))
            self._topics = found
        return {name: count for name, (_k, count) in self._topics.items()}

    def _tp(self, tp: TopicPartition) -> Any:  # a confluent_kafka.TopicPartition
        return self._ck.TopicPartition(self.kafka_topic(tp[0]), tp[1])

    def _watermarks(self, tp: TopicPartition) -> tuple[int, int]:
        try:
            low, high = self._meta.get_watermark_offsets(self._tp(tp), timeout=self.timeout_s)
            return int(low), int(high)
        except self._ck.KafkaException as exc:
            raise SourceError(f"{self.description}: {tp[0]}:{tp[1]}: {exc}") from None

    def offset_for_time(self, tp: TopicPartition, ts_ns: int) -> int:
        """First Kafka offset whose Kafka timestamp reaches ``ts_ns`` (ms precision); the
        high watermark when there is none. The mirror stamps capture time, and any later
        stamp (append time) only makes this earlier, never past a record in the window."""
        query = self._ck.TopicPartition(self.kafka_topic(tp[0]), tp[1], max(0, ts_ns // 1_000_000))
        try:
            found = self._meta.offsets_for_times([query], timeout=self.timeout_s)[0]
        except self._ck.KafkaException as exc:
            raise SourceError(f"{self.description}: {tp[0]}:{tp[1]}: {exc}") from None
        return found.offset if found.offset >= 0 else self._watermarks(tp)[1]

    def _read_one(self, tp: TopicPartition, kafka_offset: int) -> Any:  # a confluent_kafka.Message or None
        consumer = self._consumer(**{"queued.max.messages.kbytes": 1024})
        try:
            consumer.assign([self._ck.TopicPartition(self.kafka_topic(tp[0]), tp[1], kafka_offset)])
            deadline = time.monotonic() + self.timeout_s
            while time.monotonic() < deadline:
                msg = consumer.poll(0.5)
                if msg is None:
                    continue
                if msg.error():
                    if msg.error().code() == self._ck.KafkaError._PARTITION_EOF:
                        return None
                    raise SourceError(f"{self.description}: {tp[0]}:{tp[1]}: {msg.error()}")
                return msg
            raise SourceError(f"{self.description}: no answer for {tp[0]}:{tp[1]} within {self.timeout_s:.0f}s")
        finally:
            consumer.close()

    def kafka_offset_for_source(self, tp: TopicPartition, source_offset: int) -> int:
        """The first Kafka offset whose ``edge.source.offset`` is >= ``source_offset``
        (binary search: the mirror keeps source order within a partition)."""
        lo, hi = self._watermarks(tp)
        while lo < hi:
            mid = (lo + hi) // 2
            msg = self._read_one(tp, mid)
            if msg is None:
                hi = mid
                continue
            found = _text_int(dict(msg.headers() or ()).get("edge.source.offset"))
            if (found if found is not None else msg.offset()) < source_offset:
                lo = mid + 1
            else:
                hi = mid
        return lo

    def timestamp_at(self, tp: TopicPartition, offset: int) -> int | None:
        kafka_offset = self.kafka_offset_for_source(tp, offset)
        msg = self._read_one(tp, kafka_offset)
        if msg is None:
            return None
        return self.to_record(msg, tp[0]).timestamp

    def count_between(self, tp: TopicPartition, start_ns: int, end_ns: int) -> int:
        return max(0, self.offset_for_time(tp, end_ns) - self.offset_for_time(tp, start_ns))

    def to_record(self, msg: Any, topic: str) -> Record:
        headers: dict[str, bytes] = {}
        mirror: dict[str, bytes] = {}
        for name, value in msg.headers() or ():
            (mirror if name.startswith(MIRROR_HEADER_PREFIX) else headers)[name] = value if value is not None else b""
        capture = _text_int(mirror.get("edge.capture_ns"))
        if capture is None:
            capture = msg.timestamp()[1] * 1_000_000
        offset = _text_int(mirror.get("edge.source.offset"))
        partition = _text_int(mirror.get("edge.source.partition"))
        return Record(msg.offset() if offset is None else offset, capture, msg.key(), msg.value() or b"", headers,
                      topic, msg.partition() if partition is None else partition)

    def stream(self, tp: TopicPartition, window: Window, *,
               read_ahead_bytes: int = DEFAULT_READ_AHEAD_BYTES) -> PartitionStream:
        return _KafkaPartitionStream(self, tp, window, read_ahead_bytes)

    def close(self) -> None:
        self._meta.close()


class _KafkaPartitionStream(PartitionStream):
    source: KafkaSource

    def __init__(self, source: KafkaSource, tp: TopicPartition, window: Window, read_ahead_bytes: int):
        super().__init__(source, tp, window, max(1024, int(read_ahead_bytes)))

    def __iter__(self) -> Iterator[Record]:
        src, ck = self.source, self.source._ck
        if self.tp[0] not in src.topics():
            raise SourceError(f"{src.description} has no topic {src.kafka_topic(self.tp[0])!r}")
        _low, stop = src._watermarks(self.tp)
        start_offset = self.window.start_offsets.get(self.tp)
        first = (src.kafka_offset_for_source(self.tp, start_offset) if start_offset is not None
                 else src.offset_for_time(self.tp, self.window.start_ns))
        end_offset = self.window.end_offsets.get(self.tp)
        # Kafka's rule at the capture time's ns precision (module docstring): Kafka's own
        # lookups are in ms, so each bound is found from the ms answer on, which is at or
        # before the exact one: skip until the first record at or after the start, stop at
        # the first record from the end's ms answer on that is at or after the end
        end_from = stop if end_offset is not None else src.offset_for_time(self.tp, self.window.end_ns)
        started = start_offset is not None
        if first >= stop:
            return
        kb = max(1, self.read_ahead_bytes // 1024)
        self.consumer = consumer = src._consumer(**{
            "queued.max.messages.kbytes": kb, "max.partition.fetch.bytes": self.read_ahead_bytes,
            "fetch.max.bytes": max(self.read_ahead_bytes, 1_048_576)})
        consumer.assign([ck.TopicPartition(src.kafka_topic(self.tp[0]), self.tp[1], first)])
        last_progress = time.monotonic()
        try:
            while True:
                msg = consumer.poll(1.0)
                if msg is None:
                    if time.monotonic() - last_progress > _STALL_S:
                        raise SourceError(f"{src.description}: {self.tp[0]}:{self.tp[1]}: "
                                          f"no records for {_STALL_S:.0f}s")
                    continue
                last_progress = time.monotonic()
                if msg.error():
                    if msg.error().code() == ck.KafkaError._PARTITION_EOF:
                        return
                    raise SourceError(f"{src.description}: {self.tp[0]}:{self.tp[1]}: {msg.error()}")
                record = src.to_record(msg, self.tp[0])
                if end_offset is not None and record.offset >= end_offset:
                    return
                if msg.offset() >= end_from and record.timestamp >= self.window.end_ns:
                    return
                if not started:
                    if record.timestamp < self.window.start_ns:
                        continue
                    started = True
                yield record
                if msg.offset() + 1 >= stop:
                    return
        except ck.KafkaException as exc:
            raise SourceError(f"{src.description}: {exc}") from None
        finally:
            self.close()


def open_source(*, endpoint: str | None = None, kafka: str | None = None, vehicle: str | None = None,
                template: str = DEFAULT_KAFKA_TEMPLATE, kafka_config: dict[str, Any] | None = None) -> RecordSource:
    """The source a command line names: ``kafka`` (with ``vehicle``) or the broker."""
    if kafka:
        if not vehicle:
            raise SourceError("--kafka needs --vehicle (the mirror's topics are per vehicle)")
        return KafkaSource(kafka, vehicle, template=template, config=kafka_config)
    if not endpoint:
        raise SourceError("no source: give --endpoint or --kafka")
    try:
        return BrokerSource(endpoint)
    except BrokerError as exc:
        raise SourceError(f"broker at {endpoint}: {exc.message}") from None
