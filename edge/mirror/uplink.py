"""Spending the uplink: which partition ships next, and per-topic caps.

Order (recomputed every second): partitions holding a *complete* event (edge/events.py, broker
pins) whose records the mirror has not committed yet go first (``events_first``), then by topic
priority (``priorities``, higher first). Records of a partition still ship in offset order, from
its committed position: the mirror's exactly-once commit is one offset per partition, so an event
is reached by shipping its partition's backlog before it, never by skipping ahead.

Per-topic caps (``topic_bandwidth``): a token bucket per topic, checked without waiting; a topic
over its cap is passed over this round while others ship (the global ``bandwidth`` still bounds
the sum). A record that the topic's sampling passes over costs no tokens.
"""

from __future__ import annotations

import time
from typing import Any, Callable

from .bandwidth import TokenBucket
from .config import MirrorConfig

TP = tuple[str, int]


class UplinkPlan:
    def __init__(self, config: MirrorConfig, *, clock: Callable[[], float] = time.monotonic):
        self.config = config
        self.clock = clock
        self._buckets: dict[str, TokenBucket | None] = {}
        self.event_partitions: set[TP] = set()
        self.capped = 0  # times a topic was passed over for its cap

    def note_events(self, pins: list[dict[str, Any]], committed: dict[TP, int]) -> None:
        """Partitions with records of a complete event beyond what the mirror has committed."""
        wanted: set[TP] = set()
        if self.config.events_first:
            for pin in pins:
                if not pin.get("closed"):
                    continue  # still recording: its end is not known yet
                for topic, partition, _first, end in pin["ranges"]:
                    if end is not None and committed.get((topic, partition), 0) < end and self.config.selects(topic):
                        wanted.add((topic, partition))
        self.event_partitions = wanted

    def order(self, partitions) -> list[TP]:
        return sorted(partitions, key=lambda tp: (tp not in self.event_partitions, -self.config.priority(tp[0])))

    def admits(self, record) -> bool:
        """True when ``record``'s topic is within its cap (tokens taken), or has none."""
        topic = record.topic
        if topic not in self._buckets:
            cap = self.config.topic_cap(topic)
            self._buckets[topic] = TokenBucket(cap, clock=self.clock) if cap else None
        bucket = self._buckets[topic]
        if bucket is None:
            return True
        every = self.config.every(topic)
        if every > 1 and record.offset % every:
            return True  # sampled out: nothing goes up the link
        if bucket.try_acquire(len(record.value)):
            return True
        self.capped += 1
        return False
