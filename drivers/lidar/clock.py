"""Packet time stamps: the sensor's top-of-hour clock turned into epoch nanoseconds.

Owns: how a Velodyne packet gets its capture time. A Velodyne stamps each packet with the
microseconds past the top of the hour of its first firing; the host (or the pcap) knows
when it arrived. ``PacketClock.times_ns`` gives each packet's first-firing time:

- ``sensor``: the sensor's time, in the hour of the host time nearest to it. Right when
  the sensor is synchronised (GPS/PPS or PTP); off by the sensor's clock error otherwise.
- ``host``: the arrival time minus the packet's firing duration. Always in the host's
  time base, but with the network / scheduling jitter of every packet (consecutive
  packets can even come out of order by a few hundred µs).
- ``auto`` (default): ``sensor`` while it agrees with the host within
  ``max_clock_skew_ns``; otherwise the sensor clock *anchored* to the host clock: the
  sensor's precise, monotonic spacing, shifted by the smallest (host − sensor) seen so far
  (the packet that crossed the network fastest), which may rise by ``DRIFT`` (100 µs a
  second) to follow the drift between the two clocks, and is reset when the two clocks
  jump more than ``max_clock_skew_ns`` apart (sensor restarted, host clock stepped).
  Anchored times never go backwards, nor overlap the previous packet's firings: when the
  offset drops (a faster packet), time advances at 99% of the sensor's pace until it has
  caught up (10 ms a second).

Vectorised: the running minimum with drift is ``np.minimum.accumulate`` of
(host − sensor − DRIFT·sensor), the no-step-back rule ``np.maximum.accumulate`` of
(time − 0.99·sensor); the sensor clock is unwrapped across hour rollovers.
"""

from __future__ import annotations

import logging
from typing import Literal

import numpy as np

from broker.logs import log_event

logger = logging.getLogger("drivers.lidar.clock")

HOUR_NS = 3_600_000_000_000
HOUR_US = 3_600_000_000
DRIFT = 1e-4  # how fast the anchored offset may rise: 100 µs a second
TimeSource = Literal["auto", "sensor", "host"]


class PacketClock:
    def __init__(self, time_source: TimeSource = "auto", max_clock_skew_ns: int = 1_000_000_000,
                 source: str = "velodyne"):
        if time_source not in ("auto", "sensor", "host"):
            raise ValueError(f"time_source must be 'auto', 'sensor' or 'host', not {time_source!r}")
        self.time_source = time_source
        self.max_clock_skew_ns = int(max_clock_skew_ns)
        self.source = source
        self._last_toh_us: int | None = None
        self._hours = 0  # hour rollovers of the sensor clock seen so far
        self._envelope: int | None = None  # running min of (host − sensor − DRIFT·sensor)
        self._floor: int | None = None  # last (time − 0.99·sensor): keeps anchored times increasing
        self._synced: bool | None = None
        self.last_offset_ns: int | None = None  # host − sensor clock of the last packet (continuity health)

    def reset(self) -> None:
        """Forget the stream (a new one follows, e.g. a pcap played again): unwrapping and
        anchoring start over."""
        self._last_toh_us, self._hours, self._envelope, self._floor = None, 0, None, None

    def _continuous_sensor_ns(self, toh_us: np.ndarray) -> np.ndarray:
        """The sensor clock without its hourly wrap (an arbitrary origin), in ns."""
        toh = toh_us.astype(np.int64)
        previous = np.empty_like(toh)
        previous[0] = toh[0] if self._last_toh_us is None else self._last_toh_us
        previous[1:] = toh[:-1]
        step = toh - previous
        hours = self._hours + np.cumsum((step < -HOUR_US // 2).astype(np.int64) - (step > HOUR_US // 2))
        self._hours, self._last_toh_us = int(hours[-1]), int(toh[-1])
        return (toh + hours * HOUR_US) * 1000

    def _anchored(self, sensor_ns: np.ndarray, host_ns: np.ndarray) -> np.ndarray:
        difference = host_ns - sensor_ns  # int64: both are large, keep it exact
        drift = np.round(sensor_ns * DRIFT).astype(np.int64)
        lowered = difference - drift
        paced = sensor_ns - sensor_ns // 100  # 99% of the sensor clock
        times: np.ndarray = np.empty_like(difference)
        start = 0
        while start < times.shape[0]:  # one pass unless the clocks jump apart
            segment = lowered[start:]
            if self._envelope is not None:
                segment = np.minimum(segment, self._envelope)
            envelope = np.minimum.accumulate(segment)
            offset = envelope + drift[start:]
            jumps = np.flatnonzero(difference[start:] - offset > self.max_clock_skew_ns)
            end = times.shape[0] if jumps.size == 0 else start + int(jumps[0])
            # never step back: when the offset drops, time advances at 99% of the sensor's pace
            floor = sensor_ns[start:end] + offset[: end - start] - paced[start:end]
            if self._floor is not None:
                floor[0] = max(floor[0], self._floor)
            floor = np.maximum.accumulate(floor)
            times[start:end] = floor + paced[start:end]
            if jumps.size == 0:
                self._envelope, self._floor = int(envelope[-1]), int(floor[-1])
                break
            log_event(logger, logging.INFO, "lidar_clock_reanchored", source=self.source,
                      jump_s=f"{(difference[end] - offset[end - start]) / 1e9:.3f}")
            self._envelope = self._floor = None
            start = end
        return times

    def times_ns(self, toh_us: np.ndarray, first_firing_host_ns: np.ndarray) -> np.ndarray:
        """Each packet's first-firing time (ns since the epoch) from its top-of-hour µs and
        the host's estimate of it (arrival time minus the packet's firing duration)."""
        host_ns = first_firing_host_ns.astype(np.int64)
        if self.time_source == "host" or host_ns.shape[0] == 0:
            return host_ns
        absolute = (host_ns // HOUR_NS) * HOUR_NS + toh_us.astype(np.int64) * 1000
        skew = absolute - host_ns  # pick the hour nearest to the host time
        absolute -= np.where(skew > HOUR_NS // 2, HOUR_NS, 0)
        absolute += np.where(skew < -(HOUR_NS // 2), HOUR_NS, 0)
        self.last_offset_ns = int(host_ns[-1] - absolute[-1])
        if self.time_source == "sensor":
            return absolute
        anchored = self._anchored(self._continuous_sensor_ns(toh_us), host_ns)
        synced = np.abs(absolute - host_ns) <= self.max_clock_skew_ns
        state = bool(synced[-1])
        if state != self._synced:
            lost = self._synced is True
            log_event(logger, logging.WARNING if lost else logging.INFO, "lidar_time_source", source=self.source,
                      using="sensor clock" if state else "sensor clock anchored to host/pcap time",
                      sensor_minus_host_s=f"{(absolute[-1] - host_ns[-1]) / 1e9:.3f}")
            self._synced = state
        return np.where(synced, absolute, anchored)
