"""Logs of third-party libraries (librdkafka in the mirror, uvicorn in the API) folded into
ours: one structured line per event (``event=third_party_log library=... message=...``), and
a message that repeats is let through once per interval with ``suppressed=N`` counting the
repeats held back (broker/logs.py RateLimiter), so an unreachable cloud is a line every 30 s
per distinct failure, not hundreds.

Repeats are recognised by the message with its digits blanked (librdkafka numbers its
clients, addresses and "N identical error(s) suppressed"); a different failure passes at once.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable

from broker.logs import RateLimiter, format_event

REPEAT_INTERVAL_S = 30.0
LIBRDKAFKA_LOGGER = "librdkafka"
UVICORN_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.asgi")
_DIGITS = re.compile(r"\d+")


class ThirdPartyLogFold(logging.Filter):
    """Rewrites a library's record into our event form and rate-limits its repeats."""

    def __init__(self, library: str, interval_s: float = REPEAT_INTERVAL_S,
                 clock: Callable[[], float] = time.monotonic):
        super().__init__()
        self.library = library
        self.limiter = RateLimiter(interval_s, clock)

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        if text.startswith("event="):
            return True  # already ours
        suppressed = self.limiter.allow(_DIGITS.sub("#", text)[:300])
        if suppressed is None:
            return False
        fields: dict[str, object] = {"library": self.library, "message": text}
        if suppressed:
            fields["suppressed"] = suppressed
        record.msg, record.args = format_event("third_party_log", **fields), None
        return True


def _install(name: str, library: str, interval_s: float) -> logging.Logger:
    logger = logging.getLogger(name)
    if not any(isinstance(f, ThirdPartyLogFold) for f in logger.filters):
        logger.addFilter(ThirdPartyLogFold(library, interval_s))
    return logger


def librdkafka_logger(interval_s: float = REPEAT_INTERVAL_S) -> logging.Logger:
    """The logger to pass as a confluent-kafka client's ``logger`` setting (instead of
    librdkafka printing to stderr itself)."""
    return _install(LIBRDKAFKA_LOGGER, "librdkafka", interval_s)


def fold_uvicorn_logs(interval_s: float = REPEAT_INTERVAL_S) -> None:
    for name in UVICORN_LOGGERS:
        _install(name, "uvicorn", interval_s)
