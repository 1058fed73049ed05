"""The driver runtime shared by every sensor process: capture → bounded queue → publish.

Guarantees:
- Capture never blocks on the broker. Between capture and publish sits a bounded queue with
  a stated overload policy: ``drop_oldest`` (default: sensor data is real time, the newest
  frame matters most), ``drop_newest``, or ``block`` (only for file sources where pacing is
  ours). Every drop is counted with its reason.
- Every record carries the record contract's headers (UTF-8 text): ``sensor``, ``seq``
  (per-sensor, monotonic from 0 for each process start), ``capture_ns``, ``encoding``, plus
  the payload's own; the record timestamp is the capture time.
- Encoding (JPEG, point packing) runs on the publish thread, after the queue, so an
  overloaded driver drops raw frames instead of spending CPU encoding frames it will drop.
- Sensor gone (the source raises SensorError or stops yielding on a live source): the state
  becomes ``sensor_lost``, it is logged, the source is reopened with exponential backoff
  (0.5 s → 10 s), and capture resumes without a restart.
- Broker down: the producer fails fast, frames are dropped with reason ``broker``, the
  producer reconnects by itself; capture goes on. Disk full (the broker refuses writes
  with DiskFullError): dropped with reason ``disk_full``; writes resume by themselves
  when the broker has space again.
- Delivery unknown (sent, no acknowledgement in time: DeliveryUnknownError): counted in
  ``unknown``, not as a drop, because the broker may have written the record.
- Health: a JSON status record (counters, state, measured rate, ``details``: facts the
  source reports, e.g. ``lidar_model``, and ``continuity``: learned interval, gaps,
  duplicates, reordering, clock offset; drivers/continuity.py) goes to the ``_health`` topic,
  key = sensor name, every ``health_interval_s``.
- SIGTERM/SIGINT: stop capturing, publish what is queued, flush the producer, exit 0.
"""

from __future__ import annotations

import collections
import json
import logging
import signal
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from broker.base.names import HEALTH_TOPIC
from broker.errors import BrokerError, DeliveryUnknownError, DiskFullError
from broker.logs import log_event

from .continuity import ContinuityTracker, GapCallback

logger = logging.getLogger("drivers.runtime")

OverloadPolicy = Literal["drop_oldest", "drop_newest", "block"]


class SensorError(Exception):
    """The sensor or source failed (unplugged, stream closed, unreadable file); names it."""


class SourceExhausted(Exception):
    """A finite source (file without --loop) reached its end: flush and exit 0."""


@dataclass
class DriverCounters:
    captured: int = 0
    published: int = 0
    acknowledged: int = 0
    unknown: int = 0  # sent, outcome unknown (no acknowledgement in time): maybe written
    dropped: dict[str, int] = field(default_factory=lambda: {"queue_full": 0, "broker": 0, "disk_full": 0})
    sensor_errors: int = 0
    reopens: int = 0
    last_capture_ns: int | None = None
    last_publish_ns: int | None = None
    rate_hz: float = 0.0
    state: str = "starting"
    last_error: str | None = None

    def drop(self, reason: str, n: int = 1) -> None:
        self.dropped[reason] = self.dropped.get(reason, 0) + n


@dataclass
class Sample:
    """What a source yields: the raw capture, stamped; ``payload`` is encoded later."""

    capture_ns: int
    payload: Any
    seq: int = 0
    clock_offset_ns: int | None = None  # host − sensor clock, when the source knows both


Encoder = Callable[[Any], tuple[Any, dict[str, str]]]


