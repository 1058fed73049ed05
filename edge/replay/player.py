"""The replay player: republish a merged window at the recorded timing, with live control.

Timing: every record is due at ``anchor_mono + (capture_ns - anchor_ns) / speed``, on the
monotonic clock, from one anchor per run of playback: errors never add up from record to
record (no drift), and the wait is cut short by any control command. The anchor moves only
when playback changes: start, resume, speed change (the virtual position is kept), seek,
loop, and a stall longer than ``max_lag_s`` (the sink or the source was slower than real
time, or the recording's clock stepped backwards: playback goes on from where it is
instead of bursting to catch up; counted in ``reanchors``). A jump forward in capture time
longer than ``max_gap_s`` (the recording clock stepped forwards, or every sensor was
silent) is cut out: the next record follows at once instead of after an hour of waiting
(counted in ``gaps``; ``max_gap_s=0`` keeps every gap). ``speed=None`` publishes as fast
as the sink takes records.

Records are republished with their key, partition, headers and capture timestamp, plus the
headers ``replay.source.topic``, ``replay.source.partition``, ``replay.source.offset`` and
``replay.id`` (and, with ``restamp``, a host-clock timestamp, ``capture_ns`` set to it and
the original in ``replay.capture_ns``).

Control (``pause``, ``resume``, ``set_speed``, ``seek``, ``seek_by``, ``restart``,
``stop``, ``status``) is thread-safe: a terminal thread or the HTTP API may call it while
``run`` plays in its own thread. Memory: the player holds one record at a time; the read-
ahead is the source's (edge.replay.sources) and the sink's producer buffer.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

from broker.records import Record

from .errors import ReplayError
from .sinks import Sink
from .timespec import Window

MIN_SPEED = 0.1
MAX_SPEED = 10.0

REPLAY_TOPIC = "replay.source.topic"
REPLAY_PARTITION = "replay.source.partition"
REPLAY_OFFSET = "replay.source.offset"
REPLAY_ID = "replay.id"
REPLAY_CAPTURE = "replay.capture_ns"


def check_speed(speed: float | None) -> float | None:
    """``speed`` if it is None (as fast as possible) or within 0.1–10; else ReplayError."""
    if speed is None:
        return None
    speed = float(speed)
    if not MIN_SPEED <= speed <= MAX_SPEED:
        raise ReplayError(f"speed {speed:g} is outside {MIN_SPEED:g}–{MAX_SPEED:g} (use max for as fast as possible)")
    return speed


class StreamFactory(Protocol):
    def __call__(self, window: Window) -> Any: ...  # an iterable of Records with close()


@dataclass
class ReplayOptions:
    speed: float | None = 1.0
    loop: bool = False
    replay_id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    restamp: bool = False
    max_lag_s: float = 1.0
    max_gap_s: float = 10.0
    progress_interval_s: float = 0.2


class LatenessStats:
    """Histogram of how late records went out against their due time (0.05 ms bins up to
    250 ms, then an overflow count): O(1) per record, exact max, percentiles to 0.05 ms."""

    BIN_S = 50e-6
    BINS = 5000

    def __init__(self) -> None:
        self.counts = [0] * (self.BINS + 1)
        self.n = 0
        self.max_s = 0.0
        self.sum_s = 0.0

    def add(self, late_s: float) -> None:
        if late_s < 0:
            late_s = 0.0
        i = int(late_s / self.BIN_S)
        self.counts[i if i < self.BINS else self.BINS] += 1
        self.n += 1
        self.sum_s += late_s
        self.max_s = max(self.max_s, late_s)

    def percentile(self, q: float) -> float:
        """Upper edge of the bin holding the q-th percentile, in seconds."""
        if not self.n:
            return 0.0
        target = q / 100 * self.n
        seen = 0
        for i, c in enumerate(self.counts):
            seen += c
            if seen >= target and c:
                return self.max_s if i == self.BINS else min(self.max_s, (i + 1) * self.BIN_S)
        return self.max_s

    def summary(self) -> dict[str, float]:
        return {"count": self.n, "mean_ms": (self.sum_s / self.n * 1e3) if self.n else 0.0,
                "p50_ms": self.percentile(50) * 1e3, "p99_ms": self.percentile(99) * 1e3,
                "max_ms": self.max_s * 1e3}


@dataclass
class ReplayStatus:
    replay_id: str
    state: str  # starting | playing | paused | finished | stopped | failed
    speed: float | None
    loop: bool
    loop_pass: int
    window_start_ns: int
    window_end_ns: int
    position_ns: int | None
    fraction: float | None
    records: int
    bytes: int
    rate_rps: float
    elapsed_s: float
    reanchors: int
    gaps: int
    lateness: dict[str, float]
    eta_s: float | None = None  # seconds to the window's end; None while unknown, or looping

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


class Player:
    """Plays ``window`` from ``open_stream(window)`` into ``sink``; ``run`` blocks."""

    def __init__(self, open_stream: StreamFactory, window: Window, sink: Sink, options: ReplayOptions | None = None,
                 *, span: tuple[int, int] | None = None,
                 on_progress: Callable[[ReplayStatus], None] | None = None,
                 on_emit: Callable[[Record, float, float], None] | None = None,
                 clock: Callable[[], float] = time.monotonic):
        self.open_stream = open_stream
        self.window = window
        self.sink = sink
        self.options = options or ReplayOptions()
        self.options.speed = check_speed(self.options.speed)
        self.span = span or (window.start_ns, window.end_ns)
        self.on_progress = on_progress
        self.on_emit = on_emit
        self.clock = clock
        self.lateness = LatenessStats()
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._state = "starting"
        self._speed = self.options.speed
        self._new_speed: tuple[float | None] | None = None
        self._paused = False
        self._seek: int | None = None
        self._stop = False
        self._records = 0
        self._bytes = 0
        self._pass = 1
        self._position: int | None = None
        self._reanchors = 0
        self._gaps = 0
        self._started = 0.0
        self._rate = 0.0
        self._rate_mark = (0.0, 0)
        self._last_progress = 0.0
        self._id = self.options.replay_id.encode()
        self._topic_bytes: dict[str, bytes] = {}

    # -- control (any thread) ------------------------------------------------------------

    def _command(self, **changes: Any) -> None:
        with self._lock:
            for name, value in changes.items():
                setattr(self, name, value)
        self._wake.set()

    def pause(self) -> None:
        self._command(_paused=True)

    def resume(self) -> None:
        self._command(_paused=False)

    def toggle_pause(self) -> None:
        self._command(_paused=not self._paused)

    def set_speed(self, speed: float | None) -> None:
        self._command(_new_speed=(check_speed(speed),))

    def seek(self, position_ns: int) -> None:
        """Go on from capture time ``position_ns`` (clamped to the window)."""
        self._command(_seek=min(max(int(position_ns), self.window.start_ns), self.window.end_ns))

    def seek_by(self, delta_ns: int) -> None:
        base = self._position if self._position is not None else self.span[0]
        self.seek(base + int(delta_ns))

    def restart(self) -> None:
        self._command(_seek=self.window.start_ns)

    def stop(self) -> None:
        self._command(_stop=True)

    @property
    def speed(self) -> float | None:
        return self._speed

    def status(self) -> ReplayStatus:
        first, last = self.span
        pos = self._position
        fraction = None
        if self._state == "finished":
            fraction = 1.0
        elif pos is not None and last > first:
            fraction = min(1.0, max(0.0, (pos - first) / (last - first)))
        elapsed_s = (self.clock() - self._started) if self._started else 0.0
        return ReplayStatus(
            replay_id=self.options.replay_id,
            state="paused" if self._paused and self._state == "playing" else self._state,
            speed=self._speed, loop=self.options.loop, loop_pass=self._pass,
            window_start_ns=first, window_end_ns=last, position_ns=pos, fraction=fraction,
            records=self._records, bytes=self._bytes, rate_rps=self._rate,
            elapsed_s=elapsed_s, reanchors=self._reanchors, gaps=self._gaps, lateness=self.lateness.summary(),
            eta_s=self._eta_s(fraction, elapsed_s))

    def _eta_s(self, fraction: float | None, elapsed_s: float) -> float | None:
        """Paced: the capture time left over the speed (cut gaps make it an upper bound); at
        max speed: the time so far scaled by the fraction left (only the rate is known)."""
        if self._state == "finished":
            return 0.0
        if self.options.loop or not fraction or self._position is None:
            return None
        if self._speed is not None:
            return max(0, self.span[1] - self._position) / (self._speed * 1e9)
        return elapsed_s * (1 - fraction) / fraction

    # -- playing -------------------------------------------------------------------------

    def run(self) -> ReplayStatus:
        """Play until the window ends (and ``loop`` is off) or ``stop``; flushes the sink.
        Errors of the source or the sink propagate (state ``failed``)."""
        self._started = self.clock()
        self._rate_mark = (self._started, 0)
        self._state = "playing"
        window = self.window
        try:
            while True:
                stream = self.open_stream(window)
                try:
                    outcome, played = self._play(stream)
                finally:
                    stream.close()
                if outcome == "stop":
                    self._state = "stopped"
                    break
                if outcome == "seek":
                    with self._lock:
                        target, self._seek = self._seek, None
                    if target is None:  # a seek is only returned with a target set under the lock
                        raise ReplayError("seek without a target")
                    window = self.window if target <= self.window.start_ns else self.window.with_start(target)
                    self._position = target
                    continue
                if self.options.loop and (played or self._records):
                    if not played:
                        raise ReplayError("the window holds no records to loop over")
                    self._pass += 1
                    window = self.window
                    continue
                self._state = "finished"
                break
            self.sink.flush()
        except BaseException:
            self._state = "failed" if self._state not in ("stopped", "finished") else self._state
            raise
        finally:
            self._report(force=True)
        return self.status()

    def _play(self, stream: Iterable[Record]) -> tuple[str, int]:
        """One pass over ``stream``: returns ("end" | "seek" | "stop", records played)."""
        clock = self.clock
        wake = self._wake
        sink_emit = self.sink.emit
        on_emit = self.on_emit
        lateness_add = self.lateness.add
        restamp = self.options.restamp
        max_lag = self.options.max_lag_s
        max_gap_ns = int(self.options.max_gap_s * 1e9)
        latest_ns: int | None = None
        rid = self._id
        topic_bytes = self._topic_bytes
        speed = self._speed
        anchor_ns = 0
        anchor_mono = 0.0
        anchored = False
        played = 0
        for record in stream:
            ts = record.timestamp
            due = 0.0
            if latest_ns is None or ts > latest_ns:
                if anchored and max_gap_ns and latest_ns is not None and ts - latest_ns > max_gap_ns:
                    anchor_ns, anchor_mono = ts, clock()
                    self._gaps += 1
                latest_ns = ts
            if wake.is_set() or speed is not None:
                while True:
                    if wake.is_set():
                        wake.clear()
                        action = self._handle_commands(anchored, anchor_ns, anchor_mono, speed)
                        if action[0] in ("seek", "stop"):
                            return action[0], played
                        _, speed, anchored, anchor_ns, anchor_mono = action
                    if speed is None:
                        break
                    if not anchored:
                        anchor_ns, anchor_mono, anchored = ts, clock(), True
                    due = anchor_mono + (ts - anchor_ns) / (speed * 1e9)
                    remaining = due - clock()
                    if remaining <= 0:
                        break
                    wake.wait(remaining)
                    if not wake.is_set():
                        break
            now = clock()
            if speed is not None:
                late = now - due
                if late > max_lag:
                    anchor_ns, anchor_mono = ts, now
                    self._reanchors += 1
                lateness_add(late)
            topic = record.topic
            tb = topic_bytes.get(topic)
            if tb is None:
                tb = topic_bytes[topic] = topic.encode()
            headers = dict(record.headers)
            headers[REPLAY_TOPIC] = tb
            headers[REPLAY_PARTITION] = b"%d" % record.partition
            headers[REPLAY_OFFSET] = b"%d" % record.offset
            headers[REPLAY_ID] = rid
            out_ts = ts
            if restamp:
                out_ts = time.time_ns()
                headers[REPLAY_CAPTURE] = b"%d" % ts
                if "capture_ns" in headers:
                    headers["capture_ns"] = b"%d" % out_ts
            sink_emit(record, headers, out_ts)
            if on_emit is not None:
                on_emit(record, due, now)
            played += 1
            self._records += 1
            self._bytes += len(record.value)
            self._position = ts
            if now - self._last_progress >= self.options.progress_interval_s:
                self._report()
        return ("stop" if self._stop else "end"), played

    def _handle_commands(self, anchored: bool, anchor_ns: int, anchor_mono: float,
                         speed: float | None) -> tuple[Any, ...]:
        """Apply pending commands; blocks while paused. Returns ("seek"|"stop",) or
        ("go", speed, anchored, anchor_ns, anchor_mono)."""
        while True:
            with self._lock:
                stop, seek, new_speed, paused = self._stop, self._seek, self._new_speed, self._paused
                self._new_speed = None
            if stop:
                return ("stop",)
            if seek is not None:
                return ("seek",)
            now = self.clock()
            if new_speed is not None:
                if anchored and speed is not None and new_speed[0] is not None:
                    anchor_ns = anchor_ns + int((now - anchor_mono) * speed * 1e9)  # keep the virtual position
                    anchor_mono = now
                else:
                    anchored = False  # from or to "max": the next record anchors
                speed = self._speed = new_speed[0]
            if not paused:
                return ("go", speed, anchored, anchor_ns, anchor_mono)
            # paused: freeze the virtual position, wait for the next command
            frozen_ns = anchor_ns + int((now - anchor_mono) * (speed or 0) * 1e9) if anchored else None
            self._report(force=True)
            while not self._wake.wait(0.2):
                self._report()
            self._wake.clear()
            if frozen_ns is not None:
                anchor_ns, anchor_mono = frozen_ns, self.clock()

    def _report(self, force: bool = False) -> None:
        now = self.clock()
        if not force and now - self._last_progress < self.options.progress_interval_s:
            return
        mark_t, mark_n = self._rate_mark
        if now - mark_t >= 0.5:
            self._rate = (self._records - mark_n) / (now - mark_t)
            self._rate_mark = (now, self._records)
        self._last_progress = now
        if self.on_progress is not None:
            self.on_progress(self.status())
