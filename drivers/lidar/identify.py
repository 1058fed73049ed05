"""Which Velodyne model sent a stream: evidence from the packets, checked against the calibration.

Owns: the decision of the model a stream is decoded as, and the record of why. Factory
bytes are not always right in the wild (early VLP-16 firmware reports the HDL-32E's
product id 0x21), so three independent witnesses vote on the packet *layout*:

    product_id      the factory byte (offset 1205) → the model it names
    packet_interval median spacing of consecutive packets in sensor time (µs past the
                    hour): a VLP-16-layout packet spans 12 × 110.592 µs = 1,327 µs, an
                    HDL-32E packet 12 × 46.08 µs = 553 µs (half of each in dual return)
    firing_pattern  a VLP-16 block holds two firings of the same 16 lasers 55 µs apart,
                    so channels i and i+16 measure nearly the same distance (≥ 97 % of
                    returned pairs within 5 % on real captures); an HDL-32E block holds 32
                    different lasers (≤ 7 %): threshold 50 %, over ≥ 20 returned pairs

The majority of the witnesses that have an opinion wins; a 1-1 tie goes to the packets'
own physics (firing pattern, then interval) over the factory byte. Within the winning
layout, the product id names the model when it belongs to that layout (e.g. a Puck
Hi-Res, 0x24, in the VLP-16 layout), else the layout's base model does.

A product id naming a model decoded by the reference decoder (velodyne_ext.py: VLP-32C
0x28, VLS-128 0xA1) decides by itself: those layouts have no witness here yet. The
HDL-64E sends no product id: it is decoded only when configured.

A configured model (``--model``) overrides the vote (the evidence is still recorded and
a disagreement logged). A calibration is not a witness: its laser count must equal the
decided layout's, else ``LidarModelMismatchError`` (one line naming the calibration, the
packets' model and the evidence) — a wrong calibration never yields a wrong cloud.

``ModelEvidence.as_dict()`` is what the driver puts in its health record
(``details.lidar_model``) and what the ``lidar_model_detected`` log line says.
"""

from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from broker.logs import log_event

from .calibration import LASERS_PER_MODEL, PACKET_LAYOUT
from .clock import HOUR_US
from .frame import LidarModelMismatchError
from .velodyne_ext import EXTERNAL_MODELS

logger = logging.getLogger("drivers.lidar.velodyne")

PRODUCT_NAMES = {0x21: "HDL-32E", 0x22: "VLP-16", 0x24: "Puck Hi-Res", 0x28: "VLP-32C", 0x31: "Velarray",
                 0xA1: "VLS-128"}
RETURN_MODE_DUAL = 0x39
PACKET_SPAN_US = {"VLP-16": 12 * 110.592, "HDL-32E": 12 * 46.08}  # single return, per layout
INTERVAL_TOLERANCE = 0.1  # relative: an interval this close to a layout's span votes for it (VLP-32C: +20 %)
PATTERN_MIN_PAIRS = 20
PATTERN_SAME_LASER = 0.5  # fraction of close i / i+16 pairs above which the block is 2 × 16 lasers


@dataclass(frozen=True)
class ModelEvidence:
    """The decision and every witness's opinion (None: no opinion)."""

    model: str
    decided_by: str  # "configured", "packets: firing_pattern+packet_interval", "calibration", ...
    product_id: str | None  # "0x21 (HDL-32E)"
    product_id_says: str | None
    packet_interval_us: float | None
    packet_interval_says: str | None
    same_laser_pairs: float | None  # fraction of channel i / i+16 pairs within 5 %
    firing_pattern_says: str | None
    calibration_lasers: int | None
    calibration: str | None

    def as_dict(self) -> dict[str, Any]:
        return {k: (round(v, 3) if isinstance(v, float) else v) for k, v in asdict(self).items()}


def _interval_vote(timestamps_us: np.ndarray, dual: bool) -> tuple[float | None, str | None]:
    if timestamps_us.shape[0] < 2:
        return None, None
    interval = float(np.median(np.mod(np.diff(timestamps_us.astype(np.int64)), HOUR_US)))
    if interval <= 0:
        return interval, None
    expected = {layout: span / (2 if dual else 1) for layout, span in PACKET_SPAN_US.items()}
    nearest = min(expected, key=lambda layout: abs(math.log(interval / expected[layout])))
    return interval, (nearest if abs(interval / expected[nearest] - 1) < INTERVAL_TOLERANCE else None)


