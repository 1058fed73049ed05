"""The uplink's byte budget per UTC day or month: never exceeded, not even across a crash.

File ``<data_dir>/.mirror/budget.json``: ``{"period": "day"|"month", "period_key":
"2026-12-06"|"2026-12", "limit_bytes": int, "granted_bytes": int}``, written with the atomic
recipe (broker.storage.layout.atomic_write: temp, fsync, rename, fsync of the directory).

Invariant: ``granted_bytes`` on disk >= the bytes this period has put on the link. Bytes are
granted ahead, in grants of ``grant_bytes`` (at most what is left), and the file is written
before a grant is used: a crash loses at most one grant's unused part (counted as spent,
never given back), so a restart can never spend more than the limit. Bytes count when a
record is handed to the link (key, value and headers, before compression), whether or not
its transaction commits: an aborted transaction used the link too.

A corrupt file is an error naming it (BudgetFileError), never silently reset: a reset would
let the period spend its budget twice. A new period (UTC date or month changed) starts at 0.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from broker.logs import log_event
from broker.storage.layout import atomic_write

from .destination import MirrorError

logger = logging.getLogger("edge.mirror")
BUDGET_FILE = "budget.json"
MIN_GRANT_BYTES = 1 << 20


class BudgetFileError(MirrorError):
    """The budget file cannot be read: the mirror does not guess what was spent."""


def period_key(period: str, now_s: float) -> str:
    moment = datetime.fromtimestamp(now_s, tz=UTC)
    return moment.strftime("%Y-%m-%d" if period == "day" else "%Y-%m")


class UplinkBudget:
    def __init__(self, limit_bytes: int, period: str, state_dir: Path, *, clock: Callable[[], float] = time.time,
                 grant_bytes: int | None = None):
        self.limit_bytes = limit_bytes
        self.period = period
        self.path = state_dir / BUDGET_FILE
        self.clock = clock
        self.grant_bytes = grant_bytes or max(MIN_GRANT_BYTES, limit_bytes // 1000)
        self.passed_over = 0  # times a record waited because the budget had no room for it
        self._backlog_warned = False
        self.blocked = False  # the last record offered did not fit: shipping waits for the next period
        self.key = period_key(period, clock())
        self.granted = 0  # on disk: an upper bound of what this period spent
        self.spent = 0  # handed to the link by this process this period, plus what a restart inherited
        self._load()

    def _load(self) -> None:
        try:
            body = json.loads(self.path.read_bytes())
        except FileNotFoundError:
            return
        except (OSError, ValueError) as exc:
            raise BudgetFileError(f"{self.path}: unreadable uplink budget file ({exc}); the mirror will not guess what "
                                  "this period spent: fix or delete it (deleting lets the period spend its budget "
                                  "again)") from None
        granted = body.get("granted_bytes") if isinstance(body, dict) else None
        if not isinstance(granted, int) or granted < 0 or not isinstance(body.get("period_key"), str):
            raise BudgetFileError(f"{self.path}: not an uplink budget file (need period_key and granted_bytes >= 0); "
                                  "fix or delete it (deleting lets the period spend its budget again)")
        if body["period_key"] == self.key:
            self.granted = self.spent = granted  # what the last process may have spent counts as spent

    def _roll(self) -> None:
        key = period_key(self.period, self.clock())
        if key != self.key:
            log_event(logger, logging.INFO, "mirror_budget_period", period=self.period, previous=self.key,
                      spent_bytes=self.spent, limit_bytes=self.limit_bytes, new=key)
            self.key, self.granted, self.spent, self.blocked = key, 0, 0, False
            self._write()

    def _write(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        body = {"period": self.period, "period_key": self.key, "limit_bytes": self.limit_bytes,
                "granted_bytes": self.granted}
        atomic_write(self.path, json.dumps(body).encode())

    @property
    def remaining(self) -> int:
        return max(0, self.limit_bytes - self.spent)

    def try_spend(self, n: int) -> bool:
        """Count ``n`` bytes about to go on the link; False (nothing counted) when they do not fit."""
        self._roll()
        if self.spent + n > self.limit_bytes:
            self.passed_over += 1
            if not self.blocked:
                log_event(logger, logging.WARNING, "mirror_budget_exhausted", period=self.period, period_key=self.key,
                          spent_bytes=self.spent, limit_bytes=self.limit_bytes, record_bytes=n)
            self.blocked = True
            return False
        if self.spent + n > self.granted:  # grant ahead, durably, before the bytes go
            self.granted = min(self.limit_bytes, max(self.spent + n, self.granted + self.grant_bytes))
            self._write()
        self.spent += n
        self.blocked = False
        return True

    def check_event_backlog(self, backlog_bytes: int) -> str | None:
        """The message when what is left cannot carry the complete events' backlog (logged once
        each time it becomes true), else None."""
        if backlog_bytes <= self.remaining:
            self._backlog_warned = False
            return None
        message = (f"uplink budget left this {self.period} ({self.remaining} bytes of {self.limit_bytes}) is smaller "
                   f"than the complete events' backlog (about {backlog_bytes} bytes): not every event can ship before "
                   f"{self.period} {self.key} ends; raise [mirror] budget or delete events")
        if not self._backlog_warned:
            log_event(logger, logging.WARNING, "mirror_budget_below_event_backlog", remaining_bytes=self.remaining,
                      event_backlog_bytes=backlog_bytes, message=message)
            self._backlog_warned = True
        return message

    def status(self) -> dict[str, Any]:
        return {"period": self.period, "period_key": self.key, "limit_bytes": self.limit_bytes,
                "spent_bytes": self.spent, "remaining_bytes": self.remaining,
                "exhausted": self.blocked,
                "passed_over": self.passed_over}
