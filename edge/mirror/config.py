"""The ``[mirror]`` config section (validated with the rest of the appliance config)."""

from __future__ import annotations

import fnmatch
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from broker.topic_config import DurationNs, Size

from .reject import parse_policy, policy_for


class TranscodeRule(BaseModel):
    """What the uplink does to a topic's records before shipping (the vehicle keeps the originals)."""
    model_config = ConfigDict(extra="forbid")

    jpeg_quality: int | None = Field(None, ge=1, le=100, description="re-encode camera frames as JPEG at this quality")
    scale: float | None = Field(None, gt=0, le=1, description="camera frames resized by this factor (0.5 = half)")
    voxel_m: float | None = Field(None, gt=0, description="point clouds voxel-downsampled to this edge length (m)")

    @model_validator(mode="after")
    def _something(self) -> TranscodeRule:
        if self.jpeg_quality is None and self.scale is None and self.voxel_m is None:
            raise ValueError("a transcode rule needs jpeg_quality, scale or voxel_m")
        if self.voxel_m is not None and (self.jpeg_quality is not None or self.scale is not None):
            raise ValueError("voxel_m (point clouds) and jpeg_quality/scale (camera frames) do not mix in one rule")
        return self


class MirrorConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    bootstrap_servers: str = Field(..., min_length=1, description="the cloud cluster, host:port[,host:port]")
    topics: list[str] = Field(..., min_length=1, description="local topic names or glob patterns (camera.*)")
    destination: str = Field("vehicles.{vehicle}.{topic}", description="cloud topic name template")
    shared_destination: bool = Field(False, description="the destination template has no {vehicle}: several "
                                     "vehicles write the same topics (resume still counts only this vehicle's)")
    resume_scan_records: int = Field(10_000, ge=1, description=(
        "how far back (offsets) resume looks for this vehicle's last record per destination partition before it "
        "trusts the local commit"))
    create_topics: bool = Field(True, description="create missing destination topics (else a clear error)")
    replication_factor: int = Field(3, ge=1, le=10)
    kafka: dict[str, str | int | float | bool] = Field(
        default_factory=dict, description="librdkafka settings passed through (TLS, SASL, timeouts)")
    bandwidth: Size | None = Field(None, description="bytes per second cap (token bucket); none = unlimited")
    priorities: dict[str, int] = Field(default_factory=dict, description="pattern -> priority (higher ships first)")
    topic_bandwidth: dict[str, Size] = Field(default_factory=dict, description=(
        "pattern -> bytes per second cap of that topic (within the global bandwidth); other topics ship meanwhile"))
    events_first: bool = Field(True, description=(
        "partitions holding a complete event (edge events) not yet shipped go before every other partition"))
    sampling: dict[str, int] = Field(default_factory=dict, description="pattern -> ship every Nth record")
    latest_only: list[str] = Field(default_factory=list, description="patterns shipped newest-only when behind")
    too_large: Literal["skip", "stop"] = Field("skip", description="a record above the destination limit")
    on_reject: dict[str, str] = Field(default_factory=lambda: {"*": "stop-partition"}, description=(
        "a record the destination refuses: skip | stop-partition | 'dead-letter TOPIC'; one policy for all "
        "topics or pattern -> policy"))
    timestamp_out_of_range: Literal["producer-time", "reject"] = Field("producer-time", description=(
        "capture time beyond the destination's timestamp tolerance: send with the producer's time (capture "
        "time kept in edge.capture_ns) or hand it to on_reject"))
    stall_after: DurationNs = Field(10_000_000_000, description=(
        "status says stalled when nothing committed this long while records wait (at least 2 x transaction_interval)"))
    transaction_interval: DurationNs = Field(1_000_000_000, description="commit shipped records this often")
    budget: Size | None = Field(None, description=(
        "bytes this link may carry per budget_period (never exceeded; the spent counter survives restarts)"))
    budget_period: Literal["day", "month"] = Field("day", description="the budget renews each UTC day or month")
    live_window: DurationNs = Field(10_000_000_000, description=(
        "a partition whose oldest unshipped record is newer than this is live (ships before backlog)"))
    transcode: dict[str, TranscodeRule] = Field(default_factory=dict, description=(
        "pattern -> what the uplink does to the topic's records (jpeg_quality, scale, voxel_m); originals stay"))
    catalog: bool = Field(True, description=(
        "ship the drive catalog (_drives) so replay/export --drive work from the cloud"))
    max_buffer_bytes: Size = Field(64 * 1024 * 1024, description="records held between local and cloud")

    @field_validator("destination")
    @classmethod
    def _template(cls, value: str) -> str:
        if "{topic}" not in value:
            raise ValueError("the destination template must contain {topic}")
        try:
            value.format(vehicle="v", topic="t")
        except (KeyError, IndexError) as exc:
            raise ValueError(f"unknown placeholder {exc} (use {{vehicle}} and {{topic}})") from None
        return value

    @model_validator(mode="after")
    def _vehicle_in_destination(self) -> MirrorConfig:
        if "{vehicle}" not in self.destination and not self.shared_destination:
            raise ValueError(f"destination {self.destination!r} has no {{vehicle}}: every vehicle would write the "
                             "same topics; add {vehicle} or declare shared_destination = true")
        return self

    @field_validator("on_reject", mode="before")
    @classmethod
    def _policies(cls, value: object) -> object:
        table = {"*": value} if isinstance(value, str) else value
        if isinstance(table, dict):
            for text in table.values():
                parse_policy(str(text))
        return table

    @field_validator("sampling")
    @classmethod
    def _every(cls, value: dict[str, int]) -> dict[str, int]:
        for pattern, n in value.items():
            if n < 1:
                raise ValueError(f"sampling for {pattern!r} must be >= 1, got {n}")
        return value

    @field_validator("topic_bandwidth")
    @classmethod
    def _positive_caps(cls, value: dict[str, int]) -> dict[str, int]:
        for pattern, cap in value.items():
            if cap <= 0:
                raise ValueError(f"topic_bandwidth for {pattern!r} must be positive, got {cap}")
        return value

    @field_validator("kafka")
    @classmethod
    def _no_overrides(cls, value: dict[str, Any]) -> dict[str, Any]:
        owned = {"transactional.id", "enable.idempotence", "bootstrap.servers"}
        bad = owned & set(value)
        if bad:
            raise ValueError(f"{', '.join(sorted(bad))} are set by the mirror and cannot be overridden")
        return value

    def selects(self, topic: str) -> bool:
        return not topic.startswith("_") and any(fnmatch.fnmatchcase(topic, p) for p in self.topics)

    def _match(self, table: dict[str, int], topic: str, default: int) -> int:
        for pattern, value in table.items():
            if fnmatch.fnmatchcase(topic, pattern):
                return value
        return default

    def priority(self, topic: str) -> int:
        return self._match(self.priorities, topic, 0)

    def topic_cap(self, topic: str) -> int | None:
        for pattern, cap in self.topic_bandwidth.items():
            if fnmatch.fnmatchcase(topic, pattern):
                return cap
        return None

    def every(self, topic: str) -> int:
        return self._match(self.sampling, topic, 1)

    def is_latest_only(self, topic: str) -> bool:
        return any(fnmatch.fnmatchcase(topic, p) for p in self.latest_only)

    def transcode_rule(self, topic: str) -> TranscodeRule | None:
        for pattern, rule in self.transcode.items():
            if fnmatch.fnmatchcase(topic, pattern):
                return rule
        return None

    def reject_policy(self, topic: str) -> tuple[str, str | None]:
        return policy_for(self.on_reject, topic)

    def dead_letter_topics(self) -> set[str]:
        return {topic for text in self.on_reject.values() for _action, topic in [parse_policy(text)] if topic}

    def stall_after_ns(self) -> int:
        return max(self.stall_after, 2 * self.transaction_interval)

    def destination_topic(self, vehicle: str, topic: str) -> str:
        return self.destination.format(vehicle=vehicle, topic=topic)
