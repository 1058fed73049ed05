"""Typed errors shared by the storage engine, the wire protocol and the client library.

Every error carries a stable numeric ``code`` (sent on the wire, see docs/PROTOCOL.md) and a
human-readable reason that names what was wrong. Invariants are checked with these errors,
never with ``assert`` (which vanishes under ``python -O``).
"""

from __future__ import annotations

import re
from typing import Any


class BrokerError(Exception):
    """Base class. ``code`` is the wire error code; ``retriable`` tells clients to back off and retry."""

    code = 1
    retriable = False
    kafka_error: str | None = None  # the Kafka protocol's name for this error, where one applies

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class CorruptBatchError(BrokerError):
    """A record batch failed validation (bad magic, version, length, CRC, offsets, records).

    ``resume_offset``, when known, is the first offset after the damage where reading can
    go on (a consumer may skip there on purpose). It travels in the message as the suffix
    `` [resume at offset N]`` so that the wire format stays code + message."""

    code = 2
    _RESUME = re.compile(r" \[resume at offset (\d+)\]$")

    def __init__(self, message: str):
        super().__init__(message)
        found = self._RESUME.search(message)
        self.resume_offset: int | None = int(found.group(1)) if found else None

    @classmethod
    def at(cls, message: str, resume_offset: int) -> CorruptBatchError:
        return cls(f"{message} [resume at offset {resume_offset}]")


class CorruptIndexError(BrokerError):
    """An offset or time index is inconsistent with its segment; it is rebuilt from the log."""

    code = 3


class InvalidTopicError(BrokerError):
    """A topic name is empty, too long, or could escape the data directory."""

    code = 4


class UnknownTopicError(BrokerError):
    code = 5


class UnknownPartitionError(BrokerError):
    code = 6


class OffsetOutOfRangeError(BrokerError):
    """The offset is not in the log: below its start (deleted) or beyond its end.

    Raised by a Consumer whose ``auto_offset_reset`` is ``error``/``none``; then ``reset``
    holds the OffsetReset it refused (topic, partition, from/to offset, records skipped).
    """

    code = 7
    reset: Any = None  # the refused broker.client.resets.OffsetReset (a lower layer cannot name it)


class RecordTooLargeError(BrokerError):
    code = 8


class UnknownCodecError(BrokerError):
    code = 9


class TopicExistsError(BrokerError):
    code = 10


class InvalidRequestError(BrokerError):
    """A request was malformed: wrong frame count, bad header, bad field value."""

    code = 11


class UnsupportedVersionError(BrokerError):
    code = 12


class DiskFullError(BrokerError):
    """The disk has no room for the write; nothing was appended. Retriable once space is freed.
    Kafka's name for it: KAFKA_STORAGE_ERROR."""

    code = 13
    retriable = True
    kafka_error = "KAFKA_STORAGE_ERROR"


class BrokerUnavailableError(BrokerError):
    """The broker did not answer in time (down, restarting or overloaded)."""

    code = 14
    retriable = True


class BrokerAuthError(BrokerUnavailableError):
    """The broker refused this client's CURVE handshake (client-side only, never on the wire)."""

    retriable = False


class InvalidConfigError(BrokerError):
    code = 15


class UnknownGroupMemberError(BrokerError):
    """A group member's session expired or it never joined; it must join again."""

    code = 16
    retriable = True


class StorageError(BrokerError):
    """An I/O error in the storage engine other than a full disk (Kafka: KAFKA_STORAGE_ERROR)."""

    code = 17
    kafka_error = "KAFKA_STORAGE_ERROR"


class ProducerBufferFullError(BrokerError):
    """The producer's buffer is full (the broker is slow or down); the record was not taken."""

    code = 18
    retriable = True


class BrokerBusyError(BrokerError):
    """The broker refused a request to bound its memory: this client has too many parked
    fetches or too many reply bytes it has not read, or too many clients are connected.
    Retriable: read the pending replies (or wait) and ask again."""

    code = 19
    retriable = True


class ResourceLimitError(BrokerError):
    """A topic change would pass a broker limit derived from its file-descriptor limit
    (partitions per topic, partitions in total, open files)."""

    code = 20


class DeliveryUnknownError(BrokerError):
    """Client side: the batch was sent but its acknowledgement did not come in time, so the
    broker may or may not have written it (a late write is possible; not a failure)."""

    code = 21
    retriable = False


class LogTruncatedError(OffsetOutOfRangeError):
    """Crash recovery took back offsets a reader was already served (its log epoch ended
    before its position); the fetch entry's ``truncated_to`` is where the log now goes on."""

    code = 22


class TopicRecreatedError(OffsetOutOfRangeError):
    """The topic was deleted and created again (its id changed) under a reader's position
    (client-side only, never on the wire)."""


class OutOfOrderSequenceError(BrokerError):
    """An idempotent producer's batch does not continue its sequence in the partition (a
    gap or a reorder; Kafka's OUT_OF_ORDER_SEQUENCE_NUMBER). Nothing was written."""

    code = 23
    kafka_error = "OUT_OF_ORDER_SEQUENCE_NUMBER"


class ProducerFencedError(BrokerError):
    """An idempotent producer's epoch is older than the partition has seen (Kafka's
    INVALID_PRODUCER_EPOCH). Nothing was written."""

    code = 24
    kafka_error = "INVALID_PRODUCER_EPOCH"


ERRORS_BY_CODE: dict[int, type[BrokerError]] = {
    cls.code: cls
    for cls in (
        BrokerError,
        CorruptBatchError,
        CorruptIndexError,
        InvalidTopicError,
        UnknownTopicError,
        UnknownPartitionError,
        OffsetOutOfRangeError,
        RecordTooLargeError,
        UnknownCodecError,
        TopicExistsError,
        InvalidRequestError,
        UnsupportedVersionError,
        DiskFullError,
        BrokerUnavailableError,
        InvalidConfigError,
        UnknownGroupMemberError,
        StorageError,
        ProducerBufferFullError,
        BrokerBusyError,
        ResourceLimitError,
        DeliveryUnknownError,
        LogTruncatedError,
        OutOfOrderSequenceError,
        ProducerFencedError,
    )
}


def error_from_code(code: int, message: str) -> BrokerError:
    """Rebuild the typed error a peer sent; an unknown code becomes a plain BrokerError."""
    cls = ERRORS_BY_CODE.get(code, BrokerError)
    err = cls(message)
    if cls is BrokerError:
        err.code = code
    return err
