"""Events: the seconds around an incident, kept whatever happens to the rest of the disk.

An event is a broker pin (broker/storage/pins.py) over a window ``[now - before, now + after]``
of some topics (all recorded, i.e. non-internal, topics when none are named). The broker owns
the event's whole state in its data directory (``pins.json``, atomically written): id, label,
window, topics and per-partition offset ranges; this module only names and reports it, so there
is one copy to keep consistent and it survives restarts and power cuts with the records.

State: ``recording`` while the after-window is still open (the pin's ranges are open),
``complete`` once the broker closed them, ``shipped`` once the mirror's committed offsets passed
every range's end. ``lost_bytes`` > 0 says the disk guard's critical level deleted pinned records
(also logged ``event=pinned_deleted`` and counted in ``pinned_deleted_bytes``).

Overlapping events *stack*: each keeps its own pin; deleting one never releases records another
still pins. Storage cost: ``pinned_bytes`` per event (whole segments holding its records) and in
total (shared segments counted once).

Config (``[events]``): ``before``/``after`` defaults and ``topics`` (default: all recorded);
``on_gap = true`` makes a driver create an event (label ``gap:<sensor>``) when its stream has
a gap (drivers/continuity.py), the window reaching back over the gap; ``[[events.triggers]]``
(``topic``, ``header = "event=hard_brake"``, ``label``) make ``edge events watch`` (run by
``edge up`` when any is configured) create one for each record of ``topic`` carrying that
header. Each automatic trigger fires at most once every ``trigger_min_interval``; creating
the event never blocks capture (a thread of its own) and a failure is logged, not raised.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from broker.client import Admin
from broker.errors import BrokerError, InvalidRequestError
from broker.logs import log_event
from broker.topic_config import DurationNs

MAX_LABEL_LENGTH = 200

logger = logging.getLogger("edge.events")


class HeaderTrigger(BaseModel):
    """``[[events.triggers]]``: a record of ``topic`` whose header matches creates an event."""

    model_config = ConfigDict(extra="forbid")

    topic: str = Field(min_length=1, max_length=200)
    header: str = Field(pattern=r"^[^=]+=.*$", description="NAME=VALUE, e.g. event=hard_brake")
    label: str | None = Field(None, max_length=MAX_LABEL_LENGTH, description="default: the header's value")

    def matches(self, record: Any) -> bool:
        name, _, value = self.header.partition("=")
        return bool(record.topic == self.topic and record.header(name) == value)

    def event_label(self) -> str:
        return self.label or self.header.partition("=")[2]


class EventsConfig(BaseModel):
    """``[events]``: defaults of ``edge events create``, ``POST /api/events`` and the dashboard."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    before_ns: DurationNs = Field(30 * 10**9, alias="before", description="window before the trigger")
    after_ns: DurationNs = Field(10 * 10**9, alias="after", description="window after the trigger (keeps recording)")
    topics: list[str] | None = Field(None, description="topics an event pins; default: every recorded topic")
    on_gap: bool = Field(False, description="a gap in a sensor's stream (drivers/continuity.py) creates an event")
    on_clock_step: bool = Field(False, description="a step of a sensor's clock against the host's creates an event")
    triggers: list[HeaderTrigger] = Field(default_factory=list, description="records that create an event")
    trigger_min_interval_ns: DurationNs = Field(60 * 10**9, alias="trigger_min_interval",
                                                description="at most one event per trigger (or sensor) this often")


