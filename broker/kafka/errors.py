"""Kafka protocol error codes used by the listener, and the mapping from this broker's typed
errors (broker/errors.py) to them. Codes are Kafka's (``org.apache.kafka.common.protocol.Errors``)."""

from __future__ import annotations

from kio.schema.errors import ErrorCode

from ..errors import (
    BrokerError,
    CorruptBatchError,
    DiskFullError,
    InvalidConfigError,
    InvalidRequestError,
    InvalidTopicError,
    OffsetOutOfRangeError,
    RecordTooLargeError,
    ResourceLimitError,
    StorageError,
    TopicExistsError,
    UnknownCodecError,
    UnknownPartitionError,
    UnknownTopicError,
)

UNKNOWN_SERVER_ERROR = -1
NONE = 0
OFFSET_OUT_OF_RANGE = 1
CORRUPT_MESSAGE = 2
UNKNOWN_TOPIC_OR_PARTITION = 3
MESSAGE_TOO_LARGE = 10
OFFSET_METADATA_TOO_LARGE = 12
COORDINATOR_NOT_AVAILABLE = 15
INVALID_TOPIC_EXCEPTION = 17
RECORD_LIST_TOO_LARGE = 18
INVALID_GROUP_ID = 24
UNSUPPORTED_VERSION = 35
TOPIC_ALREADY_EXISTS = 36
INVALID_PARTITIONS = 37
INVALID_REPLICATION_FACTOR = 38
INVALID_CONFIG = 40
INVALID_REQUEST = 42
POLICY_VIOLATION = 44
KAFKA_STORAGE_ERROR = 56
FENCED_LEADER_EPOCH = 74
UNKNOWN_LEADER_EPOCH = 75
UNSUPPORTED_COMPRESSION_TYPE = 76
GROUP_ID_NOT_FOUND = 69
INVALID_RECORD = 87
UNKNOWN_TOPIC_ID = 100

_BY_TYPE: list[tuple[type[BrokerError], int]] = [
    (UnknownTopicError, UNKNOWN_TOPIC_OR_PARTITION),
    (UnknownPartitionError, UNKNOWN_TOPIC_OR_PARTITION),
    (InvalidTopicError, INVALID_TOPIC_EXCEPTION),
    (TopicExistsError, TOPIC_ALREADY_EXISTS),
    (InvalidConfigError, INVALID_CONFIG),
    (OffsetOutOfRangeError, OFFSET_OUT_OF_RANGE),
    (RecordTooLargeError, MESSAGE_TOO_LARGE),
    (CorruptBatchError, CORRUPT_MESSAGE),
    (UnknownCodecError, UNSUPPORTED_COMPRESSION_TYPE),
    (DiskFullError, KAFKA_STORAGE_ERROR),
    (StorageError, KAFKA_STORAGE_ERROR),
    (InvalidRequestError, INVALID_REQUEST),
    (ResourceLimitError, POLICY_VIOLATION),
]


def code_for(exc: BrokerError) -> int:
    """The Kafka error code for one of this broker's errors (its ``kafka_error`` name first)."""
    if exc.kafka_error:
        try:
            return ErrorCode[exc.kafka_error.lower()].value
        except KeyError:
            pass
    for kind, code in _BY_TYPE:
        if isinstance(exc, kind):
            return code
    return UNKNOWN_SERVER_ERROR
