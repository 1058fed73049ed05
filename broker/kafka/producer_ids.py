"""Producer ids for InitProducerId: unique across restarts of one data directory.

File ``DATA/_kafka/producer-ids.json`` = ``{"next_block": N}``: ids below N may have been
handed out. Ids are reserved a block at a time (crash-safe write before any id of the
block is used), so a crash skips at most the rest of a block and never repeats an id.
Re-initialising a known (id, epoch) bumps the epoch, as Kafka does; at the epoch limit a
new id is handed out.

Not thread-safe: the broker's event loop owns it.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from ..logs import log_event
from ..storage.layout import atomic_write

logger = logging.getLogger("broker.kafka")

BLOCK = 1000
MAX_EPOCH = 32767
KAFKA_DIR = "_kafka"
FILE = "producer-ids.json"


class ProducerIds:
    def __init__(self, data_dir: Path):
        self.path = Path(data_dir) / KAFKA_DIR / FILE
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._next = 0
        self._limit = 0
        if self.path.exists():
            try:
                self._next = self._limit = int(json.loads(self.path.read_text())["next_block"])
            except (ValueError, KeyError, TypeError) as exc:
                # ids from before are unknown: start far above anything a block could have reached
                log_event(logger, logging.ERROR, "producer_ids_unreadable", path=self.path, reason=exc)
                self._next = self._limit = 1 << 40

    def _allocate(self) -> int:
        if self._next >= self._limit:
            atomic_write(self.path, json.dumps({"next_block": self._next + BLOCK}).encode())
            self._limit = self._next + BLOCK
        producer_id = self._next
        self._next += 1
        return producer_id

    def init(self, producer_id: int, epoch: int) -> tuple[int, int]:
        """(producer id, epoch) for an InitProducerId carrying ``producer_id``/``epoch``
        (-1/-1 for a new producer)."""
        if 0 <= producer_id < self._next and 0 <= epoch < MAX_EPOCH:
            return producer_id, epoch + 1
        return self._allocate(), 0