def iso(ns: int) -> str:
    return datetime.fromtimestamp(ns / 1e9, tz=UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def new_event_id(now_ns: int) -> str:
    moment = datetime.fromtimestamp(now_ns / 1e9, tz=UTC)
    return f"ev-{moment:%Y%m%d-%H%M%S}-{secrets.token_hex(2)}"


def recorded_topics(admin: Admin) -> list[str]:
    return sorted(name for name in admin.list_topics() if not name.startswith("_"))


def event_state(pin: dict[str, Any]) -> str:
    if not pin["closed"]:
        return "recording"
    return "shipped" if pin.get("shipped") else "complete"


def event_json(pin: dict[str, Any]) -> dict[str, Any]:
    """The user-facing view of a broker pin (as listed, with mirror progress)."""
    return {
        "id": pin["id"], "label": pin["label"], "state": event_state(pin),
        "start": iso(pin["start_ns"]), "end": iso(pin["end_ns"]), "start_ns": pin["start_ns"], "end_ns": pin["end_ns"],
        "created": iso(pin["created_ns"]), "topics": pin["topics"],
        "pinned_bytes": pin.get("pinned_bytes", 0),
        "records": pin.get("records", 0), "shipped_records": pin.get("shipped_records", 0),
        "lost_bytes": sum(x[4] for x in pin.get("lost", [])), "lost": pin.get("lost", []),
        "ranges": [{"topic": t, "partition": p, "first_offset": a, "end_offset": b} for t, p, a, b in pin["ranges"]],
    }


def create_event(admin: Admin, *, label: str = "", before_ns: int, after_ns: int, topics: list[str] | None = None,
                 now_ns: int | None = None) -> dict[str, Any]:
    """Pin ``[now - before, now + after]`` of ``topics`` (default: all recorded); the event's JSON."""
    now = time.time_ns() if now_ns is None else now_ns
    if len(label) > MAX_LABEL_LENGTH:
        raise InvalidRequestError(f"event label is {len(label)} characters, the maximum is {MAX_LABEL_LENGTH}")
    names = list(dict.fromkeys(topics)) if topics else recorded_topics(admin)
    if not names:
        raise InvalidRequestError("no recorded topics to pin yet (name them with --topics)")
    event_id = new_event_id(now)
    admin.set_pin(event_id, names, now - before_ns, now + after_ns, label=label)
    return show_event(admin, event_id)


def list_events(admin: Admin) -> dict[str, Any]:
    """``{"events": [...], "pinned_bytes": total, "pinned_deleted_bytes": ...}``."""
    report = admin.list_pins()
    return {"events": [event_json(p) for p in report["pins"]], "pinned_bytes": report["pinned_bytes"],
            "pinned_deleted_bytes": report["pinned_deleted_bytes"]}


def find_event(admin: Admin, event_id: str) -> dict[str, Any] | None:
    for pin in admin.list_pins()["pins"]:
        if pin["id"] == event_id:
            return event_json(pin)
    return None


def show_event(admin: Admin, event_id: str) -> dict[str, Any]:
    event = find_event(admin, event_id)
    if event is None:
        raise InvalidRequestError(f"no event with id {event_id!r} (see `edge events list`)")
    return event


def delete_event(admin: Admin, event_id: str) -> None:
    admin.clear_pin(event_id)


Offsets = dict[tuple[str, int], int]


def event_resolution(endpoint: str, event_id: str) -> tuple[int, int, tuple[str, ...], tuple[Offsets, Offsets]]:
    """``(start_ns, end_ns, topics, (start_offsets, end_offsets))`` for edge.replay.timespec's
    resolver: exactly the event's pinned offsets (an event still recording ends by time)."""
    with Admin(endpoint) as admin:
        event = show_event(admin, event_id)
    starts: Offsets = {}
    ends: Offsets = {}
    for r in event["ranges"]:
        starts[(r["topic"], r["partition"])] = r["first_offset"]
        if r["end_offset"] is not None:
            ends[(r["topic"], r["partition"])] = r["end_offset"]
    return event["start_ns"], event["end_ns"] + 1, tuple(event["topics"]), (starts, ends)


class GapTrigger:
    """``on_gap`` / ``on_clock_step`` callback of a driver: an event around each gap or clock
    step (label ``gap:<sensor>`` / ``clock_step:<sensor>``; rate-limited per sensor and kind)."""

    def __init__(self, endpoint: str, sensor: str, config: EventsConfig, *, kind: str = "gap"):
        self.endpoint = endpoint
        self.sensor = sensor
        self.config = config
        self.kind = kind
        self._last_ns: int | None = None
        self.created: list[str] = []

    def __call__(self, gap: dict[str, Any]) -> threading.Thread | None:
        now = time.time_ns()
        if self._last_ns is not None and now - self._last_ns < self.config.trigger_min_interval_ns:
            log_event(logger, logging.INFO, f"{self.kind}_event_skipped", sensor=self.sensor,
                      reason="trigger_min_interval")
            return None
        self._last_ns = now
        thread = threading.Thread(target=self._create, args=(gap, now), name=f"{self.kind}-event-{self.sensor}",
                                  daemon=True)
        thread.start()
        return thread

    def _create(self, gap: dict[str, Any], now: int) -> None:
        reach = self.config.before_ns + max(0, now - int(gap["start_ns"]))  # back over the gap, then `before`
        try:
            with Admin(self.endpoint) as admin:
                event = create_event(admin, label=f"{self.kind}:{self.sensor}", before_ns=reach,
                                     after_ns=self.config.after_ns, topics=self.config.topics, now_ns=now)
        except BrokerError as exc:
            log_event(logger, logging.ERROR, f"{self.kind}_event_failed", sensor=self.sensor, reason=exc.message)
            return
        self.created.append(event["id"])
        log_event(logger, logging.WARNING, f"{self.kind}_event", sensor=self.sensor, id=event["id"],
                  start_ns=gap["start_ns"], **{k: v for k, v in gap.items() if k != "start_ns"})


def watch_triggers(endpoint: str, config: EventsConfig, stop: threading.Event, *, poll_s: float = 0.5) -> int:
    """``edge events watch``: an event for each record matching a ``[[events.triggers]]`` entry,
    from the records written after the watcher started; returns the events created."""
    from broker.client import Consumer

    topics = sorted({t.topic for t in config.triggers})
    last: dict[int, int] = {}
    created = 0
    consumer = Consumer(endpoint)
    assigned: set[tuple[str, int]] = set()
    first_round = True
    try:
        while not stop.is_set():
            with Admin(endpoint) as admin:  # trigger topics may appear later: pick them up from their start
                known = admin.list_topics()
            fresh = [(t, p["partition"]) for t in topics if t in known for p in known[t]["partitions"]
                     if (t, p["partition"]) not in assigned]
            if fresh:
                consumer.assign([*assigned, *fresh])
                # there at the start: only records written from now; created later: all of them
                (consumer.seek_to_end if first_round else consumer.seek_to_beginning)(fresh)
                assigned.update(fresh)
            first_round = False
            for record in consumer.poll(poll_s) if assigned else ():
                for i, trigger in enumerate(config.triggers):
                    if not trigger.matches(record):
                        continue
                    now = time.time_ns()
                    if i in last and now - last[i] < config.trigger_min_interval_ns:
                        continue
                    last[i] = now
                    try:
                        with Admin(endpoint) as admin:
                            event = create_event(admin, label=trigger.event_label(), before_ns=config.before_ns,
                                                 after_ns=config.after_ns, topics=config.topics, now_ns=now)
                    except BrokerError as exc:
                        log_event(logger, logging.ERROR, "trigger_event_failed", topic=record.topic,
                                  offset=record.offset, reason=exc.message)
                        continue
                    created += 1
                    log_event(logger, logging.WARNING, "trigger_event", id=event["id"], label=event["label"],
                              topic=record.topic, partition=record.partition, offset=record.offset)
            if not assigned:
                stop.wait(poll_s)
    finally:
        consumer.close()
    return created
