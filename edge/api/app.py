"""The FastAPI application: ``create_app(config)`` wires the broker access, the status
monitor, live updates, media, jobs, metrics, security and the dashboard together.

Guarantees:
- Nothing touches the broker at import or construction time; background threads (status
  monitor, frame pump) start in the app's lifespan and stop with it, job processes are
  cancelled and reaped on shutdown.
- ``create_app`` does not check the bind (the app cannot know it); ``run_api`` does, and
  refuses to start a non-loopback bind without a token. Writes need the token whatever
  the bind (refused when there is none); reads are open only while ``api.open_reads()``
  (a loopback ``api.host`` with ``open_loopback_reads``).
- Every route is in the OpenAPI schema (``/openapi.json``) with its response model and
  error responses, except the WebSocket (``/api/live``, documented in the description)
  and the dashboard's static files.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

from . import routes_events, routes_jobs, routes_live, routes_ops, routes_status, routes_topics
from .broker_access import BrokerGateway
from .config import ApiConfig
from .errors import install_error_handlers
from .frames import FramePump, Media, MediaCache
from .jobs import JobManager, default_runners
from .live import LiveHub
from .metrics import build_registry
from .monitor import Monitor
from .security import AccessGuard
from .state import ApiState

logger = logging.getLogger("edge.api")

STATIC_DIR = Path(__file__).resolve().parent / "static"

DESCRIPTION = """HTTP API of the in-vehicle sensor ingestion appliance.

Writes (POST, PUT, PATCH, DELETE) always need the token. Reads (`/api` GETs, the live
WebSocket, `/metrics`) are open on a loopback bind unless `api.open_loopback_reads` is
false, and need the token on any other bind: `Authorization: Bearer TOKEN`, or
`?token=TOKEN` where a header cannot be set (WebSocket, image links). Errors are JSON:
`{"error": CODE, "message": TEXT}`.

Live updates: WebSocket `/api/live`. The server sends JSON text messages `hello`, `status`
(every sample), `records` (new-record notices per topic) and `jobs`, and binary frame
messages (`u32` little-endian header length, JSON header `{topic, partition, offset,
timestamp_ns, mime, width, height}`, image bytes) for the topics the client watches:
send `{"watch": ["camera.front", "lidar.top"]}`.
"""


def _topic_hints(config: Any) -> dict[str, str]:
    hints: dict[str, str] = {}
    for cam in getattr(config, "cameras", []) or []:
        hints[cam.resolved_topic()] = "camera"
    for lidar in getattr(config, "lidars", []) or []:
        hints[lidar.resolved_topic()] = "lidar"
    return hints


def create_app(config: Any, *, api: ApiConfig | None = None, endpoint: str | None = None,
               token: str | None = None, job_runners: dict[str, str] | None = None,
               job_availability: Any = None) -> FastAPI:
    """Build the app for an AppConfig. ``api`` defaults to ``config.api`` (or defaults),
    ``endpoint`` to the config's broker endpoint, ``token`` to the API config's token.
    ``job_runners`` (kind → "module:function") replaces the export/replay runners, e.g. in
    tests; ``job_availability(kind)`` says whether a kind can run in this build."""
    api = api or getattr(config, "api", None) or ApiConfig()
    endpoint = endpoint or config.broker.resolved_endpoint()
    token = token if token is not None else api.resolved_token()
    guard = config.broker.disk_guard

    gateway = BrokerGateway(endpoint)
    monitor = Monitor(gateway, interval_s=api.status_interval, history=api.history,
                      min_free_bytes=guard.min_free_bytes, critical_free_bytes=guard.critical_free_bytes,
                      topic_kinds=_topic_hints(config))
    media = MediaCache(gateway)

    def publish_media(media_item: Media) -> None:  # the pump is built before the hub it feeds
        hub.publish_media(media_item)

    pump = FramePump(media, publish_media, fps=api.frame_fps)
    hub = LiveHub(monitor.topic_kind, pump.watch)
    if job_runners is None:
        from .job_runners import available

        job_runners, job_availability = default_runners(), job_availability or available
    jobs = JobManager(api.resolved_export_dir(config.broker.data_dir), job_runners,
                      max_running=api.max_jobs, on_change=hub.publish_jobs, availability=job_availability)
    monitor.add_listener(hub.publish_status)

    def extras() -> dict[str, Any]:
        counts: dict[str, int] = {}
        for job in jobs.list():
            counts[job.state] = counts.get(job.state, 0) + 1
        return {"live_clients": len(hub.clients), "jobs": counts}

    registry = build_registry(monitor.snapshot, extras)
    vehicle = getattr(getattr(config, "vehicle", None), "id", None)
    hub.hello = lambda: {"vehicle": vehicle, "status": monitor.snapshot(), "history": monitor.history(),
                         "jobs": [j.to_json() for j in jobs.list()[:50]]}

    state = ApiState(config, api, endpoint, token, gateway, monitor, media, pump, hub, jobs, registry,
                     time.time_ns())

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        hub.bind(asyncio.get_running_loop())
        monitor.start()
        pump.start()
        try:
            yield
        finally:
            pump.stop()
            monitor.stop()
            await asyncio.to_thread(jobs.close)
            gateway.close()

    app = FastAPI(title="Edge appliance API", version="1", description=DESCRIPTION, lifespan=lifespan)
    app.state.edge = state
    app.state.token = token
    app.state.open_reads = api.open_reads() or token is None
    install_error_handlers(app)

    app.include_router(routes_ops.router)
    app.include_router(routes_status.router)
    app.include_router(routes_topics.router)
    app.include_router(routes_jobs.router)
    app.include_router(routes_events.router)
    app.include_router(routes_live.router)

    @app.get("/", include_in_schema=False)
    def dashboard() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html", media_type="text/html")

    @app.get("/favicon.ico", include_in_schema=False)
    def favicon() -> FileResponse:
        return FileResponse(STATIC_DIR / "favicon.svg", media_type="image/svg+xml")

    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    app.add_middleware(AccessGuard, token=token, allowed_hosts=api.allowed_hosts, open_reads=app.state.open_reads)
    return app
