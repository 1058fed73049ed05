"""Typed errors of replay and export.

They derive from ``BrokerError`` so that ``edge`` prints their message as one line (and
exits 2) like any other broker-side failure; ``TimeSpecError`` (edge.replay.timespec) is
a ``ValueError`` for a bad argument.
"""

from __future__ import annotations

from broker.errors import BrokerError


class ReplayError(BrokerError):
    """Base of replay and export failures that are not the broker's own errors."""


class SourceError(ReplayError):
    """A record source (vehicle broker or Kafka) could not serve what was asked: an unknown
    topic or pattern, an offset outside the log, an unreachable cluster."""


class SinkError(ReplayError):
    """Replayed records cannot be published: e.g. a destination that is one of the source
    topics (a feedback loop) or has fewer partitions than the source."""
