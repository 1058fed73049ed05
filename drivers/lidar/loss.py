"""Packet loss and reordering of a sensor stream, counted from the packets' own positions.

Owns: ``PacketLoss``, the lost / out-of-order counts of one stream. Neither Velodyne nor
Ouster packets carry a sequence number, so each packet's position comes from what it does
carry, as a count of packet slots:

    Velodyne   its sensor timestamp (µs past the hour, unwrapped across hours) divided by
               the stream's packet interval (the median measured at identification)
    Ouster     frame_id × columns_per_frame + the first column's measurement_id, divided
               by columns_per_packet (frame_id unwrapped across its 16-bit wrap)

Rules, over the whole stream (batches chained): a packet at or behind the furthest
position seen is out of order (late or duplicated) — it also fills a slot an earlier gap
counted as lost, so ``lost`` goes down by one; a packet ahead of it by k slots means k − 1
lost. Vectorised per batch: one running maximum, no per-packet Python.
"""

from __future__ import annotations

import numpy as np


class PacketLoss:
    """Counts for one stream; feed ``update`` with each batch's positions in order."""

    def __init__(self, wrap: int | None = None):
        self.wrap = wrap  # the raw position's modulus (e.g. µs in an hour), None: no wrap
        self.received = 0
        self.lost = 0
        self.out_of_order = 0
        self._last_raw: int | None = None
        self._last_unwrapped = 0.0
        self._furthest: float | None = None

    def update(self, raw_positions: np.ndarray, slot: float) -> None:
        """``raw_positions``: the packets' positions in raw units (before dividing by
        ``slot``, the units one packet advances), in arrival order."""
        raw = np.asarray(raw_positions, np.int64).reshape(-1)
        if raw.shape[0] == 0 or not slot > 0:
            return
        previous = np.empty_like(raw)
        previous[0] = raw[0] if self._last_raw is None else self._last_raw
        previous[1:] = raw[:-1]
        step = raw - previous
        if self.wrap:
            step = (step + self.wrap // 2) % self.wrap - self.wrap // 2  # nearest wrap: signed step
        position = (self._last_unwrapped + np.cumsum(step)) / slot  # in packet slots
        self._last_raw, self._last_unwrapped = int(raw[-1]), float(self._last_unwrapped + step.sum())
        furthest_before = np.maximum.accumulate(np.concatenate(([position[0] - 1 if self._furthest is None
                                                                 else self._furthest], position)))[:-1]
        late = position <= furthest_before + 0.5
        ahead = np.rint(position[~late] - furthest_before[~late]).astype(np.int64)
        self.received += raw.shape[0]
        self.out_of_order += int(np.count_nonzero(late))
        self.lost = max(self.lost + int(np.sum(np.maximum(ahead - 1, 0))) - int(np.count_nonzero(late)), 0)
        self._furthest = float(max(furthest_before[-1], position[-1]))

    def as_dict(self) -> dict[str, int]:
        return {"received": self.received, "lost": self.lost, "out_of_order": self.out_of_order}
