"""The ``[mirror]`` config section (validated with the rest of the appliance config)."""

from __future__ import annotations

import fnmatch
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from broker.topic_config import DurationNs, Size

from .reject import parse_policy, policy_for


class MirrorConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    bootstrap_servers: str = Field(..., min_length=1, description="the cloud cluster, host:port[,host:port]")
    topics: list[str] = Field(..., min_length=1, description="local topic names or glob patterns (camera.*)")
    destination: str = Field("vehicles.{vehicle}.{topic}", description="cloud topic name template")
    shared_destination: bool = Field(False, description="the destination template has no {vehicle}: several "
                                     "vehicles write the same topics (resume still counts only this vehicle's)")
    resume_scan_records: int = Field(10_000, ge=1, description="how far back (offsets) resume looks for this "
                                     "vehicle's last record per destination partition before it trusts the local commit")
    create_topics: bool = Field(True, description="create missing destination topics (else a clear error)")
    replication_factor: int = Field(3, ge=1, le=10)
    kafka: dict[str, str | int | float | bool] = Field(
        default_factory=dict, description="librdkafka settings passed through (TLS, SASL, timeouts)")
    bandwidth: Size | None = Field(None, description="bytes per second cap (token bucket); none = unlimited")
    priorities: dict[str, int] = Field(default_factory=dict, description="pattern -> priority (higher ships first)")
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
    def _vehicle_in_destination(self) -> "MirrorConfig":
        if "{vehicle}" not in self.destination and not self.shared_destination:
            raise ValueError(f"destination {self.destination!r} has no {{vehicle}}: every vehicle would write the "
                             "same topics; add {vehicle} or declare shared_destination = true")
        return self

    @field_validator("on_reject", mode="before")
    @classmethod
    def _policies(cls, value):
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

    @field_validator("kafka")
    @classmethod
    def _no_overrides(cls, value: dict) -> dict:
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

    def every(self, topic: str) -> int:
        return self._match(self.sampling, topic, 1)

    def is_latest_only(self, topic: str) -> bool:
        return any(fnmatch.fnmatchcase(topic, p) for p in self.latest_only)

    def reject_policy(self, topic: str) -> tuple[str, str | None]:
        return policy_for(self.on_reject, topic)

    def dead_letter_topics(self) -> set[str]:
        return {topic for text in self.on_reject.values() for _action, topic in [parse_policy(text)] if topic}

    def stall_after_ns(self) -> int:
        return max(self.stall_after, 2 * self.transaction_interval)

    def destination_topic(self, vehicle: str, topic: str) -> str:
        return self.destination.format(vehicle=vehicle, topic=topic)
