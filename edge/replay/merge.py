"""Merge per-partition record streams into one stream ordered by capture time.

Guarantees:
- The output is ordered by ``Record.timestamp`` (capture time) across streams, provided
  each input is ordered by capture time (a partition written by one driver is); ties keep
  the order of the inputs, then each input's own order (stable).
- Lazy and bounded: at any time the merge holds one head record per input, nothing more;
  what each input reads ahead is the input's business (see edge.replay.sources).
- ``close`` closes every input, also when the merge was abandoned half way (a seek).
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Iterator
from operator import attrgetter
from typing import Protocol

from broker.records import Record

_by_time = attrgetter("timestamp")


class RecordStream(Protocol):
    def __iter__(self) -> Iterator[Record]: ...

    def close(self) -> None: ...


class MergedStream:
    """Iterate over the capture-time merge of ``streams``; use as a context manager."""

    def __init__(self, streams: Iterable[RecordStream]):
        self.streams = list(streams)
        self._iter: Iterator[Record] | None = None

    def __iter__(self) -> Iterator[Record]:
        if self._iter is None:
            self._iter = (heapq.merge(*self.streams, key=_by_time) if len(self.streams) > 1
                          else iter(self.streams[0]) if self.streams else iter(()))
        return self._iter

    def close(self) -> None:
        for stream in self.streams:
            stream.close()
        self._iter = None

    def __enter__(self) -> MergedStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