def _pattern_vote(distances: np.ndarray) -> tuple[float | None, str | None]:
    """``distances``: (n, 12, 32) raw distances of single-return packets."""
    if distances.shape[0] == 0:
        return None, None
    first, second = distances[..., :16].astype(np.int32), distances[..., 16:].astype(np.int32)
    both = (first > 0) & (second > 0)
    pairs = int(np.count_nonzero(both))
    if pairs < PATTERN_MIN_PAIRS:
        return None, None
    close = np.abs(first - second) <= np.maximum(np.maximum(first, second) // 20, 25)  # 5 %, at least 5 cm
    fraction = np.count_nonzero(close & both) / pairs
    return fraction, ("VLP-16" if fraction > PATTERN_SAME_LASER else "HDL-32E")


def unsupported_product(packets: np.ndarray) -> str | None:
    """The name of a known model no decoder here handles (Velarray) when the first
    packet's product id names one, else None."""
    claimed = PRODUCT_NAMES.get(int(packets["product_id"][0]))
    return claimed if claimed is not None and claimed not in PACKET_LAYOUT and claimed not in EXTERNAL_MODELS else None


def lasers_of(model: str) -> int:
    """Lasers of any model a decoder here handles."""
    return LASERS_PER_MODEL[PACKET_LAYOUT[model]] if model in PACKET_LAYOUT else EXTERNAL_MODELS[model][1]


def identify_model(packets: np.ndarray, *, configured_model: str | None, calibration_lasers: int | None,
                   calibration_origin: str | None, source: str) -> ModelEvidence | None:
    """Decide the model of a stream from its first valid packets (``PACKET_DTYPE``
    records). None when nothing can tell (no witness, no configuration, no calibration)
    or, unconfigured, when the product id names a model without a decoder here (see
    ``unsupported_product``). Raises ``LidarModelMismatchError`` when a calibration's
    laser count contradicts the packets."""
    product_id = int(packets["product_id"][0])
    claimed = PRODUCT_NAMES.get(product_id)
    if configured_model is None and unsupported_product(packets) is not None:
        return None
    product_says = PACKET_LAYOUT.get(claimed) if claimed else None
    dual = bool(packets["return_mode"][0] == RETURN_MODE_DUAL)
    interval, interval_says = _interval_vote(packets["timestamp_us"], dual)
    single = packets["return_mode"] != RETURN_MODE_DUAL
    fraction, pattern_says = _pattern_vote(packets["blocks"]["returns"]["distance"][single])

    votes = {"firing_pattern": pattern_says, "packet_interval": interval_says, "product_id": product_says}
    counted = {name: layout for name, layout in votes.items() if layout is not None}
    layout, decided_by = None, None
    if counted:
        tally = {candidate: [n for n, said in counted.items() if said == candidate]
                 for candidate in set(counted.values())}
        top = max(len(names) for names in tally.values())
        leaders = [c for c, names in tally.items() if len(names) == top]
        if len(leaders) > 1:  # a tie: the packets' physics before the factory byte (dict order)
            leaders = [next(counted[n] for n in votes if n in counted)]
        layout = leaders[0]
        decided_by = "packets: " + "+".join(tally[layout])
    packet_model = (claimed if claimed and PACKET_LAYOUT.get(claimed) == layout else layout) if layout else None

    if configured_model is not None:
        model, decided_by = configured_model, "configured"
    elif claimed in EXTERNAL_MODELS:  # a layout velodyne_ext.py decodes: its factory byte is the witness
        model, decided_by = claimed, "packets: product_id"
    elif packet_model is not None and decided_by is not None:  # both come from the packets' vote
        model = packet_model
    elif calibration_lasers is not None:
        model = {16: "VLP-16", 32: "HDL-32E"}[calibration_lasers]
        decided_by = "calibration"
    else:
        return None

    evidence = ModelEvidence(
        model=model, decided_by=decided_by, product_id=f"0x{product_id:02x} ({claimed or 'unknown'})",
        product_id_says=product_says, packet_interval_us=interval, packet_interval_says=interval_says,
        same_laser_pairs=fraction, firing_pattern_says=pattern_says, calibration_lasers=calibration_lasers,
        calibration=calibration_origin)
    if configured_model is None and calibration_lasers is not None and calibration_lasers != lasers_of(model):
        raise LidarModelMismatchError(
            f"{source}: calibration {calibration_origin} has {calibration_lasers} lasers but the packets are from a "
            f"{model} ({lasers_of(model)} lasers; {decided_by}, product id "
            f"{evidence.product_id}, interval {interval or 0:.0f} µs): give the {model}'s calibration")
    disagree = sorted(name for name, said in counted.items() if said != PACKET_LAYOUT.get(model))
    log_event(logger, logging.WARNING if disagree else logging.INFO, "lidar_model_detected", source=source,
              model=model, decided_by=decided_by, overruled=",".join(disagree) or None,
              product_id=evidence.product_id, packet_interval_us=f"{interval:.0f}" if interval is not None else None,
              same_laser_pairs=f"{fraction:.2f}" if fraction is not None else None,
              calibration_lasers=calibration_lasers)
    return evidence
