"""Drive boundaries: start and stop records on the internal topic ``_drives``.

A record's key is the drive name, its value JSON: ``{"event": "start"|"stop", "drive",
"time_ns", "reason", "vehicle"}``. ``edge up`` writes start/stop around a session and
``edge drives start|stop`` lets ignition hooks do it. A drive that was started but never
stopped (power cut) ends where the next one starts, or is ``open`` if it is the last one.

Drive names (``drive-20261122-101500``, UTC start time) are accepted wherever a time
window is (replay, export): ``resolve_drive`` turns one into ``(start_ns, end_ns)``.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone

from broker.client import Admin, Consumer, Producer
from broker.errors import BrokerError, UnknownTopicError

DRIVES_TOPIC = "_drives"


@dataclass
class Drive:
    name: str
    start_ns: int
    end_ns: int | None = None
    open: bool = False
    interrupted: bool = False
    reason: str = ""
    topics: dict[str, dict[str, int]] = field(default_factory=dict)

    @property
    def duration_s(self) -> float | None:
        return None if self.end_ns is None else (self.end_ns - self.start_ns) / 1e9

    def window(self, now_ns: int | None = None) -> tuple[int, int]:
        return self.start_ns, self.end_ns if self.end_ns is not None else (now_ns or time.time_ns())

    def to_json(self) -> dict:
        body = asdict(self)
        body["duration_s"] = self.duration_s
        return body


def new_drive_name(now_ns: int | None = None) -> str:
    moment = datetime.fromtimestamp((now_ns or time.time_ns()) / 1e9, tz=timezone.utc)
    return moment.strftime("drive-%Y%m%d-%H%M%S")


def record_event(endpoint: str, event: str, name: str, *, reason: str = "", vehicle: str = "",
                 time_ns: int | None = None) -> int:
    """Write a start or stop record durably; returns its offset."""
    if event not in ("start", "stop"):
        raise ValueError("event must be 'start' or 'stop'")
    body = {"event": event, "drive": name, "time_ns": time_ns or time.time_ns(), "reason": reason, "vehicle": vehicle}
    with Producer(endpoint, acks="durable", linger_ms=0, request_timeout_s=5.0) as producer:
        return producer.send(DRIVES_TOPIC, json.dumps(body).encode(), key=name.encode(),
                             timestamp_ns=body["time_ns"]).result(10).offset


def _read_events(endpoint: str) -> list[dict]:
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
    drives: list[Drive] = []
    by_name: dict[str, Drive] = {}
    for event in _read_events(endpoint):
        name, ts = event.get("drive"), event.get("time_ns")
        if not isinstance(name, str) or not isinstance(ts, int):
            continue
        if event.get("event") == "start":
            if drives and drives[-1].end_ns is None:
                drives[-1].end_ns, drives[-1].interrupted = ts, True
            drive = Drive(name, ts, reason=str(event.get("reason", "")))
            drives.append(drive)
            by_name[name] = drive
        elif event.get("event") == "stop" and name in by_name and by_name[name].end_ns is None:
            by_name[name].end_ns = ts
    if drives and drives[-1].end_ns is None:
        drives[-1].open = True
    if with_topics and drives:
        _fill_topics(endpoint, drives)
    return drives


def _fill_topics(endpoint: str, drives: list[Drive]) -> None:
    """Records and (estimated from average record size) bytes per topic in each drive."""
    with Admin(endpoint) as admin:
        topics = {n: t for n, t in admin.list_topics().items() if not n.startswith("_")}
        now = time.time_ns()
        for drive in drives:
            start, end = drive.window(now)
            for name, topic in topics.items():
                records = size = 0
                for p in topic["partitions"]:
                    first = admin.list_offset(name, p["partition"], "timestamp", start)
                    last = admin.list_offset(name, p["partition"], "timestamp", end)
                    count = max(0, last - first)
                    held = p["next_offset"] - p["log_start"]
                    records += count
                    size += int(p["size_bytes"] * count / held) if held else 0
                if records:
                    drive.topics[name] = {"records": records, "bytes": size}


def resolve_drive(endpoint: str, name: str) -> tuple[int, int]:
    for drive in list_drives(endpoint, with_topics=False):
        if drive.name == name:
            return drive.window()
    raise BrokerError(f"no drive named {name!r} (see `edge drives`)")
