"""Per-topic settings of the storage engine (codec, segments, flush, retention, limits).

One pydantic model, used by the storage engine, the wire protocol (configure topic) and the
appliance config file's ``[broker.defaults]`` / ``[topics.NAME]`` tables. Unknown keys are
errors; sizes and durations accept strings ("256MiB", "72h").
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from .records import DEFAULT_MAX_RECORD_BYTES
from pydantic import field_serializer

from .units import format_duration_ns, parse_duration_ns, parse_size

Size = Annotated[int, BeforeValidator(parse_size), Field(ge=0)]
DurationNs = Annotated[int, BeforeValidator(parse_duration_ns), Field(ge=0)]


class TopicConfig(BaseModel):
    partitions: int = Field(1, ge=1, le=1024, description="number of partitions")
    codec: Literal["none", "zstd"] = Field("none", description="batch compression written by producers")
    segment_bytes: Size = Field(256 * 1024**2, description="roll a segment at this size")
    segment_ns: DurationNs = Field(3600 * 10**9, alias="segment_age", description="roll a segment at this age")
    index_interval_bytes: Size = Field(4096, description="bytes between sparse index entries")
    retention_bytes: Size | None = Field(None, description="per partition; None keeps all")
    retention_ns: DurationNs | None = Field(None, alias="retention_age", description="None keeps all")
    flush: Literal["batch", "interval", "os"] = Field(
        "interval", description="fsync after every batch, every flush_interval, or leave it to the OS"
    )
    flush_interval_ns: DurationNs = Field(200 * 10**6, alias="flush_interval")
    max_future_skew_ns: DurationNs = Field(
        3600 * 10**9, alias="max_future_skew",
        description="a record stamped more than this after its append is flagged and left out of time lookups",
    )
    max_record_bytes: Size = Field(DEFAULT_MAX_RECORD_BYTES, description="largest record accepted")
    priority: int = Field(
        5, ge=0, le=100, description="disk guard deletes from low-priority topics first"
    )

    model_config = ConfigDict(extra="forbid", validate_assignment=True, populate_by_name=True)

    @property
    def max_batch_bytes(self) -> int:
        # one record may carry up to max_record_bytes plus key, headers and framing
        return self.max_record_bytes + 1024 * 1024

    @field_serializer("segment_ns", "retention_ns", "flush_interval_ns", "max_future_skew_ns")
    def _serialize_duration(self, ns: int | None) -> str | None:
        # durations leave as exact strings ("200ms") so that dumps validate back unchanged
        return None if ns is None else format_duration_ns(ns)

    def merged(self, overrides: dict) -> "TopicConfig":
        """A copy with ``overrides`` (wire/config names) validated on top."""
        data = self.model_dump(by_alias=True)
        data.update(overrides)
        return TopicConfig.model_validate(data)

    def to_json_dict(self) -> dict:
        return self.model_dump(by_alias=True)
