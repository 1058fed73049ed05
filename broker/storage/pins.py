"""Pins: offset ranges per partition that retention and the disk guard keep (events).

A pin is created for a time window ``[start_ns, end_ns]`` (capture time, Kafka's lookup rule)
over some topics. At creation each partition's range starts at the first offset whose capture
time is >= ``start_ns`` (the before-window, already recorded) and is *open*: everything from
there on is kept while the after-window records. Once the host clock has passed
``end_ns + PIN_CLOSE_GRACE_NS`` (late records still arriving), the range is closed at the first
offset whose capture time is > ``end_ns`` (the log end when there is none). An open range is a
superset of the closed one, so closing late never loses a pinned record.

Stored in ``DATA/pins.json`` (``layout.PINS_FILE``), rewritten whole with ``atomic_write``
(temp, fsync, rename, fsync the directory) on every change, so pins survive restarts and power
cuts. Format::

    {"version": 1, "pins": [{"id", "label", "start_ns", "end_ns", "created_ns", "topics": [...],
      "closed": bool, "ranges": [[topic, partition, first, next_or_null], ...],
      "lost": [[topic, partition, first, next, bytes, reason], ...]}]}

Overlapping pins *stack*: each keeps its own ranges, deleting one never releases another's.
Retention honours a pin like the mirror's protected offset: a segment holding any pinned offset
is kept, and (whole segments, oldest first) so is everything after it in that partition. Only
the disk guard's critical level may delete pinned records; each such loss is written into the
pin (``lost``) so it is reported with the event, never silently.

An unreadable ``pins.json`` is renamed aside (``pins.json.unreadable-<ns>``) and logged as an
error; the broker then starts with no pins rather than refuse to record.
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import InvalidRequestError
from ..logs import log_event
from .layout import PINS_FILE, atomic_write

logger = logging.getLogger("broker.storage")

PIN_CLOSE_GRACE_NS = 5_000_000_000
MAX_PIN_ID_LENGTH = 100
_PIN_ID = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]*$")


def validate_pin_id(pin_id: object) -> str:
    if not isinstance(pin_id, str) or not _PIN_ID.match(pin_id) or len(pin_id) > MAX_PIN_ID_LENGTH:
        raise InvalidRequestError(
            f"invalid event id {pin_id!r}: use up to {MAX_PIN_ID_LENGTH} letters, digits, '.', '_' and '-'")
    return pin_id


@dataclass(slots=True)
class PinRange:
    topic: str
    partition: int
    first: int
    next: int | None  # None: open, everything from ``first`` on

    def overlaps(self, base: int, next_offset: int) -> bool:
        return next_offset > self.first and (self.next is None or base < self.next)


@dataclass(slots=True)
class Pin:
    id: str
    label: str
    start_ns: int
    end_ns: int
    created_ns: int
    topics: list[str]
    ranges: list[PinRange]
    closed: bool = False
    lost: list[list[Any]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "label": self.label, "start_ns": self.start_ns, "end_ns": self.end_ns,
                "created_ns": self.created_ns, "topics": list(self.topics), "closed": self.closed,
                "ranges": [[r.topic, r.partition, r.first, r.next] for r in self.ranges],
                "lost": [list(x) for x in self.lost]}

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> Pin:
        return cls(str(raw["id"]), str(raw.get("label", "")), int(raw["start_ns"]), int(raw["end_ns"]),
                   int(raw["created_ns"]), [str(t) for t in raw["topics"]],
                   [PinRange(str(t), int(p), int(a), None if b is None else int(b)) for t, p, a, b in raw["ranges"]],
                   bool(raw.get("closed", False)), [list(x) for x in raw.get("lost", [])])


#: (topic, partition, capture time) -> first offset with capture time >= it, or None
OffsetForTime = Callable[[str, int, int], "int | None"]


class PinStore:
    """The pins of one data directory; every change is persisted before it is answered."""

    def __init__(self, data_dir: Path):
        self.path = data_dir / PINS_FILE
        self._pins: dict[str, Pin] = {}
        self._load()

    def _load(self) -> None:
        try:
            raw = json.loads(self.path.read_text())
            pins = [Pin.from_json(p) for p in raw["pins"]]
        except FileNotFoundError:
            return
        except (ValueError, TypeError, KeyError) as exc:
            aside = self.path.with_name(f"{PINS_FILE}.unreadable-{time.time_ns()}")
            os.replace(self.path, aside)
            log_event(logger, logging.ERROR, "pins_unreadable", path=self.path, moved_to=aside, reason=exc,
                      effect="starting without pins: events recorded before are no longer protected")
            return
        self._pins = {p.id: p for p in pins}

    def _save(self) -> None:
        body = {"version": 1, "pins": [p.to_json() for p in self._pins.values()]}
        atomic_write(self.path, json.dumps(body, separators=(",", ":")).encode())

    def __len__(self) -> int:
        return len(self._pins)

    def get(self, pin_id: str) -> Pin | None:
        return self._pins.get(pin_id)

    def all(self) -> list[Pin]:
        return sorted(self._pins.values(), key=lambda p: (p.start_ns, p.id))

    def add(self, pin: Pin) -> None:
        if pin.id in self._pins:
            raise InvalidRequestError(f"an event with id {pin.id!r} exists already")
        self._pins[pin.id] = pin
        self._save()
        log_event(logger, logging.INFO, "pin_set", id=pin.id, label=pin.label, start_ns=pin.start_ns,
                  end_ns=pin.end_ns, ranges=len(pin.ranges))

    def remove(self, pin_id: str) -> Pin:
        pin = self._pins.pop(pin_id, None)
        if pin is None:
            raise InvalidRequestError(f"no event with id {pin_id!r}")
        self._save()
        log_event(logger, logging.INFO, "pin_cleared", id=pin_id)
        return pin

    def close_due(self, now_ns: int, offset_after: Callable[[str, int, int], int]) -> list[Pin]:
        """Close the open ranges of pins whose after-window has passed; ``offset_after(topic,
        partition, end_ns)`` is the first offset past the window."""
        closed = []
        for pin in self._pins.values():
            if pin.closed or now_ns < pin.end_ns + PIN_CLOSE_GRACE_NS:
                continue
            for r in pin.ranges:
                if r.next is None:
                    r.next = max(r.first, offset_after(r.topic, r.partition, pin.end_ns))
            pin.closed = True
            closed.append(pin)
        if closed:
            self._save()
            for pin in closed:
                log_event(logger, logging.INFO, "pin_closed", id=pin.id,
                          ranges=",".join(f"{r.topic}/{r.partition}:{r.first}-{r.next}" for r in pin.ranges))
        return closed

    def ranges_of(self, topic: str, partition: int) -> list[PinRange]:
        return [r for p in self._pins.values() for r in p.ranges if r.topic == topic and r.partition == partition]

    def record_loss(self, topic: str, partition: int, base: int, next_offset: int, size: int, reason: str) -> list[str]:
        """Note in every pin overlapping ``[base, next_offset)`` that those records were deleted;
        returns the ids of the pins hit."""
        hit = []
        for pin in self._pins.values():
            if any(r.topic == topic and r.partition == partition and r.overlaps(base, next_offset) for r in pin.ranges):
                pin.lost.append([topic, partition, base, next_offset, size, reason])
                hit.append(pin.id)
        if hit:
            self._save()
        return hit

    def forget_topic(self, topic: str) -> None:
        """A deleted topic's ranges go (its records are gone by the operator's order)."""
        changed = False
        for pin in self._pins.values():
            kept = [r for r in pin.ranges if r.topic != topic]
            if len(kept) != len(pin.ranges):
                pin.ranges = kept
                changed = True
        if changed:
            self._save()


def shipped_progress(pin: Pin, committed: dict[tuple[str, int], int]) -> dict[str, Any]:
    """How much of ``pin`` the mirror has shipped, from its committed offsets: records shipped of
    records pinned (a closed pin only: an open one is still growing) and whether all went."""
    total = shipped = 0
    for r in pin.ranges:
        if r.next is None:
            continue
        total += r.next - r.first
        shipped += max(0, min(committed.get((r.topic, r.partition), 0), r.next) - r.first)
    return {"records": total, "shipped_records": shipped, "shipped": pin.closed and shipped >= total}