class DriverRuntime:
    def __init__(
        self,
        *,
        name: str,
        kind: str,
        topic: str,
        producer: Any,
        encode: Encoder,
        queue_size: int = 8,
        policy: OverloadPolicy = "drop_oldest",
        health_interval_s: float = 1.0,
        reopen_backoff: tuple[float, float] = (0.5, 10.0),
        extra_headers: dict[str, str] | None = None,
        nominal_hz: float | None = None,
        on_gap: GapCallback | None = None,
        on_clock_step: GapCallback | None = None,
    ):
        if queue_size < 1:
            raise ValueError("queue_size must be at least 1")
        self.name = name
        self.kind = kind
        self.topic = topic
        self.producer = producer
        self.encode = encode
        self.policy = policy
        self.queue: collections.deque[Sample] = collections.deque()
        self.queue_size = queue_size
        self.counters = DriverCounters()
        self.extra_headers = extra_headers or {}
        self.details: dict[str, Any] = {}  # source facts for the health record (e.g. the identified lidar model)
        self.health_interval_s = health_interval_s
        self.reopen_backoff = reopen_backoff
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._capture_done = False
        self._seq = 0
        self._rate_window: collections.deque[int] = collections.deque(maxlen=64)
        self.continuity = ContinuityTracker(nominal_hz, on_gap=on_gap, on_clock_step=on_clock_step)

    # -- control -------------------------------------------------------------------------

    def stop(self, *_args: object) -> None:
        self._stop.set()
        with self._cond:
            self._cond.notify_all()

    def install_signal_handlers(self) -> None:
        signal.signal(signal.SIGTERM, self.stop)
        signal.signal(signal.SIGINT, self.stop)

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    # -- capture side --------------------------------------------------------------------

    def offer(self, sample: Sample) -> None:
        """Queue a captured sample under the overload policy; never blocks unless 'block'."""
        sample.seq = self._seq
        self._seq += 1
        c = self.counters
        c.captured += 1
        c.last_capture_ns = sample.capture_ns
        self._rate_window.append(time.monotonic_ns())
        self.continuity.observe(sample.capture_ns, sample.clock_offset_ns)
        with self._cond:
            if len(self.queue) >= self.queue_size:
                if self.policy == "drop_oldest":
                    self.queue.popleft()
                    c.drop("queue_full")
                elif self.policy == "drop_newest":
                    c.drop("queue_full")
                    return
                else:
                    while len(self.queue) >= self.queue_size and not self._stop.is_set():
                        self._cond.wait(0.1)
            self.queue.append(sample)
            self._cond.notify_all()

    def run(self, open_source: Callable[[], Iterable[Sample]], *, finite: bool = False) -> int:
        """Capture from ``open_source()`` until stopped or the source is exhausted.

        ``finite`` sources (files) are not reopened on errors: a damaged file ends the run
        with what could be read (exit 0), or exit 1 when nothing could be read at all.
        Returns the process exit code: 0 on SIGTERM or a finite source's end, 1 when the
        source could never be opened or read at all."""
        publisher = threading.Thread(target=self._publish_loop, name=f"{self.name}-publish", daemon=True)
        publisher.start()
        delay = self.reopen_backoff[0]
        ever_captured = False
        exit_code = 0
        try:
            while not self._stop.is_set():
                try:
                    source = iter(open_source())
                    self.counters.state = "running"
                    for sample in source:
                        self.offer(sample)
                        ever_captured = True
                        delay = self.reopen_backoff[0]
                        if self._stop.is_set():
                            break
                    else:
                        raise SourceExhausted()
                except SourceExhausted:
                    log_event(logger, logging.INFO, "source_finished", sensor=self.name,
                              captured=self.counters.captured)
                    if not ever_captured:
                        self.counters.last_error = "source produced no data"
                        exit_code = 1
                    break
                except SensorError as exc:
                    if finite:
                        self.counters.last_error = str(exc)
                        log_event(logger, logging.ERROR if not ever_captured else logging.WARNING, "source_failed",
                                  sensor=self.name, error=exc, captured=self.counters.captured)
                        exit_code = 0 if ever_captured else 1
                        break
                    c = self.counters
                    c.sensor_errors += 1
                    c.state = "sensor_lost"
                    c.last_error = str(exc)
                    log_event(logger, logging.WARNING, "sensor_lost", sensor=self.name, error=exc,
                              retry_in_s=f"{delay:.1f}")
                    if self._stop.wait(delay):
                        break
                    delay = min(delay * 2, self.reopen_backoff[1])
                    c.reopens += 1
        finally:
            self._capture_done = True
            with self._cond:
                self._cond.notify_all()
            publisher.join()
            self.counters.state = "stopped"
            self._publish_health()
            try:
                self.producer.flush(10.0)
            except BrokerError as exc:
                log_event(logger, logging.WARNING, "final_flush_failed", sensor=self.name, error=exc)
        return exit_code

    # -- publish side --------------------------------------------------------------------

    def _next_sample(self) -> Sample | None:
        with self._cond:
            while not self.queue:
                if self._capture_done:
                    return None
                self._cond.wait(self.health_interval_s)
                if not self.queue:
                    return None if self._capture_done else _IDLE
            sample = self.queue.popleft()
            self._cond.notify_all()
            return sample

    def _publish_loop(self) -> None:
        next_health = time.monotonic()
        while True:
            if time.monotonic() >= next_health:
                self._publish_health()
                next_health = time.monotonic() + self.health_interval_s
            sample = self._next_sample()
            if sample is None:
                return
            if sample is _IDLE:
                continue
            self._publish(sample)

    def _publish(self, sample: Sample) -> None:
        c = self.counters
        try:
            value, headers = self.encode(sample.payload)
        except Exception as exc:  # one bad frame must not stop the driver
            c.drop("encode_error")
            c.last_error = f"encoding failed: {exc}"
            log_event(logger, logging.WARNING, "encode_failed", sensor=self.name, seq=sample.seq, error=exc)
            return
        record_headers = {
            "sensor": self.name,
            "seq": str(sample.seq),
            "capture_ns": str(sample.capture_ns),
            **self.extra_headers,
            **headers,
        }
        try:
            future = self.producer.send(self.topic, value, headers=record_headers, timestamp_ns=sample.capture_ns)
        except BrokerError as exc:
            c.drop("broker")
            if c.state != "broker_down":
                log_event(logger, logging.WARNING, "broker_unavailable", sensor=self.name, error=exc)
            c.state = "broker_down"
            c.last_error = str(exc)
            return
        if c.state == "broker_down":
            c.state = "running"
        c.published += 1
        c.last_publish_ns = time.time_ns()
        add_callback = getattr(future, "add_done_callback", None)
        if add_callback is not None:
            add_callback(self._on_delivery)

    def _on_delivery(self, future: Any) -> None:
        exc = future.exception() if hasattr(future, "exception") else None
        if exc is None:
            self.counters.acknowledged += 1
            return
        if isinstance(exc, DeliveryUnknownError):
            self.counters.unknown += 1
        else:
            self.counters.drop("disk_full" if isinstance(exc, DiskFullError) else "broker")
        self.counters.last_error = str(exc)

    # -- health --------------------------------------------------------------------------

    def measured_rate(self) -> float:
        window = [t for t in self._rate_window if time.monotonic_ns() - t < 5_000_000_000]
        if len(window) < 2:
            return 0.0
        return (len(window) - 1) / ((window[-1] - window[0]) / 1e9)

    def health(self) -> dict[str, Any]:
        self.counters.rate_hz = round(self.measured_rate(), 2)
        body = asdict(self.counters)
        body.update(sensor=self.name, kind=self.kind, topic=self.topic, queue_depth=len(self.queue),
                    queue_size=self.queue_size, policy=self.policy, time_ns=time.time_ns())
        waited = time.monotonic_ns() - self._rate_window[-1] if self._rate_window else None
        body["continuity"] = self.continuity.to_json(waited_ns=waited)
        body["clock_offset_ms"] = body["continuity"]["clock_offset_ms"]
        if self.details:
            body["details"] = dict(self.details)
        return body

    def _publish_health(self) -> None:
        try:
            self.producer.send(HEALTH_TOPIC, json.dumps(self.health()).encode(), key=self.name.encode(),
                               headers={"sensor": self.name, "encoding": "json"})
        except BrokerError:
            pass  # the broker is down; the next report will go out once it is back


_IDLE = Sample(0, None, -1)

