"""Structured, one-line-per-event logging: ``event=name key=value ...``.

Every process logs through ``log_event`` so that one grep or one parser reads all of them;
values with spaces are quoted. ``setup_logging`` configures the root logger once.

Repeats: ``RateLimiter`` lets one event key through at most once per interval and counts
what it held back; ``log_event_limited`` and the ``RateLimitFilter`` (for events logged by
code that does not know it repeats, e.g. ``disk_guard_stuck``) put that count in the next
line that passes as ``suppressed=N``, so a condition that lasts hours is a line a minute,
not a flood, and nothing is hidden.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable

_SECRET_KEYS = ("password", "secret", "token", "sasl.password", "api_key")


def is_secret_key(key: str) -> bool:
    """Whether a setting or log field named ``key`` holds a secret (its value is never shown)."""
    return any(s in key.lower() for s in _SECRET_KEYS)


def _format_value(key: str, value: object) -> str:
    if is_secret_key(key):
        return "***"
    text = str(value)
    if not text or any(c in text for c in ' ="\n'):
        text = '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
    return text


def format_event(event: str, **fields: object) -> str:
    return " ".join([f"event={event}", *(f"{k}={_format_value(k, v)}" for k, v in fields.items())])


def log_event(logger: logging.Logger, level: int, event: str, **fields: object) -> None:
    if logger.isEnabledFor(level):
        logger.log(level, format_event(event, **fields))


def setup_logging(level: str | int = "INFO", process: str = "edge") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        logging.Formatter(f"%(asctime)s level=%(levelname)s process={process} logger=%(name)s %(message)s")
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level if isinstance(level, int) else level.upper())


class RateLimiter:
    """Per key: at most one pass per ``interval_s``; ``allow`` returns how many were held back."""

    def __init__(self, interval_s: float = 60.0, clock: Callable[[], float] = time.monotonic):
        self.interval_s = interval_s
        self._clock = clock
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}

    def allow(self, key: str) -> int | None:
        """None: hold this one back (counted). An int: let it through; the count of repeats
        held back since the last one that passed."""
        now = self._clock()
        last = self._last.get(key)
        if last is not None and now - last < self.interval_s:
            self._suppressed[key] = self._suppressed.get(key, 0) + 1
            return None
        self._last[key] = now
        return self._suppressed.pop(key, 0)


def log_event_limited(limiter: RateLimiter, logger: logging.Logger, level: int, event: str, *,
                      key: str | None = None, **fields: object) -> None:
    """``log_event`` for conditions that repeat: one line per ``key`` (default: the event)
    per interval, with ``suppressed=N`` counting the repeats held back before it."""
    suppressed = limiter.allow(key or event)
    if suppressed is None:
        return
    if suppressed:
        fields["suppressed"] = suppressed
    log_event(logger, level, event, **fields)


class RateLimitFilter(logging.Filter):
    """A logging filter limiting the named events (``event=NAME`` lines) to one per interval,
    appending ``suppressed=N`` to the line that passes after repeats were held back."""

    def __init__(self, events: tuple[str, ...], interval_s: float = 60.0,
                 clock: Callable[[], float] = time.monotonic):
        super().__init__()
        self.events = frozenset(events)
        self.limiter = RateLimiter(interval_s, clock)

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.msg if isinstance(record.msg, str) else ""
        if not message.startswith("event="):
            return True
        event = message[len("event="):].split(" ", 1)[0]
        if event not in self.events:
            return True
        suppressed = self.limiter.allow(event)
        if suppressed is None:
            return False
        if suppressed:
            record.msg = f"{message} suppressed={suppressed}"
        return True
