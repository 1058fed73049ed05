"""Frame pacing on a monotonic schedule that does not drift.

Owns: when a paced source may release its next frame. A frame's due time is
``anchor + offset`` on ``time.monotonic()``, where ``offset`` is the frame's place in the
schedule (``n / fps`` for a fixed rate, the recorded position for a file) and ``anchor``
is fixed by the first frame. Due times are computed, never accumulated from "sleep a
period after the work", so the time spent decoding, encoding or queueing a frame does
not add up over a run: frame ``n`` is released at ``anchor + n / fps`` however long the
frames before it took (as long as the consumer keeps up on average).

Far behind schedule (more than ``resync_after_s``: a paused process, a stalled consumer)
the schedule restarts from now instead of releasing a burst of frames to catch up; each
restart is counted in ``resyncs`` and logged.

Sleeping wakes at once when the ``closed`` event is set and within ``poll_s`` when the
``stop`` event is set.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from broker.logs import log_event

logger = logging.getLogger("drivers.camera")


class FramePacer:
    def __init__(
        self,
        source_name: str,
        *,
        closed: threading.Event,
        stop: threading.Event,
        resync_after_s: float = 1.0,
        poll_s: float = 0.05,
        monotonic: Callable[[], float] = time.monotonic,
    ):
        self.source_name = source_name
        self.closed = closed
        self.stop = stop
        self.resync_after_s = resync_after_s
        self.poll_s = poll_s
        self.monotonic = monotonic
        self.resyncs = 0
        self._anchor: float | None = None  # monotonic time at which offset 0 is due

    def restart(self) -> None:
        """Forget the anchor: the next frame is due at once and anchors the schedule."""
        self._anchor = None

    def frame_due(self, rate: float | str, seq: int, media_ns: int) -> bool:
        """Whether a file source's frame ``seq`` (at ``media_ns`` into the file) may be released
        now, after waiting for it: at its recorded time (``"recorded"``), at once (``"max"``:
        nothing is live, so nothing is dropped) or at ``rate`` frames per second. False once the
        source is closed or stopped."""
        if rate == "recorded":
            return self.wait_until_due(media_ns / 1e9)
        if rate == "max":
            return not (self.closed.is_set() or self.stop.is_set())
        return self.wait_until_due(seq / float(rate))

    def wait_until_due(self, offset_s: float) -> bool:
        """Sleep until the frame at ``offset_s`` in the schedule is due.

        Returns False when the source was closed or stopped meanwhile (the caller then ends
        its iteration), True when the frame may be released now."""
        now = self.monotonic()
        if self._anchor is None:
            self._anchor = now - offset_s
        due = self._anchor + offset_s
        if now - due > self.resync_after_s:
            self.resyncs += 1
            log_event(logger, logging.INFO, "camera_pacing_resync", source=self.source_name,
                      behind_s=f"{now - due:.3f}", resyncs=self.resyncs)
            self._anchor = now - offset_s
            due = now
        while True:
            if self.closed.is_set() or self.stop.is_set():
                return False
            remaining = due - self.monotonic()
            if remaining <= 0:
                return True
            self.closed.wait(min(remaining, self.poll_s))
