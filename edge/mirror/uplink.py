"""Spending the uplink: which partition ships next, and per-topic caps.

Order (recomputed every second): partitions holding a *complete* event (edge/events.py, broker
pins) whose records the mirror has not committed yet go first (``events_first``), then live
partitions (oldest unshipped record within ``live_window``) by topic priority (``priorities``,
higher first), then backlog by priority; latest-only topics skip ahead to their newest record
when behind (edge/mirror/service.py). The byte budget (edge/mirror/budget.py) is spent in this
order. Records of a partition still ship in offset order, from
its committed position: the mirror's exactly-once commit is one offset per partition, so an event
is reached by shipping its partition's backlog before it, never by skipping ahead.

Per-topic caps (``topic_bandwidth``): a token bucket per topic, checked without waiting; a topic
over its cap is passed over this round while others ship (the global ``bandwidth`` still bounds
the sum). A record that the topic's sampling passes over costs no tokens.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

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
        self.event_backlog_bytes = 0  # complete events' records not yet committed (estimated from average sizes)

    def note_events(self, pins: list[dict[str, Any]], committed: dict[TP, int],
                    record_bytes: dict[TP, float] | None = None) -> None:
        """Partitions with records of a complete event beyond what the mirror has committed, and
        about how many bytes those records are (``record_bytes``: average record size per partition)."""
        wanted: set[TP] = set()
        backlog = 0.0
        for pin in pins:
            if not pin.get("closed"):
                continue  # still recording: its end is not known yet
            for topic, partition, first, end in pin["ranges"]:
                tp = (topic, partition)
                if end is not None and committed.get(tp, 0) < end and self.config.selects(topic):
                    wanted.add(tp)
                    unshipped = end - max(committed.get(tp, 0), first or 0)
                    backlog += unshipped * (record_bytes or {}).get(tp, 0.0) / self.config.every(topic)
        self.event_partitions = wanted if self.config.events_first else set()
        self.event_backlog_bytes = int(backlog)

    def live(self, partitions: Iterable[TP], heads: dict[TP, int], now_ns: int) -> set[TP]:
        """Partitions whose oldest unshipped record (capture time in ``heads``) is within
        ``live_window`` of now, or that hold none in hand."""
        horizon = now_ns - self.config.live_window
        return {tp for tp in partitions if heads.get(tp, horizon) >= horizon}

    def order(self, partitions: Iterable[TP], live: set[TP] | frozenset[TP] = frozenset()) -> list[TP]:
        return sorted(partitions, key=lambda tp: (tp not in self.event_partitions, tp not in live,
                                                  -self.config.priority(tp[0])))

    def admits(self, record: Any, size: int | None = None) -> bool:
        """True when ``record``'s topic is within its cap (``size`` bytes, default its value's,
        tokens taken), or has none."""
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
        if bucket.try_acquire(len(record.value) if size is None else size):
            return True
        self.capped += 1
        return False


def lag_by_partition(ends: dict[TP, tuple[int, int, int]], committed: dict[TP, int]) -> dict[str, dict[str, int]]:
    """Per ``topic/partition``: shipped position, local end, lag in records and (estimated from
    the average record size) bytes. ``ends``: (log start, next offset, bytes held)."""
    out = {}
    for (topic, partition), (start, end, size) in ends.items():
        position = max(committed.get((topic, partition), start), start)
        lag = max(0, end - position)
        out[f"{topic}/{partition}"] = {"shipped_to": position, "end": end, "lag_records": lag,
                                       "lag_bytes": int(size * lag / max(1, end - start))}
    return out
