"""Status endpoints: the monitor's last sample, whole or by part (never a broker round trip)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends

from .errors import STANDARD_RESPONSES
from .models import DiskStatus, DriveInfo, GroupStatus, RateHistory, Status, TopicStatus
from .security import require_token
from .state import State

router = APIRouter(prefix="/api", tags=["status"], dependencies=[Depends(require_token)],
                   responses={k: v for k, v in STANDARD_RESPONSES.items() if k in (401, 403)})



@router.get("/status", response_model=Status, summary="everything: topics, disk, drivers, mirror, groups, drives")
def status(state: State) -> dict[str, Any]:
    return state.monitor.snapshot()


@router.get("/status/history", response_model=dict[str, RateHistory],
            summary="recent append rates per topic (for sparklines), oldest first")
def history(state: State) -> dict[str, Any]:
    return state.monitor.history()


@router.get("/topics", response_model=dict[str, TopicStatus], summary="topics with partitions, offsets, sizes, rates")
def topics(state: State) -> dict[str, Any]:
    section: dict[str, Any] = state.monitor.snapshot().get("topics", {})
    return section


@router.get("/disk", response_model=DiskStatus | None, summary="disk use and retention horizon")
def disk(state: State) -> dict[str, Any] | None:
    return state.monitor.snapshot().get("disk")


@router.get("/drivers", response_model=dict[str, dict[str, Any]],
            summary="driver health and counters: the latest _health record per sensor")
def drivers(state: State) -> dict[str, Any]:
    section: dict[str, Any] = state.monitor.snapshot().get("drivers", {})
    return section


@router.get("/mirror", response_model=dict[str, Any] | None,
            summary="mirror link, lag per partition and throughput (null: no mirror reporting)")
def mirror(state: State) -> dict[str, Any] | None:
    return state.monitor.snapshot().get("mirror")


@router.get("/groups", response_model=dict[str, GroupStatus], summary="consumer groups with members and lag")
def groups(state: State) -> dict[str, Any]:
    section: dict[str, Any] = state.monitor.snapshot().get("groups", {})
    return section


@router.get("/drives", response_model=list[DriveInfo], summary="recorded drives, oldest first")
def drives(state: State) -> list[dict[str, Any]]:
    section: list[dict[str, Any]] = state.monitor.snapshot().get("drives", [])
    return section
