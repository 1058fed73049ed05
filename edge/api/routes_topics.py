"""Topic endpoints: describe, browse records by offset or time, download a value, and the
newest camera frame (JPEG) or point cloud (bird's-eye PNG) of a topic.

Every topic name is validated before it reaches the broker (``TopicName``); partitions and
offsets are bounded integers; nothing here names a file.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query
from fastapi.responses import Response

from broker.base.names import HEADER_ENCODING, INTERNAL_TOPICS, JSON_ENCODING, POINTCLOUD_ENCODING
from broker.records import Record

from .errors import STANDARD_RESPONSES, BadRequest, ErrorBody
from .models import RecordMeta, RecordsPage, TopicDetail
from .security import TopicName, require_token
from .state import State
from .times import parse_time

router = APIRouter(prefix="/api/topics", tags=["topics"], dependencies=[Depends(require_token)],
                   responses={**STANDARD_RESPONSES,
                              404: {"model": ErrorBody, "description": "unknown topic, partition or offset"}})

Partition = Annotated[int, Path(ge=0, le=1023, description="partition number")]
Offset = Annotated[int, Path(ge=0, le=2**62, description="record offset")]

MAX_PREVIEW_BYTES = 64 * 1024
VALUE_TYPES = {"jpeg": ("image/jpeg", "jpg"), "png": ("image/png", "png"), JSON_ENCODING: ("application/json", "json"),
               POINTCLOUD_ENCODING: ("application/octet-stream", "bin"), "bgr8": ("application/octet-stream", "bgr")}


def _text(raw: bytes | None) -> str | None:
    return None if raw is None else bytes(raw).decode("utf-8", "backslashreplace")


def record_meta(record: Record) -> dict[str, Any]:
    headers = {name: _text(value) or "" for name, value in record.headers.items()}
    value: Any = None
    is_json = headers.get(HEADER_ENCODING) == JSON_ENCODING or record.topic in INTERNAL_TOPICS
    if is_json and len(record.value) <= MAX_PREVIEW_BYTES:
        try:
            value = json.loads(bytes(record.value))
        except ValueError:
            value = None
    moment = datetime.fromtimestamp(record.timestamp / 1e9, tz=UTC)
    return {"topic": record.topic, "partition": record.partition, "offset": record.offset,
            "timestamp_ns": record.timestamp, "time": moment.isoformat(timespec="microseconds").replace("+00:00", "Z"),
            "key": _text(record.key), "headers": headers, "value_bytes": len(record.value), "value": value}


@router.get("/{topic}", response_model=TopicDetail, summary="one topic: config, partitions, rates")
def describe(topic: TopicName, state: State) -> dict[str, Any]:
    info = state.gateway.describe_topic(topic)
    sampled = state.monitor.snapshot().get("topics", {}).get(topic, {})
    return {"name": topic, "kind": state.monitor.topic_kind(topic), "config": info["config"],
            "partitions": info["partitions"], "records_per_s": sampled.get("records_per_s"),
            "bytes_per_s": sampled.get("bytes_per_s")}


@router.get("/{topic}/records", response_model=RecordsPage,
            summary="browse records (metadata and headers) from an offset, a time, or the newest")
def browse(
    topic: TopicName,
    state: State,
    partition: Annotated[int, Query(ge=0, le=1023)] = 0,
    offset: Annotated[int | None, Query(ge=0, le=2**62, description="first offset to return")] = None,
    time: Annotated[str | None, Query(max_length=64,
                                      description="first capture time: ISO-8601, epoch ns or -10m")] = None,
    limit: Annotated[int, Query(ge=1, le=10000, description="most records to return")] = 50,
) -> dict[str, Any]:
    if offset is not None and time is not None:
        raise BadRequest("give offset or time, not both")
    limit = min(limit, state.api.browse_limit)
    part = state.gateway.partition_info(topic, partition)
    log_start, log_end = part["log_start"], part["next_offset"]
    floor = None
    if offset is not None:
        start = max(offset, log_start)
    elif time is not None:
        floor = parse_time(time)
        start = max(state.gateway.offset_for_time(topic, partition, floor), log_start)
    else:
        start = max(log_start, log_end - limit)
    records = [] if start >= log_end else state.gateway.read_records(topic, partition, start, limit,
                                                                      timestamp_floor=floor)
    next_offset = records[-1].offset + 1 if records else min(start, log_end)
    return {"topic": topic, "partition": partition, "log_start": log_start, "log_end": log_end,
            "next_offset": next_offset, "records": [record_meta(r) for r in records]}


@router.get("/{topic}/partitions/{partition}/records/{offset}", response_model=RecordMeta,
            summary="one record's metadata and headers")
def record(topic: TopicName, partition: Partition, offset: Offset, state: State) -> dict[str, Any]:
    state.gateway.partition_info(topic, partition)
    return record_meta(state.gateway.record_at(topic, partition, offset))


@router.get("/{topic}/partitions/{partition}/records/{offset}/value", response_class=Response,
            summary="download one record's value (typed by its encoding header)",
            responses={200: {"content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
                                         "image/jpeg": {"schema": {"type": "string", "format": "binary"}},
                                         "image/png": {"schema": {"type": "string", "format": "binary"}},
                                         "application/json": {"schema": {}}},
                             "description": "the value bytes"}})
def value(topic: TopicName, partition: Partition, offset: Offset, state: State) -> Response:
    state.gateway.partition_info(topic, partition)
    rec = state.gateway.record_at(topic, partition, offset)
    mime, ext = VALUE_TYPES.get(rec.header(HEADER_ENCODING) or "", ("application/octet-stream", "bin"))
    filename = f"{topic}-{partition}-{offset}.{ext}"
    return Response(bytes(rec.value), media_type=mime,
                    headers={"Content-Disposition": f'attachment; filename="{filename}"',
                             "X-Edge-Timestamp-Ns": str(rec.timestamp)})


def _media_headers(media: Any) -> dict[str, str]:
    return {"X-Edge-Partition": str(media.partition), "X-Edge-Offset": str(media.offset),
            "X-Edge-Timestamp-Ns": str(media.timestamp_ns)}


@router.get("/{topic}/latest.jpg", response_class=Response, summary="newest camera frame of a topic as JPEG",
            responses={200: {"content": {"image/jpeg": {"schema": {"type": "string", "format": "binary"}}},
                             "description": "the frame (JPEG records are passed through unchanged)"}})
def latest_jpeg(
    topic: TopicName,
    state: State,
    width: Annotated[int | None, Query(ge=16, le=8192, description="downscale to this width")] = None,
) -> Response:
    media = state.media.latest_jpeg(topic, width=width)
    return Response(media.data, media_type="image/jpeg", headers=_media_headers(media))


@router.get("/{topic}/birdseye.png", response_class=Response,
            summary="bird's-eye render (top-down) of the newest point cloud as PNG",
            responses={200: {"content": {"image/png": {"schema": {"type": "string", "format": "binary"}}},
                             "description": "the render: x forward is up, rings every 10 m"}})
def latest_birdseye(
    topic: TopicName,
    state: State,
    size: Annotated[int, Query(ge=64, le=2048, description="image width and height in pixels")] = 512,
    range_m: Annotated[float, Query(ge=1, le=500, description="metres from the sensor to the image edge")] = 40.0,
    color: Annotated[Literal["height", "intensity"], Query(description="what colours the points")] = "height",
) -> Response:
    media = state.media.latest_birdseye(topic, size=size, range_m=range_m, color=color)
    return Response(media.data, media_type="image/png", headers=_media_headers(media))
