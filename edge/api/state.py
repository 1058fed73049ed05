"""What the routers share: the app's state (``ApiState``, built once by ``create_app``) and the
dependency that hands it to a route (``State``).

Layers inside edge.api (import-linter checks them, pyproject.toml): ``app`` imports the
routers (``routes_*``), the routers import this module, and nothing here imports the app or a
router, so there is no circle. The state lives on ``app.state.edge``; a route asks for it with
a ``State`` parameter (FastAPI calls ``get_state``), never by importing the app.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends
from starlette.requests import HTTPConnection

from .broker_access import BrokerGateway
from .config import ApiConfig
from .frames import FramePump, MediaCache
from .jobs import JobManager
from .live import LiveHub
from .monitor import Monitor


@dataclass
class ApiState:
    """Everything a request may use, one instance per app (``app.state.edge``)."""

    config: Any
    api: ApiConfig
    endpoint: str
    token: str | None
    gateway: BrokerGateway
    monitor: Monitor
    media: MediaCache
    pump: FramePump
    hub: LiveHub
    jobs: JobManager
    registry: Any
    started_ns: int


def get_state(connection: HTTPConnection) -> ApiState:
    """The app's state (a FastAPI dependency of HTTP and WebSocket routes alike)."""
    state: ApiState = connection.app.state.edge
    return state


State = Annotated[ApiState, Depends(get_state)]
