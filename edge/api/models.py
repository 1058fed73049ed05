"""Response and request bodies of the API: the OpenAPI schema is generated from these.

Status parts that other processes define (driver health, mirror state, broker facts) are
open objects (``extra="allow"``): the fields listed are the ones the dashboard relies on.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from broker.storage.layout import MAX_TOPIC_NAME_LENGTH

from .security import TOPIC_PATTERN

TopicStr = Annotated[str, Field(min_length=1, max_length=MAX_TOPIC_NAME_LENGTH, pattern=TOPIC_PATTERN)]


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")


class Health(BaseModel):
    status: Literal["ok"] = "ok"


class Ready(BaseModel):
    ready: bool
    reason: str


class PartitionStatus(_Open):
    partition: int
    log_start: int
    next_offset: int
    size_bytes: int = 0
    durable_offset: int | None = None
    segments: int | None = None
    protected_offset: int | None = None


class TopicStatus(_Open):
    partitions: list[PartitionStatus]
    records: int = Field(description="records held on disk")
    total_records: int = Field(description="records ever appended (sum of next offsets)")
    bytes: int
    records_per_s: float | None = None
    bytes_per_s: float | None = None
    codec: str | None = None
    kind: str = Field("other", description="camera | lidar | json | internal | other")
    oldest_ns: int | None = Field(None, description="capture time of the oldest held record")
    retention_age: str | None = None
    retention_bytes: int | None = None
    priority: int | None = None


class DiskStatus(_Open):
    total_bytes: int
    free_bytes: int
    data_bytes: int
    write_bytes_per_s: float
    retention_horizon_h: float | None = Field(
        None, description="hours of data the disk holds at the current write rate (None: nothing written)")
    min_free_bytes: int = 0
    critical_free_bytes: int = 0
    used_fraction: float | None = None
    oldest_ns: int | None = Field(None, description="capture time of the oldest held sensor record")
    held_s: float | None = Field(None, description="seconds of sensor data held now")
    full: bool = Field(False, description="the broker refuses writes for lack of space (DiskFullError)")
    full_since_ns: int | None = Field(None, description="when the broker first refused a write for lack of space")


class GroupStatus(_Open):
    members: int
    generation: int
    lag: int


class DriveInfo(_Open):
    name: str
    start_ns: int
    end_ns: int | None = None
    open: bool = False
    interrupted: bool = False
    reason: str = ""
    topics: dict[str, dict[str, int]] = Field(default_factory=dict)
    duration_s: float | None = None


class Status(BaseModel):
    time_ns: int
    ok: bool = Field(description="false when the last sample could not reach the broker")
    error: str | None = None
    broker: dict[str, Any] | None = None
    disk: DiskStatus | None = None
    topics: dict[str, TopicStatus] = Field(default_factory=dict)
    drivers: dict[str, dict[str, Any]] = Field(default_factory=dict, description="latest _health record per sensor")
    mirror: dict[str, Any] | None = Field(None, description="the mirror's latest _health record")
    groups: dict[str, GroupStatus] = Field(default_factory=dict)
    drives: list[DriveInfo] = Field(default_factory=list)
    drives_error: str | None = None


class RateHistory(BaseModel):
    time_s: list[float]
    records_per_s: list[float]
    bytes_per_s: list[float]


class TopicDetail(BaseModel):
    name: str
    kind: str
    config: dict[str, Any]
    partitions: list[PartitionStatus]
    records_per_s: float | None = None
    bytes_per_s: float | None = None


class RecordMeta(BaseModel):
    topic: str
    partition: int
    offset: int
    timestamp_ns: int = Field(description="capture time, ns since the epoch")
    time: str = Field(description="capture time, ISO-8601 UTC")
    key: str | None = Field(None, description="the key as text (undecodable bytes escaped)")
    headers: dict[str, str]
    value_bytes: int
    value: Any | None = Field(None, description="the value itself for small JSON records (e.g. _health)")


class RecordsPage(BaseModel):
    topic: str
    partition: int
    log_start: int
    log_end: int = Field(description="next offset to be written")
    next_offset: int = Field(description="offset to ask for the following page")
    records: list[RecordMeta]


class WindowRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    topics: list[TopicStr] = Field(min_length=1, max_length=64, description="topics to include")
    drive: str | None = Field(None, min_length=1, max_length=100, pattern=r"^[A-Za-z0-9._-]+$",
                              description="a drive name (see /api/drives) instead of start/end")
    start: str | None = Field(None, max_length=64, description="ISO-8601, epoch ns or relative (-10m)")
    end: str | None = Field(None, max_length=64, description="ISO-8601, epoch ns or relative; default now")


class ExportRequest(WindowRequest):
    format: Literal["mcap", "mp4", "pcd", "ply"] = Field("mcap", description="MCAP for Foxglove, MP4 per camera, "
                                                                           "PCD/PLY per cloud")


class ReplayRequest(WindowRequest):
    speed: float | None = Field(1.0, ge=0.1, le=10.0, description="speed factor; null: as fast as possible")
    prefix: str = Field("replay.", max_length=64, pattern=r"^[A-Za-z0-9_][A-Za-z0-9._-]*$",
                        description="replayed topics are published as PREFIX + topic")
    loop: bool = False


class JobInfo(BaseModel):
    id: str
    kind: str
    params: dict[str, Any]
    state: Literal["queued", "running", "succeeded", "failed", "cancelled"]
    progress: float | None = None
    message: str = ""
    created_ns: int
    started_ns: int | None = None
    finished_ns: int | None = None
    error: str | None = None
    result: dict[str, Any] = Field(default_factory=dict)
    pid: int | None = None
