"""Operations endpoints: ``/healthz`` (process alive), ``/readyz`` (broker reachable), ``/metrics``."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Response
from fastapi.responses import JSONResponse

from .errors import ErrorBody
from .metrics import CONTENT_TYPE, render
from .models import Health, Ready
from .security import require_token
from .state import State

router = APIRouter(tags=["operations"])


@router.get("/healthz", response_model=Health, summary="the API process is alive")
def healthz() -> Health:
    return Health()


@router.get("/readyz", response_model=Ready, summary="ready: the broker answered recently",
            responses={503: {"model": Ready, "description": "not ready (broker unreachable)"}})
def readyz(state: State) -> JSONResponse:
    ready, reason = state.monitor.ready()
    return JSONResponse(Ready(ready=ready, reason=reason).model_dump(), status_code=200 if ready else 503)


@router.get("/metrics", summary="Prometheus metrics (text exposition format)",
            dependencies=[Depends(require_token)],
            responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}},
                             "description": "Prometheus text format 0.0.4"},
                       401: {"model": ErrorBody, "description": "missing or wrong token"}},
            response_class=Response)
def metrics(state: State) -> Response:
    return Response(render(state.registry), media_type=CONTENT_TYPE)
