"""Typed errors of export.

Every failure of an export is an ``ExportError`` (a ``ReplayError``, so a ``BrokerError``):
``edge export`` prints its message as one line and exits 2, the API's job reports it as
the job's error. Source problems (unknown topic, unreachable broker) stay ``SourceError``
from edge.replay; a bad time argument stays ``TimeSpecError`` (a ``ValueError``).
"""

from __future__ import annotations

from edge.replay.errors import ReplayError


class ExportError(ReplayError):
    """An export that cannot be done or finished: an unwritable or existing output path,
    an empty window, a missing library, a format that does not fit the topics."""


class ExportCancelled(ExportError):
    """The export was cancelled (``cancelled()`` turned true, or Ctrl-C); nothing was left
    under the final name."""

    def __init__(self, message: str = "export cancelled: nothing was written under the final name"):
        super().__init__(message)
