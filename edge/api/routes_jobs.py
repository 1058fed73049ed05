"""Jobs endpoints: start an export or a replay, follow its progress, cancel it, fetch its files.

The window is resolved here (a drive name, or start/end times) so that a job always runs
on concrete nanosecond bounds; outputs land in the job's own directory under the API's
``export_dir`` and are downloadable by job id and listed file name only.
"""

from __future__ import annotations

import time as _time
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path
from fastapi.responses import FileResponse

from broker.errors import BrokerError

from .errors import STANDARD_RESPONSES, BadRequest, ErrorBody, NotAvailable, NotFound
from .models import ExportRequest, JobInfo, ReplayRequest, WindowRequest
from .security import checked_topic, require_token
from .state import ApiState, State
from .times import parse_time

BINARY_SCHEMA = {"type": "string", "format": "binary"}

router = APIRouter(prefix="/api/jobs", tags=["jobs"], dependencies=[Depends(require_token)],
                   responses={**STANDARD_RESPONSES,
                              404: {"model": ErrorBody, "description": "unknown job, topic or drive"}})

JobId = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9-]+$")]
FileName = Annotated[str, Path(min_length=1, max_length=255, pattern=r"^[A-Za-z0-9_][A-Za-z0-9._-]*$")]


def _window(state: ApiState, body: WindowRequest) -> tuple[int, int]:
    if body.drive is not None:
        if body.start is not None or body.end is not None:
            raise BadRequest("give a drive or start/end, not both")
        from edge.drives import resolve_drive

        try:
            return resolve_drive(state.endpoint, body.drive)
        except BrokerError as exc:
            raise NotFound(exc.message) from None
    if body.start is None:
        raise BadRequest("give a drive name or a start time")
    start = parse_time(body.start)
    end = parse_time(body.end, start_ns=start) if body.end is not None else _time.time_ns()
    if end <= start:
        raise BadRequest("end must be after start")
    return start, end


def _topics(state: ApiState, names: list[str]) -> list[str]:
    topics = [checked_topic(n) for n in names]
    known = state.gateway.metadata()["topics"]
    missing = [t for t in topics if t not in known]
    if missing:
        raise NotFound(f"unknown topic {missing[0]!r}")
    return list(dict.fromkeys(topics))


def _submit(state: ApiState, kind: str, body: WindowRequest, extra: dict[str, Any]) -> dict[str, Any]:
    if not state.jobs.available(kind):
        raise NotAvailable(f"{kind} is not available in this build (library edge.{kind} not installed)")
    topics = _topics(state, body.topics)
    start, end = _window(state, body)
    params = {"endpoint": state.endpoint, "topics": topics, "start_ns": start, "end_ns": end,
              "drive": body.drive, **extra}
    return state.jobs.submit(kind, params).to_json()


_SUBMIT_RESPONSES: dict[int | str, dict[str, Any]] = {
    429: {"model": ErrorBody, "description": "too many jobs waiting"},
    501: {"model": ErrorBody, "description": "the library for this job is not installed"},
}


@router.post("/export", response_model=JobInfo, status_code=202, responses=_SUBMIT_RESPONSES,
             summary="start an export of a window (drive or start/end) of topics")
def start_export(body: ExportRequest, state: State) -> dict[str, Any]:
    return _submit(state, "export", body, {"format": body.format})


@router.post("/replay", response_model=JobInfo, status_code=202, responses=_SUBMIT_RESPONSES,
             summary="start a replay of a window into the broker under a topic prefix")
def start_replay(body: ReplayRequest, state: State) -> dict[str, Any]:
    return _submit(state, "replay", body, {"speed": body.speed, "prefix": body.prefix, "loop": body.loop})


@router.get("", response_model=list[JobInfo], summary="jobs, newest first")
def list_jobs(state: State) -> list[dict[str, Any]]:
    return [j.to_json() for j in state.jobs.list()]


@router.get("/{job_id}", response_model=JobInfo, summary="one job with its progress")
def get_job(job_id: JobId, state: State) -> dict[str, Any]:
    return state.jobs.get(job_id).to_json()


@router.post("/{job_id}/cancel", response_model=JobInfo, summary="cancel a job (queued or running)")
def cancel_job(job_id: JobId, state: State) -> dict[str, Any]:
    return state.jobs.cancel(job_id).to_json()


@router.get("/{job_id}/files/{name}", response_class=FileResponse, summary="download a file a job produced",
            responses={200: {"content": {"application/octet-stream": {"schema": BINARY_SCHEMA}},
                             "description": "the file"}})
def job_file(job_id: JobId, name: FileName, state: State) -> FileResponse:
    path = state.jobs.file_path(job_id, name)
    return FileResponse(path, media_type="application/octet-stream", filename=path.name)
