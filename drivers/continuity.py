"""Continuity and clock health of one sensor stream, learned from its capture times.

Fed once per captured sample (a frame or a cloud, never per packet or point) by the driver
runtime, reported in every health record (``_health`` topic, ``continuity`` object):

- ``usual_interval_ms``: the median of the last ``WINDOW`` intervals between captures (learned;
  intervals that were gaps are left out so one stall does not teach a slower rate).
- gaps: an interval longer than ``GAP_FACTOR`` (3) × the usual one counts as one gap, with its
  ``start_ns`` (last capture before it) and ``length_ms``; ``gaps`` counts them. A stall still
  going on (no capture for that long) is reported as ``open_gap_ms`` and counted once it ends.
  Gaps are judged only after ``WARMUP`` intervals were learned.
- ``rate_hz`` over the learned interval vs ``nominal_hz`` (the configured rate, when known) as
  ``rate_ratio``.
- ``duplicates``: a capture time equal to the previous one; ``reordered``: one earlier than the
  newest seen (the newest stays the reference).
- clock: when the driver knows both the sensor's time and the host's arrival time (e.g. a
  PTP/GPS-synchronised LiDAR), ``clock_offset_ms`` = host − sensor of the last sample, and
  ``clock_steps``: changes of that offset by more than ``CLOCK_STEP_NS`` between samples,
  with ``last_clock_step_ms``. Without a sensor clock these are null.

Invariants: counters only grow; the tracker holds O(WINDOW) state.
"""

from __future__ import annotations

import collections
import statistics
from collections.abc import Callable
from typing import Any

WINDOW = 64
WARMUP = 8
GAP_FACTOR = 3.0
CLOCK_STEP_NS = 50_000_000  # 50 ms: more than any network jitter, less than a frame at 10 Hz
MS = 1e6

# told about a gap or clock step (a dict of its facts); what it returns is ignored
GapCallback = Callable[[dict[str, Any]], object]


class ContinuityTracker:
    def __init__(self, nominal_hz: float | None = None, *, on_gap: GapCallback | None = None,
                 on_clock_step: GapCallback | None = None):
        self.nominal_hz = nominal_hz
        self.on_gap = on_gap
        self.on_clock_step = on_clock_step
        self._intervals: collections.deque[int] = collections.deque(maxlen=WINDOW)
        self._usual_ns: int | None = None
        self._since_median = 0
        self.newest_ns: int | None = None
        self.gaps = 0
        self.last_gap: dict[str, Any] | None = None
        self.duplicates = 0
        self.reordered = 0
        self.clock_offset_ns: int | None = None
        self.clock_steps = 0
        self.last_clock_step_ns: int | None = None

    @property
    def usual_interval_ns(self) -> int | None:
        return self._usual_ns

    def _gap_threshold_ns(self) -> int | None:
        if self._usual_ns is None or len(self._intervals) < WARMUP:
            return None
        return int(GAP_FACTOR * self._usual_ns)

    def observe(self, capture_ns: int, clock_offset_ns: int | None = None) -> dict[str, Any] | None:
        """Account one capture; returns the gap it closed, if any."""
        if clock_offset_ns is not None:
            if self.clock_offset_ns is not None and abs(clock_offset_ns - self.clock_offset_ns) > CLOCK_STEP_NS:
                self.clock_steps += 1
                self.last_clock_step_ns = clock_offset_ns - self.clock_offset_ns
                if self.on_clock_step is not None:
                    self.on_clock_step({"start_ns": capture_ns, "step_ms": round(self.last_clock_step_ns / MS, 3)})
            self.clock_offset_ns = clock_offset_ns
        newest = self.newest_ns
        if newest is None:
            self.newest_ns = capture_ns
            return None
        interval = capture_ns - newest
        if interval == 0:
            self.duplicates += 1
            return None
        if interval < 0:
            self.reordered += 1
            return None
        self.newest_ns = capture_ns
        threshold = self._gap_threshold_ns()
        if threshold is not None and interval > threshold:
            self.gaps += 1
            self.last_gap = {"start_ns": newest, "length_ms": round(interval / MS, 3)}
            if self.on_gap is not None:
                self.on_gap(dict(self.last_gap))
            return self.last_gap
        self._intervals.append(interval)
        self._since_median += 1
        if self._usual_ns is None or self._since_median >= WINDOW // 4 or len(self._intervals) <= WARMUP:
            self._usual_ns = int(statistics.median(self._intervals))
            self._since_median = 0
        return None

    def to_json(self, waited_ns: int | None = None) -> dict[str, Any]:
        """The report; ``waited_ns`` (host time since the last capture arrived) lets a stall
        that is still going on show as ``open_gap_ms``."""
        usual = self._usual_ns
        rate = 1e9 / usual if usual else None
        threshold = self._gap_threshold_ns()
        open_gap = None
        if threshold is not None and waited_ns is not None and waited_ns > threshold:
            open_gap = round(waited_ns / MS, 3)
        return {
            "usual_interval_ms": None if usual is None else round(usual / MS, 3),
            "rate_hz": None if rate is None else round(rate, 3),
            "nominal_hz": self.nominal_hz,
            "rate_ratio": None if rate is None or not self.nominal_hz else round(rate / self.nominal_hz, 3),
            "gaps": self.gaps, "last_gap": self.last_gap, "open_gap_ms": open_gap,
            "duplicates": self.duplicates, "reordered": self.reordered,
            "clock_offset_ms": None if self.clock_offset_ns is None else round(self.clock_offset_ns / MS, 3),
            "clock_steps": self.clock_steps,
            "last_clock_step_ms": None if self.last_clock_step_ns is None else round(self.last_clock_step_ns / MS, 3),
        }
