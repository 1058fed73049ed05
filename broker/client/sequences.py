"""Idempotent produce, client side (Kafka's producer id, epoch and sequences).

The producer id and epoch come from the broker once (INIT_PRODUCER_ID, through ``init``);
each partition's records are numbered from 0, wrapping at 2^31, in the order batches are
first sent. After a numbered batch fails for good (never written) its partition's numbers
have a gap the broker would refuse, so ``restart`` takes a new producer id and starts every
partition at 0 again. A broker without INIT_PRODUCER_ID (InvalidRequest/UnsupportedVersion)
means no idempotence: batches carry -1. A broker that cannot answer INIT_PRODUCER_ID yet (down,
or hung before this producer's request connection finished its handshake) does not fail the
batch: it goes out unnumbered, as without idempotence (counted in ``unnumbered_batches``),
and the id is asked for again after ``INIT_RETRY_S``, so a hung broker costs no records and
a dead one no more than one wait. Used by the producer's I/O thread only.
"""

from __future__ import annotations

import collections
import logging
import time
from collections.abc import Callable
from typing import Any

from ..errors import BrokerUnavailableError, InvalidRequestError, UnsupportedVersionError
from ..logs import log_event

logger = logging.getLogger("broker.client.producer")

SEQUENCE_SPACE = 1 << 31
NO_PRODUCER = (-1, -1, -1)
INIT_RETRY_S = 1.0  # after INIT_PRODUCER_ID found no broker, batches go unnumbered this long


class ProducerSequences:
    def __init__(self, enabled: bool, init: Callable[[], dict[str, Any]]):
        self._enabled = enabled
        self._init = init
        self._identity: tuple[int, int] | None = None if enabled else (-1, -1)
        self._next: collections.Counter[tuple[str, int]] = collections.Counter()
        self._init_retry_at = 0.0
        self.unnumbered_batches = 0  # sent without a producer id because none could be had yet

    def identity(self) -> tuple[int, int]:
        """(producer id, epoch), asked of the broker the first time."""
        if self._identity is None:
            try:
                meta = self._init()
                self._identity = (int(meta["producer_id"]), int(meta["producer_epoch"]))
            except (InvalidRequestError, UnsupportedVersionError):
                self._identity = (-1, -1)  # an older broker: no idempotence
        return self._identity

    def take(self, partition_key: tuple[str, int], count: int) -> tuple[int, int, int]:
        """(producer id, epoch, first sequence) for the next ``count`` records of a
        partition; NO_PRODUCER without idempotence, or while no producer id can be had."""
        if self._identity is None and time.monotonic() < self._init_retry_at:
            self.unnumbered_batches += 1
            return NO_PRODUCER
        try:
            producer_id, epoch = self.identity()
        except BrokerUnavailableError as exc:
            self._init_retry_at = time.monotonic() + INIT_RETRY_S
            self.unnumbered_batches += 1
            # without a number a retry after a timeout could be written twice, so such a batch
            # is never retried: a lost reply makes it DeliveryUnknownError (counted), as before.
            # INFO, not WARNING: unnumbered is a downgrade, not a loss; a batch that then fails
            # is reported by its own delivery error (one line on a CLI's stderr, not two)
            log_event(logger, logging.INFO, "producer_id_unavailable", reason=str(exc),
                      unnumbered_batches=self.unnumbered_batches, retry_in_s=INIT_RETRY_S)
            return NO_PRODUCER
        if producer_id < 0:
            return NO_PRODUCER
        sequence = self._next[partition_key]
        self._next[partition_key] = (sequence + count) % SEQUENCE_SPACE
        return producer_id, epoch, sequence

    def restart(self) -> None:
        """A numbered batch failed for good: a new producer id, every partition from 0."""
        if self._enabled:
            self._identity = None
        self._next.clear()
