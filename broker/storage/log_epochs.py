"""Log epochs of one partition: which offsets each incarnation of the log wrote (KIP-320 style).

File ``<topic>/<partition>/log-epochs.json`` (written with ``atomic_write``)::

    {"epochs": [[epoch, start_offset], ...]}     ascending in both, epoch 0 starts at 0

Invariants:
- The current epoch is the last entry; it is bumped at every unclean open (crash recovery
  may have cut the tail, or a power cut may have lost unflushed bytes), starting at the
  recovered log end. Entries starting at or above that offset are dropped: their offsets
  were taken back and are written again under the new epoch.
- ``end_offset(epoch)`` is the first offset not written under ``epoch`` or an earlier one:
  the start of the next entry (the log end for the current epoch). A reader that fetched
  up to position P under epoch E lost nothing iff P <= end_offset(E); otherwise the
  records in [end_offset(E), P) it was served were taken back by recovery.
- Unreadable or missing files start a fresh history ``[[0, 0]]`` (old data directories),
  never an error: epochs only ever make a reader re-check, they hold no data.
"""

from __future__ import annotations

import bisect
import itertools
import json
import logging
from pathlib import Path

from ..logs import log_event
from .layout import LOG_EPOCHS_FILE, atomic_write

logger = logging.getLogger("broker.storage")

MAX_EPOCH_ENTRIES = 1000  # a history this long means a crash loop; the oldest entries go


class LogEpochs:
    def __init__(self, partition_directory: Path):
        self.path = partition_directory / LOG_EPOCHS_FILE
        self._epochs: list[int] = []
        self._starts: list[int] = []
        self._load()

    def _load(self) -> None:
        try:
            raw = json.loads(self.path.read_text())["epochs"]
            pairs = [(int(e), int(s)) for e, s in raw]
            if not pairs or any(b[0] <= a[0] or b[1] < a[1] for a, b in itertools.pairwise(pairs)):
                raise ValueError("epochs must be a non-empty ascending list")
        except FileNotFoundError:
            pairs = [(0, 0)]
        except (ValueError, KeyError, TypeError) as exc:
            log_event(logger, logging.WARNING, "log_epochs_unreadable", path=self.path, reason=exc,
                      effect="epoch history starts afresh")
            pairs = [(0, 0)]
        self._epochs = [e for e, _ in pairs]
        self._starts = [s for _, s in pairs]

    @property
    def current(self) -> int:
        return self._epochs[-1]

    def save(self) -> None:
        body = {"epochs": [[e, s] for e, s in zip(self._epochs, self._starts, strict=True)]}
        atomic_write(self.path, json.dumps(body).encode())

    def bump(self, start_offset: int) -> int:
        """Start a new epoch at ``start_offset`` (the recovered log end); returns it."""
        epoch = self.current + 1
        keep = bisect.bisect_left(self._starts, start_offset)
        self._epochs = [*self._epochs[:keep][-(MAX_EPOCH_ENTRIES - 1):], epoch]
        self._starts = [*self._starts[:keep][-(MAX_EPOCH_ENTRIES - 1):], start_offset]
        self.save()
        return epoch

    def floor(self, epoch: int) -> int | None:
        """The largest epoch in the history that is <= ``epoch`` (None: older than all)."""
        i = bisect.bisect_right(self._epochs, epoch)
        return self._epochs[i - 1] if i else None

    def epoch_at(self, offset: int) -> int:
        """The epoch under which ``offset`` was written (the first one for older offsets)."""
        i = bisect.bisect_right(self._starts, offset)
        return self._epochs[max(i - 1, 0)]

    def end_offset(self, epoch: int, log_end: int) -> int:
        """First offset not written under ``epoch`` or before (``log_end`` for the current)."""
        i = bisect.bisect_right(self._epochs, epoch)
        if i == 0:
            return self._starts[0]  # older than all history: nothing of it is known to remain
        return self._starts[i] if i < len(self._starts) else log_end
