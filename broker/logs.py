"""Re-export of the floor's logging (``broker.base.logs``): the one ``setup_logging`` and
``log_event`` of every process. New code imports ``broker.base.logs``; the names stay here
for the modules that import them from ``broker.logs``.
"""

from __future__ import annotations

from .base.logs import (
    RateLimiter,
    RateLimitFilter,
    format_event,
    is_secret_key,
    log_event,
    log_event_limited,
    setup_logging,
)

__all__ = ["RateLimitFilter", "RateLimiter", "format_event", "is_secret_key", "log_event", "log_event_limited",
           "setup_logging"]
