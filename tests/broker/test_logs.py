"""Repeated log lines: one per key per interval, the held-back count in the next line."""

from __future__ import annotations

import logging

from broker.logs import RateLimiter, RateLimitFilter, log_event, log_event_limited


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def test_rate_limiter_counts_what_it_holds_back():
    clock = Clock()
    limiter = RateLimiter(60, clock)
    assert limiter.allow("a") == 0
    assert [limiter.allow("a") for _ in range(5)] == [None] * 5
    assert limiter.allow("b") == 0  # keys are independent
    clock.now = 61
    assert limiter.allow("a") == 5
    assert limiter.allow("a") is None


def test_log_event_limited_and_filter(caplog):
    clock = Clock()
    logger = logging.getLogger("test.ratelimit")
    limiter = RateLimiter(10, clock)
    with caplog.at_level(logging.INFO, logger="test.ratelimit"):
        for _ in range(100):
            log_event_limited(limiter, logger, logging.ERROR, "disk_full", free_bytes=0)
        clock.now = 11
        log_event_limited(limiter, logger, logging.ERROR, "disk_full", free_bytes=0)
    lines = [r.getMessage() for r in caplog.records]
    assert lines == ["event=disk_full free_bytes=0", "event=disk_full free_bytes=0 suppressed=99"]

    caplog.clear()
    logger.addFilter(RateLimitFilter(("disk_guard_stuck",), 10, clock))
    with caplog.at_level(logging.INFO, logger="test.ratelimit"):
        for _ in range(50):
            log_event(logger, logging.ERROR, "disk_guard_stuck", free_bytes=1)
            log_event(logger, logging.INFO, "other", n=1)  # not limited
        clock.now = 25
        log_event(logger, logging.ERROR, "disk_guard_stuck", free_bytes=1)
    stuck = [r.getMessage() for r in caplog.records if "disk_guard_stuck" in r.getMessage()]
    assert stuck == ["event=disk_guard_stuck free_bytes=1", "event=disk_guard_stuck free_bytes=1 suppressed=49"]
    assert sum("event=other" in r.getMessage() for r in caplog.records) == 50
