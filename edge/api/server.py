"""Serve the API with uvicorn: ``run_api(app_config) -> exit code``.

Guarantees:
- Refuses to start (exit 2, one log line saying why) on a non-loopback bind without a
  token, or with a token shorter than 16 characters; exit 2 as well when the port cannot
  be bound. On loopback without a configured token it enforces the data directory's
  generated token (``ApiConfig.token_for``) for writes.
- SIGTERM / SIGINT: uvicorn stops accepting, closes live WebSockets, the app's lifespan
  stops its threads and job processes; exit 0.
- systemd: READY=1 once the socket is listening (``broker.base.sdnotify``), watchdog pings only
  while the event loop turns, STOPPING=1 on the way out.
- uvicorn's access log is off (it would log query strings, which may hold the token); the
  app's own access log (``edge.api.access``) logs method, path, status and time.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from broker.base.logs import log_event, setup_logging

from .config import ApiConfig, ApiConfigError
from .security import install_log_redaction

logger = logging.getLogger("edge.api.server")


def resolve_api_config(app_config: Any, host: str | None = None, port: int | None = None) -> ApiConfig:
    api: ApiConfig = getattr(app_config, "api", None) or ApiConfig()
    updates: dict[str, Any] = {}
    if host is not None:
        updates["host"] = host
    if port is not None:
        updates["port"] = port
    return api.model_copy(update=updates) if updates else api


def websocket_implementation() -> str:
    """uvicorn's WebSocket protocol: websockets (sans-I/O) if installed, else wsproto, else none."""
    import importlib.util

    if importlib.util.find_spec("websockets") is not None:
        return "websockets-sansio"
    if importlib.util.find_spec("wsproto") is not None:
        return "wsproto"
    log_event(logger, logging.WARNING, "api_no_websocket",
              reason="neither websockets nor wsproto is installed: the dashboard will not update live")
    return "none"


def run_api(app_config: Any, *, host: str | None = None, port: int | None = None,
            endpoint: str | None = None, configure_logging: bool = True) -> int:
    import uvicorn

    from broker.base import sdnotify

    from .app import create_app

    api = resolve_api_config(app_config, host, port)
    if configure_logging:
        setup_logging(api.log_level, "api")
    try:
        token = api.token_for(app_config.broker.data_dir)
    except ApiConfigError as exc:
        log_event(logger, logging.ERROR, "api_refused", reason=exc.message)
        return 2
    from edge.ports import port_in_use

    busy = port_in_use(api.host, api.port)
    if busy is not None:  # named here: uvicorn would only log errno 98 and exit
        log_event(logger, logging.ERROR, "api_refused", reason=busy)
        return 1
    install_log_redaction()
    app = create_app(app_config, api=api, endpoint=endpoint, token=token)
    last_turn = {"t": time.monotonic()}

    class Server(uvicorn.Server):
        async def startup(self, sockets: Any = None) -> None:
            await super().startup(sockets)
            if not self.started:
                return
            bound = [s.getsockname() for srv in self.servers for s in srv.sockets]
            where = ", ".join(f"{a[0]}:{a[1]}" for a in bound) or f"{api.host}:{api.port}"
            log_event(logger, logging.INFO, "api_ready", listen=where, token="set" if token else "none",
                      reads="open on loopback" if api.open_reads() else "need the token",
                      endpoint=app.state.edge.endpoint)
            sdnotify.ready(f"serving http://{where}")
            asyncio.get_running_loop().create_task(self._heartbeat())

        def handle_exit(self, sig: int, frame: Any) -> None:
            super().handle_exit(sig, frame)
            # a requested stop is a clean exit (0), not death by the signal uvicorn re-raises
            self._captured_signals.clear()

        async def _heartbeat(self) -> None:
            while not self.should_exit:
                last_turn["t"] = time.monotonic()
                await asyncio.sleep(1.0)

    config = uvicorn.Config(app, host=api.host, port=api.port, log_level=api.log_level.lower(), access_log=False,
                            lifespan="on", ws=websocket_implementation(), proxy_headers=False, server_header=False,
                            timeout_graceful_shutdown=5, log_config=None)
    server = Server(config)
    watchdog = sdnotify.Watchdog(alive=lambda: time.monotonic() - last_turn["t"] < 10).start()
    try:
        server.run()
    except SystemExit as exc:  # uvicorn exits 1 when it cannot bind
        log_event(logger, logging.ERROR, "api_failed", reason="could not start the server", code=exc.code)
        return 2
    finally:
        watchdog.stop()
        sdnotify.stopping()
    if not server.started:
        log_event(logger, logging.ERROR, "api_failed", reason=f"could not listen on {api.host}:{api.port}")
        return 2
    log_event(logger, logging.INFO, "api_stopped")
    return 0
