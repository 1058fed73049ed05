"""Per-topic settings of the storage engine (codec, segments, flush, retention, limits).

One pydantic model, used by the storage engine, the wire protocol (configure topic) and the
appliance config file's ``[broker.defaults]`` / ``[topics.NAME]`` tables. Unknown keys are
errors; sizes and durations accept strings ("256MiB", "72h").

Every size and duration has a range (``RANGES``, also in docs/FORMAT.md); a value outside
it is refused with an error naming the key, the value and the range. The hard limits come
from the on-disk format: offset-index positions are u32 and a segment may exceed
``segment_bytes`` by one batch, so ``segment_bytes`` stays at or below 2^31 - 1 (as
Kafka's ``segment.bytes``) and ``max_record_bytes`` at or below 128 MiB.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, field_serializer

from .records import BATCH_FRAMING_BYTES, DEFAULT_MAX_RECORD_BYTES, MAX_RECORD_BYTES_CEILING
from .units import format_duration_ns, format_size, parse_duration_ns, parse_size

_SECOND_NS = 10**9
_DAY_NS = 86400 * _SECOND_NS

# key as written in configs and on the wire: (lowest, highest, "size" | "duration"), inclusive
RANGES: dict[str, tuple[int, int, str]] = {
    "segment_bytes": (1024, 2**31 - 1, "size"),
    "segment_age": (_SECOND_NS, 366 * _DAY_NS, "duration"),
    "index_interval_bytes": (1, 16 * 1024**2, "size"),
    "retention_bytes": (0, 2**50, "size"),
    "retention_age": (_SECOND_NS, 100 * 366 * _DAY_NS, "duration"),
    "flush_interval": (10**6, 3600 * _SECOND_NS, "duration"),
    "max_record_bytes": (1, MAX_RECORD_BYTES_CEILING, "size"),
    "max_future_skew": (_SECOND_NS, 100 * 366 * _DAY_NS, "duration"),
}


def _describe(value: int, kind: str) -> str:
    return f"{value} ({format_size(value)})" if kind == "size" else format_duration_ns(value)


def _in_range(key: str) -> AfterValidator:
    low, high, kind = RANGES[key]

    def check(value: int | None) -> int | None:
        if value is not None and not low <= value <= high:
            raise ValueError(
                f"{key} = {_describe(value, kind)} is outside its range "
                f"{_describe(low, kind)} .. {_describe(high, kind)}"
            )
        return value

    return AfterValidator(check)


Size = Annotated[int, BeforeValidator(parse_size), Field(ge=0)]
DurationNs = Annotated[int, BeforeValidator(parse_duration_ns), Field(ge=0)]


class TopicConfig(BaseModel):
    partitions: int = Field(1, ge=1, le=1024, description="number of partitions")
    codec: Literal["none", "gzip", "snappy", "lz4", "zstd"] = Field(
        "none", description="Kafka's compression.type: the codec producers compress batches with")
    timestamp_type: Literal["CreateTime", "LogAppendTime"] = Field(
        "CreateTime", description="Kafka's message.timestamp.type: LogAppendTime stamps each batch at append")
    segment_bytes: Annotated[Size, _in_range("segment_bytes")] = Field(
        256 * 1024**2, description="roll a segment at this size")
    segment_ns: Annotated[DurationNs, _in_range("segment_age")] = Field(
        3600 * 10**9, alias="segment_age", description="roll a segment at this age")
    index_interval_bytes: Annotated[Size, _in_range("index_interval_bytes")] = Field(
        4096, description="bytes between sparse index entries")
    retention_bytes: Annotated[Size | None, _in_range("retention_bytes")] = Field(
        None, description="per partition; None keeps all")
    retention_ns: Annotated[DurationNs | None, _in_range("retention_age")] = Field(
        None, alias="retention_age", description="None keeps all")
    flush: Literal["batch", "interval", "os"] = Field(
        "interval", description="fsync after every batch, every flush_interval, or leave it to the OS"
    )
    flush_interval_ns: Annotated[DurationNs, _in_range("flush_interval")] = Field(
        200 * 10**6, alias="flush_interval")
    max_future_skew_ns: Annotated[DurationNs, _in_range("max_future_skew")] = Field(
        3600 * 10**9, alias="max_future_skew",
        description="a record stamped more than this after its append is flagged and left out of time lookups")
    max_record_bytes: Annotated[Size, _in_range("max_record_bytes")] = Field(
        DEFAULT_MAX_RECORD_BYTES, description="largest record accepted")
    priority: int = Field(
        5, ge=0, le=100, description="disk guard deletes from low-priority topics first"
    )

    model_config = ConfigDict(extra="forbid", validate_assignment=True, populate_by_name=True)

    @property
    def max_batch_bytes(self) -> int:
        # one record may carry up to max_record_bytes plus key, headers and framing
        return self.max_record_bytes + BATCH_FRAMING_BYTES

    @property
    def max_section_bytes(self) -> int:
        """Bound on a batch's decompressed records section: a producer seals a batch at
        up to one max batch of records plus the record that crossed the line."""
        return 2 * self.max_batch_bytes

    @field_serializer("segment_ns", "retention_ns", "flush_interval_ns", "max_future_skew_ns")
    def _serialize_duration(self, ns: int | None) -> str | None:
        # durations leave as exact strings ("200ms") so that dumps validate back unchanged
        return None if ns is None else format_duration_ns(ns)

    def merged(self, overrides: Mapping[str, object]) -> TopicConfig:
        """A copy with ``overrides`` (wire/config names) validated on top."""
        data = self.model_dump(by_alias=True)
        data.update(overrides)
        return TopicConfig.model_validate(data)

    def to_json_dict(self) -> dict[str, object]:
        return self.model_dump(by_alias=True)
