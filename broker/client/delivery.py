"""Delivery results of the producer: what a ``send`` returns and what it resolves to.

Guarantees:
- One ``concurrent.futures.Future`` per batch, resolved once by the producer's I/O thread
  with the batch's DeliveryResult (first offset, record count) or its typed error; every
  record of the batch shares it, so settling a batch costs the same for 1 or 10,000 records.
- ``settle`` resolves a batch's future once: a result, or its typed error (a future already
  resolved, e.g. failed by ``close``, is left as it is).
- ``RecordFuture`` is the per-record view of that batch future: ``result`` gives the
  record's own DeliveryResult (offset = the batch's first offset + its index), and it has
  the Future methods the appliance uses (result, exception, done, cancelled,
  add_done_callback with the RecordFuture as argument). It is a small slotted object, not
  a Future with its own lock and condition: a Python driver sending thousands of records a
  second pays for one allocation per record, not a synchronisation primitive per record.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class DeliveryResult:
    topic: str
    partition: int
    offset: int | None  # first offset of the records it covers; None with acks="none"
    count: int = 1
    durable_offset: int | None = None


class RecordFuture:
    """One record's delivery: a view of its batch's Future at ``index``."""

    __slots__ = ("_batch", "_index")

    def __init__(self, batch: Future[Any], index: int):
        self._batch = batch
        self._index = index

    def result(self, timeout: float | None = None) -> DeliveryResult:
        batch: DeliveryResult = self._batch.result(timeout)
        offset = None if batch.offset is None else batch.offset + self._index
        return DeliveryResult(batch.topic, batch.partition, offset, 1, batch.durable_offset)

    def exception(self, timeout: float | None = None) -> BaseException | None:
        return self._batch.exception(timeout)

    def done(self) -> bool:
        return self._batch.done()

    def cancelled(self) -> bool:
        return self._batch.cancelled()

    def add_done_callback(self, fn: Callable[[RecordFuture], object]) -> None:
        self._batch.add_done_callback(lambda _batch: fn(self))

    def __repr__(self) -> str:
        return f"<RecordFuture #{self._index} of {self._batch!r}>"


def settle(future: Future[Any], topic: str, partition: int, count: int, base_offset: int | None,
           durable_offset: int | None, error: BaseException | None) -> None:
    """Resolve a batch's future with its DeliveryResult, or with ``error``."""
    if error is not None:
        if not future.done():
            future.set_exception(error)
        return
    future.set_result(DeliveryResult(topic, partition, base_offset, count, durable_offset))
