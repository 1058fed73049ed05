"""The mirror's explicit states and the typed errors that move it between them.

Link (reported as ``link`` in the status; the strings are the report's contract):
``starting`` → ``idle`` (nothing selected) | ``up`` (a commit succeeded) | ``down`` (a session
failed or a commit is being retried); ``budget_exhausted`` is reported beside it, not as a link
state: the link is fine, the money is not.

Transaction (the ship loop's, one at a time): ``NONE`` → ``OPEN`` (begin_transaction, records
queued) → commit → ``NONE``; a produce that failed for the transaction (not for the record)
moves ``OPEN`` → ``DOOMED``: the only way out is an abort, after which local positions go
back to the last commit.

Kafka's errors are classified once, by librdkafka's flags and codes (never by message text),
into the typed errors below; the loops act on the type:
- ``TransactionAbortRequired``: abort, rewind to the last commit, carry on in the session;
- ``LinkDown``: retriable (broker unreachable, timeouts): retry the commit with backoff, or
  end the session and start a new one after a backoff;
- ``ProducerFenced`` / ``KafkaFatal``: the producer is unusable: a new session (a new producer,
  ``init_transactions``) after a backoff; fencing means another mirror with this vehicle id.
"""

from __future__ import annotations

import enum

from confluent_kafka import KafkaError, KafkaException

from .destination import MirrorError


class Link(enum.StrEnum):
    STARTING = "starting"
    IDLE = "idle"
    UP = "up"
    DOWN = "down"


class Txn(enum.Enum):
    NONE = "none"
    OPEN = "open"
    DOOMED = "doomed"  # a produce failed for the transaction: abort is the only way out


class KafkaStateError(MirrorError):
    """A Kafka error, classified: ``error`` is librdkafka's KafkaError."""

    def __init__(self, error: KafkaError):
        super().__init__(f"{error.name()}: {error.str()}")
        self.error = error


class TransactionAbortRequired(KafkaStateError):
    """The open transaction can only be aborted (records go again in a new one)."""


class LinkDown(KafkaStateError):
    """Retriable: the cluster is unreachable or slow; try again after a backoff."""


class ProducerFenced(KafkaStateError):
    """Another producer with this transactional id (another mirror of this vehicle) took over."""


class KafkaFatal(KafkaStateError):
    """The producer cannot go on (fatal librdkafka error): a new session makes a new one."""


def classify(exc: KafkaException) -> KafkaStateError:
    """The typed error for a KafkaException raised by a transactional producer call."""
    error = exc.args[0]
    if not isinstance(error, KafkaError):
        return KafkaFatal(KafkaError(KafkaError._FAIL, str(error)))
    if error.code() in (KafkaError._FENCED, KafkaError.PRODUCER_FENCED, KafkaError.INVALID_PRODUCER_EPOCH):
        return ProducerFenced(error)
    if error.txn_requires_abort():
        return TransactionAbortRequired(error)
    if error.retriable():
        return LinkDown(error)
    return KafkaFatal(error)
