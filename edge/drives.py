"""Drive boundaries: start and stop records on the internal topic ``_drives``.

A record's key is the drive name, its value JSON: ``{"event": "start"|"stop", "drive",
"time_ns", "reason", "vehicle", "offsets"}``. ``edge up`` writes start/stop around a session and
``edge drives start|stop`` lets ignition hooks do it. A drive that was started but never
stopped (power cut) ends where the next one starts, or is ``open`` if it is the last one.

A drive is delimited by offsets, not by capture times (which a sensor clock can step or
stamp years ahead): ``offsets`` is ``{topic: [next offset per partition]}`` of every
non-internal topic when the event was written (events written with an explicit time,
i.e. backfilled, carry none), so a drive holds, per partition, the
records from its start event's offset to its end's (the next start's for an interrupted
drive, the log end for an open one); a topic that is missing from the start event was
created during the drive and counts from offset 0. Records written before this field
existed have no ``offsets``: such drives fall back to time lookups (Kafka's rule).

Drive names (``drive-20261122-101500``, UTC start time) are accepted wherever a time
window is (replay, export): ``resolve_drive`` turns one into ``(start_ns, end_ns)``,
``drive_resolution`` into that plus the drive's offsets (edge.replay.timespec).
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from broker.base.names import DRIVES_TOPIC, is_internal
from broker.client import Admin, Consumer, Producer
from broker.errors import BrokerError, UnknownTopicError

if TYPE_CHECKING:  # the replay package loads only for a window or a read; its types are named here
    from edge.replay.sources import RecordSource
    from edge.replay.timespec import DriveOffsets


@dataclass
class Drive:
    name: str
    start_ns: int
    end_ns: int | None = None
    open: bool = False
    interrupted: bool = False
    reason: str = ""
    topics: dict[str, dict[str, int]] = field(default_factory=dict)
    start_offsets: dict[str, list[int]] | None = None  # None: the event predates offsets
    end_offsets: dict[str, list[int]] | None = None  # None: open, or the event predates offsets

    @property
    def duration_s(self) -> float | None:
        return None if self.end_ns is None else (self.end_ns - self.start_ns) / 1e9

    def window(self, now_ns: int | None = None) -> tuple[int, int]:
        return self.start_ns, self.end_ns if self.end_ns is not None else (now_ns or time.time_ns())

    def to_json(self) -> dict[str, Any]:
        body = asdict(self)
        body["duration_s"] = self.duration_s
        return body

    def offset_range(self, topic: str, partition: int, log_end: int) -> tuple[int, int] | None:
        """This drive's offsets ``[start, end)`` of a partition (module docstring), or None
        when its events carry no offsets (then times decide)."""
        if self.start_offsets is None or (self.end_offsets is None and self.end_ns is not None):
            return None  # an event without offsets: the drive is a time window
        start = _offset_at(self.start_offsets, topic, partition, default=0)
        end = log_end if self.end_offsets is None else _offset_at(self.end_offsets, topic, partition, default=0)
        return min(start, log_end), min(max(start, end), log_end)

    def offset_bounds(self, topics: dict[str, list[int]]) -> DriveOffsets | None:
        """Start and end offsets per (topic, partition) of ``topics`` (name -> log end per
        partition), as a window takes them; None when the events carry no offsets."""
        starts: dict[tuple[str, int], int] = {}
        ends: dict[tuple[str, int], int] = {}
        for name, log_ends in topics.items():
            for partition, log_end in enumerate(log_ends):
                bounds = self.offset_range(name, partition, log_end)
                if bounds is None:
                    return None
                starts[(name, partition)], ends[(name, partition)] = bounds
        return starts, ends


def _offset_at(offsets: dict[str, list[int]], topic: str, partition: int, *, default: int) -> int:
    per_partition = offsets.get(topic)
    if not isinstance(per_partition, list) or partition >= len(per_partition):
        return default
    value = per_partition[partition]
    return value if isinstance(value, int) and value >= 0 else default


def _log_ends(admin: Admin) -> dict[str, list[int]]:
    """Next offset of every partition of every non-internal topic."""
    return {name: [p["next_offset"] for p in topic["partitions"]]
            for name, topic in admin.list_topics().items() if not is_internal(name)}


DRIVE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


def check_drive_name(name: str) -> str:
    """A drive name is a file-name-safe word (it names export folders): letters, digits, ``.``,
    ``_`` and ``-``, at most 100 characters; ``/`` and the like are refused (ValueError)."""
    if not DRIVE_NAME.match(name):
        raise ValueError(f"drive name {name!r} is not usable: use letters, digits, '.', '_' and '-' "
                         "(at most 100, starting with a letter or digit), e.g. drive-20261122-101500")
    return name


def new_drive_name(now_ns: int | None = None) -> str:
    moment = datetime.fromtimestamp((now_ns or time.time_ns()) / 1e9, tz=UTC)
    return moment.strftime("drive-%Y%m%d-%H%M%S")


def record_event(endpoint: str, event: str, name: str, *, reason: str = "", vehicle: str = "",
                 time_ns: int | None = None) -> int:
    """Write a start or stop record durably; returns its offset."""
    if event not in ("start", "stop"):
        raise ValueError("event must be 'start' or 'stop'")
    check_drive_name(name)
    event_ns = time_ns or time.time_ns()
    body: dict[str, Any] = {"event": event, "drive": name, "time_ns": event_ns, "reason": reason, "vehicle": vehicle}
    if time_ns is None:  # an event of this moment; a given time (a backfill) is a time, not these offsets
        with Admin(endpoint, timeout_s=5.0) as admin:
            body["offsets"] = _log_ends(admin)
    with Producer(endpoint, acks="durable", linger_ms=0, request_timeout_s=5.0) as producer:
        written = producer.send(DRIVES_TOPIC, json.dumps(body).encode(), key=name.encode(),
                                timestamp_ns=event_ns).result(10)
    if written.offset is None:  # acks=durable answers with the offset; None only with acks=none
        raise BrokerError(f"drive {event} record of {name!r}: acknowledged without an offset")
    return written.offset


def _read_events(endpoint: str) -> list[dict[str, Any]]:
    consumer = Consumer(endpoint, max_wait_ms=0)
    try:
        with Admin(endpoint) as admin:
            end = admin.list_offset(DRIVES_TOPIC, 0, "latest")
        consumer.assign([(DRIVES_TOPIC, 0)])
        events = []
        while consumer.position(DRIVES_TOPIC, 0) < end:
            records = consumer.poll(1.0)
            if not records:
                break
            for record in records:
                try:
                    events.append(json.loads(bytes(record.value)))
                except ValueError:
                    continue  # not ours; never fatal for a listing
        return events
    except UnknownTopicError:
        return []
    finally:
        consumer.close()


def list_drives(endpoint: str, *, with_topics: bool = True) -> list[Drive]:
    drives = drives_from_events(_read_events(endpoint))
    if with_topics and drives:
        _fill_topics(endpoint, drives)
    return drives


def drives_from_events(events: list[dict[str, Any]]) -> list[Drive]:
    """The drives that start/stop records describe, in order (the broker's or the cloud's copy)."""
    drives: list[Drive] = []
    by_name: dict[str, Drive] = {}
    for event in events:
        name, ts = event.get("drive"), event.get("time_ns")
        if not isinstance(name, str) or not isinstance(ts, int):
            continue
        offsets = event.get("offsets") if isinstance(event.get("offsets"), dict) else None
        if event.get("event") == "start":
            if drives and drives[-1].end_ns is None:
                drives[-1].end_ns, drives[-1].interrupted = ts, True
                drives[-1].end_offsets = offsets
            drive = Drive(name, ts, reason=str(event.get("reason", "")), start_offsets=offsets)
            drives.append(drive)
            by_name[name] = drive
        elif event.get("event") == "stop" and name in by_name and by_name[name].end_ns is None:
            by_name[name].end_ns = ts
            by_name[name].end_offsets = offsets
    if drives and drives[-1].end_ns is None:
        drives[-1].open = True
    return drives


def _fill_topics(endpoint: str, drives: list[Drive]) -> None:
    """Records and (estimated from average record size) bytes per topic in each drive."""
    with Admin(endpoint) as admin:
        topics = {n: t for n, t in admin.list_topics().items() if not is_internal(n)}
        now = time.time_ns()
        for drive in drives:
            start, end = drive.window(now)
            for name, topic in topics.items():
                records = size = 0
                for p in topic["partitions"]:
                    by_offsets = drive.offset_range(name, p["partition"], p["next_offset"])
                    if by_offsets is not None:
                        first, last = max(by_offsets[0], p["log_start"]), max(by_offsets[1], p["log_start"])
                    else:
                        first = admin.list_offset(name, p["partition"], "timestamp", start)
                        last = admin.list_offset(name, p["partition"], "timestamp", end)
                    count = max(0, last - first)
                    held = p["next_offset"] - p["log_start"]
                    records += count
                    size += int(p["size_bytes"] * count / held) if held else 0
                if records:
                    drive.topics[name] = {"records": records, "bytes": size}


def find_drive(endpoint: str, name: str) -> Drive:
    return _named(list_drives(endpoint, with_topics=False), name, "(see `edge drives`)")


def _named(drives: list[Drive], name: str, hint: str) -> Drive:
    for drive in drives:
        if drive.name == name:
            return drive
    raise BrokerError(f"no drive named {name!r} {hint}")


def resolve_drive(endpoint: str, name: str) -> tuple[int, int]:
    return find_drive(endpoint, name).window()


def drive_resolution(endpoint: str, name: str) -> tuple[int, int, tuple[str, ...], DriveOffsets | None]:
    """``(start_ns, end_ns, topics, offsets)`` for edge.replay.timespec's resolver:
    ``offsets`` is ``(start_offsets, end_offsets)`` per (topic, partition), or None for a
    drive whose events carry no offsets."""
    drive = find_drive(endpoint, name)
    start, end = drive.window()
    with Admin(endpoint) as admin:
        bounds = drive.offset_bounds(_log_ends(admin))
    return start, end, (), bounds


def source_drive_resolution(source: RecordSource, name: str) -> tuple[int, int, tuple[str, ...], Any]:
    """``drive_resolution`` from a record source holding the catalog, e.g. the cloud copy the
    mirror ships (``[mirror] catalog``, docs/MIRROR.md): its records carry the vehicle's
    offsets, which the source maps back (``edge.source.offset``). The log end is not known
    there: an open drive runs to the end of what the source holds."""
    from edge.replay.timespec import END_OF_LOG_NS, Window

    topics = source.topics()
    if DRIVES_TOPIC not in topics:
        raise BrokerError(f"{source.description} holds no drive catalog ({DRIVES_TOPIC}); the mirror ships it when "
                          "[mirror] catalog = true (the default) and a drive was recorded")
    events: list[dict[str, Any]] = []
    for record in source.stream((DRIVES_TOPIC, 0), Window(0, END_OF_LOG_NS)):
        try:
            events.append(json.loads(bytes(record.value)))
        except ValueError:
            continue  # not ours; never fatal for a lookup
    drive = _named(drives_from_events(events), name, f"in the catalog of {source.description}")
    start, end = drive.window()
    unbounded = {topic: [END_OF_LOG_NS] * count for topic, count in topics.items() if not topic.startswith("_")}
    return start, end, (), drive.offset_bounds(unbounded)
